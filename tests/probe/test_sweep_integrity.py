"""Sweep integrity: duplicated weights analysed once and reported; corrupt checkpoints reported, skipped."""

from __future__ import annotations

import shutil

import pytest
from _probe_helpers import TEXTS, CharTokenizer, make_tiny_llama

from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.integrity import check_checkpoint, weights_sha256
from infoplane.probe.sweep import sweep

CFG = ProbeConfig(orders=(1,), max_tokens=60, seq_len=24, batch_size=4, seed=0)
IDS = [CharTokenizer().encode(t) for t in TEXTS]


@pytest.fixture()
def run_dir(tmp_path):
    root = tmp_path / "run"
    for i, step in enumerate((10, 20, 40)):
        make_tiny_llama(seed=i, n_layers=1, hidden=8).save_pretrained(root / f"step_{step}")
    shutil.copytree(root / "step_10", root / "step_30")  # same weights under another step name
    shutil.copytree(root / "step_20", root / "step_25")
    w = root / "step_25" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])  # truncated in the middle of the sweep
    return root


def _counting():
    calls: list[str] = []

    def fn(path, corpus, config, **kw):
        calls.append(path)
        return analyze(path, corpus, config, **kw)

    return calls, fn


def test_sweep_reports_duplicate_and_truncated(run_dir, tmp_path):
    assert check_checkpoint(run_dir / "step_10") is None
    assert "truncated" in check_checkpoint(run_dir / "step_25")
    assert weights_sha256(run_dir / "step_10") == weights_sha256(run_dir / "step_30")
    calls, fn = _counting()
    with pytest.warns(UserWarning, match="skipping corrupt checkpoint .*step_25"):
        res = sweep(run_dir, IDS, CFG, out=tmp_path / "s", progress=False, analyze_fn=fn)
    assert sorted(p.rsplit("/", 1)[1] for p in calls) == ["step_10", "step_20", "step_40"]  # once each
    assert [d["name"] for d in res.corrupt] == ["step_25"]
    assert res.corrupt[0]["path"].endswith("step_25") and "truncated" in res.corrupt[0]["reason"]
    assert [(d["name"], d["same_as"]) for d in res.duplicates] == [("step_30", "step_10")]
    assert res.metadata["corrupt"] == res.corrupt and res.metadata["duplicates"] == res.duplicates
    steps = sorted({r["step"] for r in res.rows})
    assert steps == [10, 20, 30, 40]  # the corrupt step is not mixed in; the duplicate reuses step 10
    by = {(r["step"], r["layer"], r["label_set"]): r["mi"] for r in res.rows}
    assert all(by[(30, k[1], k[2])] == v for k, v in by.items() if k[0] == 10)
    # strict: the corrupt checkpoint fails the sweep, naming its path
    with pytest.raises(ValueError, match="corrupt checkpoint .*step_25"):
        sweep(run_dir, IDS, CFG, out=tmp_path / "s2", progress=False, analyze_fn=fn, strict=True)


def test_resume_recomputes_a_checkpoint_whose_weights_changed(run_dir, tmp_path):
    shutil.rmtree(run_dir / "step_25")
    shutil.rmtree(run_dir / "step_30")
    calls, fn = _counting()
    sweep(run_dir, IDS, CFG, out=tmp_path / "s", progress=False, analyze_fn=fn)
    assert len(calls) == 3
    make_tiny_llama(seed=7, n_layers=1, hidden=8).save_pretrained(run_dir / "step_40")  # replaced in place
    calls.clear()
    res = sweep(run_dir, IDS, CFG, out=tmp_path / "s", progress=False, analyze_fn=fn)
    assert [p.rsplit("/", 1)[1] for p in calls] == ["step_40"] and res.computed == ["step_40"]


def test_flipped_bytes_caught_by_recorded_checksums(tmp_path):
    from infoplane.train.checkpoint import save_checkpoint
    from infoplane.train.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=40, n_layer=1, n_head=2, d_model=16, block_size=16, seed=0))
    path = save_checkpoint(tmp_path / "native", 5, model)
    assert check_checkpoint(path) is None
    w = path / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF  # a flipped byte inside tensor data: same size, caught only by the recorded checksum
    w.write_bytes(bytes(data))
    why = check_checkpoint(path)
    assert why is not None and "model.safetensors" in why and "SHA-256" in why
