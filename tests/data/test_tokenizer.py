"""Tokenizers: round trip, determinism, save/load, GPT-2 files never downloaded; LM data split and sampler."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.data.lm_data import BatchSampler, prepare_lm_data, split_documents, val_batches
from infoplane.data.tokenizer import (
    EOS_TOKEN,
    ByteTokenizer,
    eos_id,
    gpt2_tokenizer,
    load_tokenizer,
    resolve_tokenizer,
    save_tokenizer,
    train_bpe_tokenizer,
)

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
] * 5


@pytest.fixture(scope="module")
def bpe():
    return train_bpe_tokenizer(TEXTS, vocab_size=300)


def test_bpe_is_deterministic_and_sized(bpe):
    again = train_bpe_tokenizer(TEXTS, vocab_size=300)
    assert bpe.to_str() == again.to_str()
    assert bpe.get_vocab_size() == 300
    assert bpe.token_to_id(EOS_TOKEN) == eos_id(bpe) == 0
    # merges are learnt: a frequent word compresses below its byte count
    assert len(bpe.encode(" light").ids) < len(b" light")


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_any_unicode(text):
    tok = _BPE_CACHE.setdefault("t", train_bpe_tokenizer(TEXTS, vocab_size=300))
    assert tok.decode(tok.encode(text).ids) == text
    assert ByteTokenizer().decode(ByteTokenizer().encode(text).ids) == text


_BPE_CACHE: dict = {}


def test_save_load_both_kinds(tmp_path, bpe):
    save_tokenizer(bpe, tmp_path / "bpe.json")
    loaded = load_tokenizer(tmp_path / "bpe.json")
    s = "Let there be light, Ünïcødé!"
    assert loaded.encode(s).ids == bpe.encode(s).ids
    byte = ByteTokenizer()
    byte.save(tmp_path / "byte.json")
    assert json.loads((tmp_path / "byte.json").read_text())["vocab_size"] == 256
    lb = load_tokenizer(tmp_path / "byte.json")
    assert isinstance(lb, ByteTokenizer) and lb.encode("ab").ids == [97, 98] and eos_id(lb) == 10


def test_resolve_specs(tmp_path, bpe):
    assert isinstance(resolve_tokenizer("byte"), ByteTokenizer)
    assert resolve_tokenizer("bpe:280", TEXTS).get_vocab_size() == 280
    with pytest.raises(ValueError, match="bpe:N"):
        resolve_tokenizer("bpe:abc", TEXTS)
    with pytest.raises(ValueError, match="at least 257|>= 257"):
        train_bpe_tokenizer(TEXTS, vocab_size=100)
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        resolve_tokenizer(f"gpt2:{tmp_path}")


def test_gpt2_tokenizer_from_local_files(tmp_path, bpe):
    # write a GPT-2 style vocab.json + merges.txt from the trained BPE and load it back
    model = json.loads(bpe.to_str())["model"]
    (tmp_path / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
    merges = ["#version: 0.2"] + [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    g = gpt2_tokenizer(tmp_path)
    s = "And God said, Let there be light"
    assert g.encode(s).ids == bpe.encode(s).ids
    with pytest.raises(FileNotFoundError, match="never downloads"):
        gpt2_tokenizer(tmp_path / "missing")


def test_split_documents_disjoint_deterministic():
    tr, va = split_documents(100, 0.1, seed=3)
    assert len(va) == 10 and len(tr) == 90 and not set(tr) & set(va)
    tr2, va2 = split_documents(100, 0.1, seed=3)
    assert (tr == tr2).all() and (va == va2).all()
    assert set(split_documents(100, 0.1, seed=4)[1]) != set(va)
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(10, 1.5)


def test_prepare_lm_data_holds_out_documents():
    texts = [f"document number {i} " * 3 for i in range(40)]
    tok, sp = prepare_lm_data(texts, "byte", val_fraction=0.25, seed=0)
    assert sp.n_docs_val == 10 and sp.n_docs_train == 30
    assert int((sp.train == 10).sum()) == 30 and int((sp.val == 10).sum()) == 10  # one EOS per document
    assert len(sp.train) + len(sp.val) == sum(len(t.encode()) + 1 for t in texts)


def test_sampler_resume_and_shapes():
    stream = torch.arange(1000)
    a = BatchSampler(stream, batch_size=4, block_size=16, seed=1)
    batches = [a.next_batch() for _ in range(30)]  # crosses epochs (61 windows / 4 per batch)
    x, y = batches[0]
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))
    b = BatchSampler(stream, batch_size=4, block_size=16, seed=1)
    for _ in range(7):
        b.next_batch()
    c = BatchSampler(stream, batch_size=4, block_size=16, seed=1)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    for i in range(7, 30):
        assert torch.equal(c.next_batch()[0], batches[i][0])
    assert a.epoch >= 1
    with pytest.raises(ValueError, match="too short"):
        BatchSampler(torch.arange(20), batch_size=4, block_size=16)


def test_val_batches_are_consecutive_windows():
    vb = val_batches(torch.arange(100), batch_size=2, block_size=10, max_batches=3)
    assert len(vb) == 3 and vb[0][0][1, 0] == 10 and vb[2][1][1, -1] == 60
