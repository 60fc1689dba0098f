"""Issue 14 item 8 (train / reproduce / data side): one-line errors that name the flag or file, raised
before expensive work."""

from __future__ import annotations

import gzip

import pytest
import torch
from _faults import CLI_TINY, corpus_file, tiny_config

from infoplane.cli import main
from infoplane.data.corpus import load_corpus
from infoplane.data.lm_data import TokenSplits
from infoplane.io import check_output_dir
from infoplane.train import preflight
from infoplane.train.trainer import Trainer


def _expensive(*a, **k):
    raise AssertionError("expensive work started before the input was validated")


def test_out_that_is_a_file_or_unwritable(tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setattr("infoplane.train.trainer.prepare_lm_data", _expensive)
    for out in ("f", "f/sub"):
        assert main(["train", *CLI_TINY, "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out: " in err and "is a file" in err
    assert main(["reproduce", "--quick", "--only", "4", "--out", str(tmp_path / "f")]) == 2
    assert "--out: " in capsys.readouterr().err

    def no_write(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", no_write)  # root can write anywhere: simulate a denial
    with pytest.raises(PermissionError, match="--out: .* is not writable"):
        check_output_dir(tmp_path / "new", "--out")


def test_negative_seed_names_the_flag(tmp_path, capsys):
    assert main(["train", *CLI_TINY, "--seed", "-1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--seed: TrainConfig.seed must be an int >= 0, got -1" in err
    assert main(["train", *CLI_TINY, "--d-model", "33", "--out", str(tmp_path / "r")]) == 2
    assert "--d-model: GPTConfig.d_model (33) must be divisible" in capsys.readouterr().err


def test_token_ids_outside_the_vocabulary(tmp_path):
    ids = torch.arange(2000) % 300  # ids up to 299 for a 256-token model
    splits = TokenSplits(train=ids, val=ids[:200], n_docs_train=1, n_docs_val=1, eos_id=10)
    with pytest.raises(ValueError, match=r"ids 0\.\.299 but the model's vocabulary has 256 ids"):
        Trainer(tiny_config(tmp_path / "r", "kjv"), splits=splits, vocab_size=256)


@pytest.mark.parametrize("name, content, expected", [
    ("bin.txt", b"abc\x00\x01\x02" * 50, "looks binary"),
    ("latin.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), r"is not UTF-8 text \(byte 0xe9 at offset 3\)"),
    ("bad.txt.gz", b"not gzip at all", "not a readable gzip file"),
    ("lat.jsonl", '{"text": "caf\u00e9"}'.encode("latin-1"), "is not UTF-8 text"),
])
def test_binary_or_non_utf8_corpus_names_the_file(tmp_path, name, content, expected):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=f"corpus file '.*{name}'.* {expected}" if "gzip" not in expected
                       else f"{name}'.*{expected}"):
        load_corpus(tmp_path / name)


def test_crlf_and_gzip_text_still_read_as_before(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"one\r\n\r\ntwo\r\nthree")
    assert load_corpus(tmp_path / "a.txt").texts == ["one", "two\nthree"]
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"x y\nz"))
    assert load_corpus(tmp_path / "b.txt.gz").texts == ["x y", "z"]


def test_block_size_far_beyond_memory_is_refused_before_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("infoplane.train.trainer.prepare_lm_data", _expensive)
    corpus = corpus_file(tmp_path)
    assert main(["train", *CLI_TINY, "--corpus", str(corpus), "--block-size", "10000000",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--block-size" in err and "needs at least" in err and "Traceback" not in err
    cfg = tiny_config(tmp_path / "r", corpus)
    need = preflight.estimate_train_bytes(cfg, 256)["total"]
    preflight.check_memory(cfg, 256, available=need)  # fits exactly: accepted
    with pytest.raises(ValueError, match="lower --block-size or --batch-size"):
        preflight.check_memory(cfg, 256, available=need - 1)
