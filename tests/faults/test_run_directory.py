"""Issue 14 item 1: a used run directory is never silently reused, a resume must match its run, and the
log is never truncated into invalid bytes."""

from __future__ import annotations

import json

import pytest
from _faults import CLI_TINY, corpus_file, tiny_config

from infoplane.cli import main
from infoplane.train.checkpoint import list_checkpoints
from infoplane.train.trainer import Trainer, read_log


def test_new_run_into_used_directory_is_refused_and_overwrite_starts_clean(tmp_path):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "run"
    Trainer(tiny_config(out, corpus, steps=12)).run()
    assert [p.name for p in list_checkpoints(out)] == ["step_00000004", "step_00000008", "step_00000012"]
    with pytest.raises(FileExistsError, match="already holds a training run.*--resume.*--overwrite"):
        Trainer(tiny_config(out, corpus, steps=6, lr=1e-3))
    Trainer(tiny_config(out, corpus, steps=6, lr=1e-3), overwrite=True).run()
    # none of the first run's later checkpoints survive; the log is the new run's alone
    assert [p.name for p in list_checkpoints(out)] == ["step_00000004", "step_00000006"]
    assert [r["step"] for r in read_log(out / "log.jsonl")] == list(range(1, 7))
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 1e-3
    with pytest.raises(ValueError, match="exclude each other"):
        Trainer(tiny_config(out, corpus), resume=True, overwrite=True)


@pytest.mark.parametrize("change, listed", [
    ({"lr": 1e-3}, "lr: saved 0.003, now 0.001"),
    ({"objective": {"kind": "ce+mbe", "layers": "all"}}, "objective.kind: saved 'ce', now 'ce+mbe'"),
    ({"model": {"d_model": 64}}, "model.d_model: saved 32, now 64"),
    ({"tokenizer": "bpe:300"}, "tokenizer: saved 'byte', now 'bpe:300'"),
])
def test_resume_refuses_settings_it_cannot_honour_listing_them(tmp_path, change, listed):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "run"
    Trainer(tiny_config(out, corpus, steps=8)).run()
    with pytest.raises(ValueError, match="cannot resume") as err:
        Trainer(tiny_config(out, corpus, steps=12, **change), resume=True)
    assert listed in str(err.value)


def test_resume_refuses_changed_data(tmp_path):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "run"
    Trainer(tiny_config(out, corpus, steps=8)).run()
    corpus.write_text(corpus.read_text(encoding="utf-8") + "\nAnd a verse that was not there before.",
                      encoding="utf-8")
    with pytest.raises(ValueError, match="data corpus: saved .*data tokens_sha256"):
        Trainer(tiny_config(out, corpus, steps=12), resume=True)


def test_resume_with_more_steps_warns_about_the_schedule_and_continues(tmp_path):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "run"
    Trainer(tiny_config(out, corpus, steps=8)).run()
    with pytest.warns(RuntimeWarning, match="cosine learning-rate schedule now ends at step 12"):
        tr = Trainer(tiny_config(out, corpus, steps=12), resume=True)
    tr.run()
    assert [r["step"] for r in read_log(out / "log.jsonl")] == list(range(1, 13))
    with pytest.raises(ValueError, match="checkpoint is at step 12, beyond steps=4"):
        Trainer(tiny_config(out, corpus, steps=4), resume=True)


def test_replaced_log_is_refused_not_padded_with_nul_bytes(tmp_path):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "run"
    Trainer(tiny_config(out, corpus, steps=8)).run()
    log = out / "log.jsonl"
    log.write_text(log.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")  # shorter
    size = log.stat().st_size
    with pytest.raises(ValueError, match="does not hold the 8 records"):
        Trainer(tiny_config(out, corpus, steps=8), resume=True)
    assert log.stat().st_size == size and b"\x00" not in log.read_bytes()
    edited = log.read_text(encoding="utf-8").replace('"step": 1', '"step": 9')  # same length, other bytes
    log.write_text(edited * 20, encoding="utf-8")
    with pytest.raises(ValueError, match="replaced or edited"):
        Trainer(tiny_config(out, corpus, steps=8), resume=True)


def test_cli_reproduction_of_the_issue(tmp_path, capsys):
    """train --steps 20; the same with --steps 10 --lr 0.001 (refused); --resume --lr 0.001 (refused);
    --resume --steps 30 (continues the run with its saved settings; the log reads back)."""
    corpus = corpus_file(tmp_path)
    base = ["train", "--corpus", str(corpus), *CLI_TINY, "--out", str(tmp_path / "X")]
    assert main([*base, "--steps", "20", "--checkpoint-steps", "every:5"]) == 0
    assert main([*base, "--steps", "10", "--lr", "0.001"]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "X"), "--resume", "--steps", "30", "--lr", "0.001"]) == 2
    assert "lr: saved 0.003, now 0.001" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning, match="schedule now ends at step 30"):
        assert main(["train", "--out", str(tmp_path / "X"), "--resume", "--steps", "30"]) == 0
    recs = read_log(tmp_path / "X" / "log.jsonl")
    assert [x["step"] for x in recs] == list(range(1, 31))
    saved = json.loads((tmp_path / "X" / "checkpoints" / "step_00000030" / "config.json").read_text())
    assert saved["train"]["model"]["d_model"] == 32 and saved["train"]["lr"] == 0.003
