"""Fault injection (issue 14): ``kill -9`` of ``infoplane train`` and of a ``reproduce`` parent at random
moments (seeded, a bounded number of times); every interrupted run is continued as a user would (``--resume``,
or ``--overwrite`` when no checkpoint exists yet; a plain rerun for reproduce) and must end with results equal
to an uninterrupted run's, no worker left behind and no lock held."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from _faults import CLI_TINY, MAIN, corpus_file, without_time

from infoplane import io
from infoplane.cli import main
from infoplane.train.checkpoint import list_checkpoints, load_checkpoint
from infoplane.train.trainer import read_log

pytestmark = pytest.mark.slow
KILLS = 2
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _n_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _train(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", MAIN, "train", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, log: Path, at_line: int) -> bool:
    """SIGKILL ``proc`` once ``log`` has ``at_line`` lines; False if it finished first."""
    while proc.poll() is None:
        if _n_lines(log) >= at_line:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    return False


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    rng = random.Random(14)
    corpus = corpus_file(tmp_path)
    steps = 40
    args = ["--corpus", str(corpus), *CLI_TINY, "--steps", str(steps), "--checkpoint-steps", "every:3"]
    assert main(["train", *args, "--out", str(tmp_path / "ref")]) == 0  # uninterrupted, in this process
    out = tmp_path / "cut"
    log = out / "log.jsonl"
    kills, restarts = 0, []
    proc = _train([*args, "--out", str(out)])
    while True:
        if kills < KILLS and _kill_after(proc, log, _n_lines(log) + rng.randint(1, 12)):
            kills += 1
            mode = "--resume" if list_checkpoints(out) else "--overwrite"
            restarts.append(mode)
            proc = _train([*args, "--out", str(out), mode])
            continue
        assert proc.wait() == 0, proc.stderr.read()
        break
    assert kills == KILLS, "every kill must land before the run ends"
    assert without_time(read_log(log)) == without_time(read_log(tmp_path / "ref" / "log.jsonl"))
    a = load_checkpoint(tmp_path / "ref" / "checkpoints" / f"step_{steps:08d}")[0].state_dict()
    b = load_checkpoint(out / "checkpoints" / f"step_{steps:08d}")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert io.lock_holder(out) is None and not (out / io.LOCK_NAME).exists()
    print(f"train: {kills} kills, restarts {restarts}: log and weights equal to the uninterrupted run")


EXPERIMENT = textwrap.dedent('''
    """Two tiny trainings whose final losses are the result."""
    import os
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class FaultyConfig:
        seed: int = 0
        @classmethod
        def quick(cls):
            return cls()
        @classmethod
        def full(cls):
            return cls()

    def run(cfg, paths, log):
        from infoplane.data.corpus import embedded_corpus
        from infoplane.data.lm_data import prepare_lm_data
        from infoplane.experiments.common import fresh_dir
        from infoplane.train.config import TrainConfig
        from infoplane.train.trainer import Trainer

        (paths.runs / "pid").write_text(str(os.getpid()))
        tok, splits = prepare_lm_data(embedded_corpus("kjv").texts[:200], "byte", 0.1, cfg.seed)
        tc = TrainConfig(model={"n_layer": 2, "n_head": 2, "d_model": 32, "block_size": 32}, steps=60,
                         batch_size=4, eval_every=0, eval_batches=2, progress=False, seed=cfg.seed,
                         checkpoint_steps="final", out_dir=str(fresh_dir(paths.runs / "train")))
        res = Trainer(tc, splits=splits, tokenizer=tok).run()  # 60 steps: about a second
        return {"val_ce": res.final_val_ce}
''')
PARENT = textwrap.dedent('''
    import sys
    import infoplane.experiments
    from infoplane.experiments.registry import ExperimentSpec
    from infoplane.experiments.runner import run_experiments

    if __name__ == "__main__":
        for i, name in enumerate(("faulty_a", "faulty_b")):
            spec = ExperimentSpec(90 + i, name, "infoplane_faulty", "FaultyConfig", name)
            infoplane.experiments.register(spec)
        m = run_experiments(sys.argv[1], "quick", only=["faulty_a", "faulty_b"], jobs=int(sys.argv[2]),
                            quiet=True)
        sys.exit(1 if m["failed"] else 0)
''')


@pytest.fixture
def faulty(tmp_path, monkeypatch):
    """The two-experiment module registered in this process too (for the reference run and the rerun)."""
    import infoplane.experiments
    from infoplane.experiments import registry
    from infoplane.experiments.registry import ExperimentSpec

    (tmp_path / "infoplane_faulty.py").write_text(EXPERIMENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("faulty_a", "faulty_b")
    for i, name in enumerate(names):
        infoplane.experiments.register(ExperimentSpec(90 + i, name, "infoplane_faulty", "FaultyConfig", name))
    yield names
    for name in names:
        registry.unregister(name)
    sys.modules.pop("infoplane_faulty", None)


def test_killed_reproduce_leaves_no_worker_and_reruns_to_the_same_results(tmp_path, faulty):
    from infoplane.experiments.runner import run_experiments

    rng = random.Random(15)
    (tmp_path / "parent.py").write_text(PARENT)
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), ENV.get("PYTHONPATH", "")])}

    def parent(out: Path, jobs: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(out), str(jobs)], env=env)

    assert run_experiments(tmp_path / "ref", "quick", only=list(faulty), quiet=True)["failed"] == {}
    out = tmp_path / "cut"
    pids = [out / "runs" / n / "pid" for n in ("faulty_a", "faulty_b")]
    proc = parent(out, 2)
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.5))  # somewhere inside the two trainings
    workers = [int(p.read_text()) for p in pids]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 5
    while any(io._pid_alive(w, None) for w in workers) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(io._pid_alive(w, None) for w in workers), "workers outlived the killed parent"
    with pytest.warns(RuntimeWarning, match="took over the stale lock"):  # a plain rerun
        assert run_experiments(out, "quick", only=list(faulty), quiet=True)["failed"] == {}
    for name in ("faulty_a", "faulty_b"):
        ref = io.read_json(tmp_path / "ref" / "results" / f"{name}.json")["val_ce"]
        assert io.read_json(out / "results" / f"{name}.json")["val_ce"] == ref
    print("reproduce: parent killed mid-run, workers gone within 5 s, rerun results equal")
