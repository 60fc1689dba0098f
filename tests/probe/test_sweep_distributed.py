"""sweep_distributed: checkpoints dealt over 2 gloo ranks, duplicates/corrupt decided once, a killed sweep
resumes without recomputing finished checkpoints, and the merged table equals the single-process sweep."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch.multiprocessing as mp
from _probe_helpers import TEXTS, CharTokenizer, make_tiny_llama

from infoplane.probe.config import ProbeConfig
from infoplane.probe.sweep import sweep

CFG = ProbeConfig(orders=(1, 2), max_tokens=60, seq_len=24, batch_size=4, seed=0, null=True)
IDS = [CharTokenizer().encode(t) for t in TEXTS]
# by step: 10, 20, 25 (truncated), 30 (= 10), 40, 50, 60 -> analysed: 10, 20, 40, 50, 60
UNIQUE = ["step_10", "step_20", "step_40", "step_50", "step_60"]
KILL_AT = "step_40"  # the 3rd analysed checkpoint: rank 0's second


def _make_run(root):
    for i, step in enumerate((10, 20, 40, 50, 60)):
        make_tiny_llama(seed=i, n_layers=1, hidden=8).save_pretrained(root / f"step_{step}")
    shutil.copytree(root / "step_10", root / "step_30")  # same weights under another step name
    shutil.copytree(root / "step_20", root / "step_25")
    w = root / "step_25" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])  # truncated
    return root


def _worker(rank: int, world: int, init_file: str, run_dir: str, out: str, kill: bool) -> None:
    import warnings

    import torch
    import torch.distributed as dist

    from infoplane.probe.analyze import analyze
    from infoplane.probe.distributed import sweep_distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)

    def recording(path, corpus, config, **kw):
        name = os.path.basename(path)
        with open(os.path.join(out, f"calls_rank{rank}.txt"), "a") as fh:
            fh.write(name + "\n")
        if kill and name == KILL_AT:
            os._exit(1)  # killed mid-sweep: no cleanup, no exception handling
        return analyze(path, corpus, config, **kw)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sweep_distributed(run_dir, IDS, CFG, out=out, progress=False, analyze_fn=recording)
        with open(os.path.join(out, f"result_rank{rank}.json"), "w") as fh:
            json.dump({"computed": res.computed, "corrupt": [d["name"] for d in res.corrupt],
                       "duplicates": [[d["name"], d["same_as"]] for d in res.duplicates],
                       "n_rows": len(res.rows)}, fh)
    finally:
        dist.destroy_process_group()


def _calls(out, rank):
    f = out / f"calls_rank{rank}.txt"
    return f.read_text().split() if f.is_file() else []


def test_killed_distributed_sweep_resumes_and_merges(tmp_path):
    run_dir = _make_run(tmp_path / "run")
    out = tmp_path / "dist"
    out.mkdir()
    with pytest.raises(mp.ProcessExitedException):
        mp.spawn(_worker, args=(2, str(tmp_path / "init1"), str(run_dir), str(out), True), nprocs=2,
                 join=True)
    # round robin over the analysed checkpoints: rank 0 takes 10, 40, 60 and rank 1 takes 20, 50
    assert _calls(out, 0) == ["step_10", "step_40"]
    assert _calls(out, 1)[:1] in ([], ["step_20"]) and set(_calls(out, 1)) <= {"step_20", "step_50"}
    finished = {p.stem for p in (out / "checkpoints").glob("*.csv")}
    assert "step_10" in finished and KILL_AT not in finished and not (out / "sweep.csv").exists()
    for r in range(2):
        (out / f"calls_rank{r}.txt").unlink(missing_ok=True)

    mp.spawn(_worker, args=(2, str(tmp_path / "init2"), str(run_dir), str(out), False), nprocs=2, join=True)
    again = _calls(out, 0) + _calls(out, 1)
    assert sorted(again) == sorted(set(UNIQUE) - finished)  # finished checkpoints are not recomputed
    assert set(_calls(out, 0)) <= {"step_10", "step_40", "step_60"}
    assert set(_calls(out, 1)) <= {"step_20", "step_50"}
    results = [json.loads((out / f"result_rank{r}.json").read_text()) for r in range(2)]
    for res in results:
        assert res == results[0]
        assert sorted(res["computed"]) == sorted(again)
        assert res["corrupt"] == ["step_25"] and res["duplicates"] == [["step_30", "step_10"]]

    # the merged table equals a single-process sweep; a plain sweep() resumes it and computes nothing
    with pytest.warns(UserWarning, match="skipping corrupt checkpoint .*step_25"):
        single = sweep(run_dir, IDS, CFG, out=tmp_path / "single", progress=False)
    from infoplane.io import read_csv

    merged = read_csv(out / "sweep.csv")
    assert len(merged) == len(single.rows) == results[0]["n_rows"] > 0
    want = {(r["step"], r["layer"], r["label_set"]): r for r in single.rows}
    for r in merged:
        w = want[(r["step"], r["layer"], r["label_set"])]
        for col in ("entropy", "mi", "mi_null"):
            assert r[col] == pytest.approx(w[col], abs=1e-12), col
    assert {r["step"] for r in merged} == {10, 20, 30, 40, 50, 60}
    never = []
    with pytest.warns(UserWarning, match="step_25"):
        res = sweep(run_dir, IDS, CFG, out=out, progress=False, analyze_fn=lambda *a, **k: never.append(a))
    assert never == [] and res.computed == []


def test_requires_initialised_process_group(tmp_path):
    from infoplane.probe.distributed import sweep_distributed

    with pytest.raises(ValueError, match="not initialised"):
        sweep_distributed(tmp_path, IDS, CFG, out=tmp_path / "o")
