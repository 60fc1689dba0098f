import gzip
import json

import pytest

from infoplane.data.corpus import Document, embedded_corpus, load_corpus


def test_embedded_kjv_is_complete():
    c = embedded_corpus("kjv")
    assert len(c) == 31102  # verses of the KJV (Genesis 1:1 .. Revelation 22:21)
    assert c.documents[0].text.startswith("In the beginning God created")
    assert c.documents[0].labels == {"book": "Genesis"}
    assert c.documents[-1].labels == {"book": "Revelation"}
    assert len({d.labels["book"] for d in c}) == 66
    chapters = embedded_corpus("kjv", group="chapter")
    assert len(chapters) == 1189
    assert sum(len(d.text) for d in chapters) > 0.99 * c.n_chars()


def test_fingerprint_is_stable_and_content_sensitive():
    a = load_corpus(["one text", "two text"])
    b = load_corpus(["one text", "two text"])
    c = load_corpus(["one text", "two texts"])
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_text_and_jsonl_files(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\nstill first\n\nsecond paragraph\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "hello", "genre": "news"}) + "\n\n")
        fh.write(json.dumps({"text": "bye", "genre": "poem"}) + "\n")
    c = load_corpus(tmp_path)
    assert c.texts == ["first paragraph\nstill first", "second paragraph", "hello", "bye"]
    assert c.documents[2].labels == {"genre": "news"}


def test_bad_inputs_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="embedded name"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "bad.jsonl").write_text('{"body": "no text key"}\n')
    with pytest.raises(ValueError, match="string field 'text'"):
        load_corpus(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(["", "  "])
    with pytest.raises(TypeError, match="str or Document"):
        load_corpus([1, 2])
    with pytest.raises(ValueError, match="unknown embedded corpus"):
        embedded_corpus("nope")


def test_documents_pass_through():
    c = load_corpus([Document("x", {"pref": 1})])
    assert c.documents[0].labels == {"pref": 1}
