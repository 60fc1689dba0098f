"""Issue 14 items 2 and 3: one process per run / output directory (lock with pid and host, stale locks
from dead processes detected), and reproduce workers that die with their parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from _faults import corpus_file, tiny_config

from infoplane import io
from infoplane.train.trainer import Trainer

HOLD = textwrap.dedent("""
    import sys, time
    from infoplane.io import acquire_lock
    acquire_lock(sys.argv[1], sys.argv[2])
    print("locked", flush=True)
    time.sleep(60)
""")


def _holder(directory, purpose="train"):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), purpose], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_naming_the_holder_and_a_dead_holder_is_stale(tmp_path):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        info = io.lock_holder(out)
        assert info["pid"] == proc.pid and info["host"] == socket.gethostname()
        with pytest.raises(io.LockHeldError, match=f"in use by pid {proc.pid} on host"):
            Trainer(tiny_config(out, corpus))  # refused before any data is prepared
        with pytest.raises(io.LockHeldError, match=f"pid {proc.pid}"):
            io.acquire_lock(out, "train")
    finally:
        proc.kill()
        proc.wait()
    assert (out / io.LOCK_NAME).exists()  # the dead holder's lock file is still there ...
    assert io.lock_holder(out) is None  # ... and recognised as stale
    with pytest.warns(RuntimeWarning, match=f"stale lock .* pid {proc.pid}"):
        Trainer(tiny_config(out, corpus, steps=4)).run()
    assert not (out / io.LOCK_NAME).exists()  # released at the end of the run


def test_lock_is_reentrant_in_one_process_and_released_by_the_outermost(tmp_path):
    with io.dir_lock(tmp_path, "outer"):
        with io.dir_lock(tmp_path, "inner"):
            assert (tmp_path / io.LOCK_NAME).exists()
        assert (tmp_path / io.LOCK_NAME).exists()
    assert not (tmp_path / io.LOCK_NAME).exists()


def test_reproduce_into_a_locked_directory_is_refused(tmp_path):
    from infoplane.experiments.runner import run_experiments

    proc = _holder(tmp_path, "reproduce")
    try:
        with pytest.raises(io.LockHeldError, match=f"in use by pid {proc.pid}"):
            run_experiments(tmp_path, "quick", only=["4"])
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "results").exists()


# a parent that starts reproduce workers whose experiment ticks a file forever; the test kills the parent
PARENT = textwrap.dedent('''
    import sys
    from dataclasses import dataclass
    import infoplane.experiments
    from infoplane.experiments.registry import ExperimentSpec
    from infoplane.experiments.runner import run_experiments

    if __name__ == "__main__":
        sys.path.insert(0, sys.argv[2])
        for i, name in enumerate(("tick_a", "tick_b")):
            spec = ExperimentSpec(80 + i, name, "infoplane_ticker", "TickConfig", name)
            infoplane.experiments.register(spec)
        run_experiments(sys.argv[1], "quick", only=["tick_a", "tick_b"], jobs=2, quiet=True)
''')
TICKER = textwrap.dedent('''
    import os, time
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class TickConfig:
        period: float = 0.05
        @classmethod
        def quick(cls):
            return cls()
        @classmethod
        def full(cls):
            return cls()

    def run(cfg, paths, log):
        (paths.runs / "pid").write_text(str(os.getpid()))
        n = 0
        while True:
            n += 1
            (paths.runs / "ticks").write_text(str(n))
            time.sleep(cfg.period)
''')


def _wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_killed_reproduce_parent_takes_its_workers_with_it(tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "infoplane_ticker.py").write_text(TICKER)
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(mods), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(script), str(out), str(mods)], env=env)
    pid_files = [out / "runs" / n / "pid" for n in ("tick_a", "tick_b")]
    try:
        assert _wait_for(lambda: all(p.exists() and p.read_text() for p in pid_files), 60)
        workers = [int(p.read_text()) for p in pid_files]
        assert all(io._pid_alive(w, None) for w in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    _assert_gone_without_writing(workers, [out / "runs" / n / "ticks" for n in ("tick_a", "tick_b")])
    assert io.lock_holder(out) is None  # the dead parent's lock is stale


WATCHED = textwrap.dedent('''
    import multiprocessing as mp, os, sys, time
    from pathlib import Path

    def child(parent, tick):
        from infoplane.experiments.runner import die_with_parent
        die_with_parent(parent, poll_s=0.2, use_prctl=False)  # the portable watchdog alone
        n = 0
        while True:
            n += 1
            Path(tick).write_text(str(n))
            time.sleep(0.05)

    if __name__ == "__main__":
        p = mp.get_context("spawn").Process(target=child, args=(os.getpid(), sys.argv[1]))
        p.start()
        print(p.pid, flush=True)
        time.sleep(60)
''')


def test_watchdog_alone_stops_an_orphaned_worker(tmp_path):
    script = tmp_path / "watched.py"
    script.write_text(WATCHED)
    tick = tmp_path / "tick"
    parent = subprocess.Popen([sys.executable, str(script), str(tick)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _wait_for(tick.exists, 30)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    _assert_gone_without_writing([worker], [tick])


def _assert_gone_without_writing(workers, ticks):
    t0 = time.monotonic()
    assert _wait_for(lambda: not any(io._pid_alive(w, None) for w in workers), 5), "orphaned workers"
    assert time.monotonic() - t0 < 3
    before = [t.read_text() for t in ticks]
    time.sleep(0.3)
    assert [t.read_text() for t in ticks] == before  # nothing written after they died
