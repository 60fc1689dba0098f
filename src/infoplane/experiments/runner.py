"""Run the reproduction experiments: selection, order, worker processes, resume, run manifest.

:func:`run_experiments` is the experiment half of ``infoplane reproduce`` (``infoplane.reproduce`` then builds
the report from the results files):

1. select experiments from the registry (:mod:`infoplane.experiments.registry`) and build every config
   (sizes and overrides validated before any work starts);
2. order them by ``depends_on`` (a dependency that is selected runs first) and ``priority`` (the longest
   first, so parallel workers stay busy);
3. run each in up to ``jobs`` worker processes (spawned, ``threads`` torch threads each) or inline when
   ``jobs == 1``; an experiment whose selected dependency failed is recorded as failed without running;
4. each finished experiment writes its results atomically with a done-marker keyed on its config and on its
   dependencies' results (:func:`infoplane.experiments.common.run_experiment`), so a rerun skips it unless
   something it depends on changed (``force`` reruns everything selected);
5. write ``DIR/results/run_manifest.json``.

``DIR`` is locked for the whole invocation (:func:`infoplane.io.dir_lock`): a second ``reproduce`` into it is
refused, naming the running one. Workers die with their parent: on Linux the kernel kills them when it dies
(``PR_SET_PDEATHSIG``), elsewhere a watchdog thread notices within half a second that the parent is gone
and ends the worker at once (``os._exit``, no further writes); an interrupted parent terminates its
workers before it exits.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infoplane.experiments.registry import SIZES, ExperimentSpec, get, make_config, order, resolve

__all__ = ["run_experiments", "configs", "SIZES"]



def configs(specs: Sequence[ExperimentSpec], size: str,
            overrides: Mapping[str | int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """``{name: config}`` of ``specs`` at ``size`` with ``overrides[experiment][field]`` applied.

    Override keys may be experiment names or numbers; an unknown experiment or field is a ValueError (every
    override is checked, also for experiments that are not selected).
    """
    by_name: dict[str, dict[str, Any]] = {}
    for key, fields in (overrides or {}).items():
        by_name.setdefault(get(key).name, {}).update(fields)
    selected = {s.name: s for s in specs}
    for name, fields in by_name.items():  # validate overrides of experiments that are not selected, too
        if name not in selected:
            make_config(get(name), size, fields)
    return {s.name: make_config(s, size, by_name.get(s.name)) for s in specs}


def _run_one(spec: ExperimentSpec, cfg: Any, out: str, force: bool, threads: int,
             quiet: bool) -> dict[str, Any]:
    """Run one experiment (in a worker process or inline); never raises: a failure is a result."""
    t0 = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(threads)
        from infoplane.experiments.common import run_experiment

        summary = run_experiment(spec.name, cfg, out, spec.run_fn(), force=force, progress=not quiet,
                                 depends_on=spec.depends_on)
        return {"name": spec.name, "status": "skipped" if summary.get("resumed") else "done",
                "wall_time_s": time.perf_counter() - t0, "skipped_reason": summary.get("skipped_reason")}
    except Exception as exc:  # recorded in the manifest and shown in the report
        traceback.print_exc()
        return {"name": spec.name, "status": "failed", "wall_time_s": time.perf_counter() - t0,
                "error": f"{type(exc).__name__}: {exc}"}


_PR_SET_PDEATHSIG = 1  # prctl option: signal this process when its parent dies (linux/prctl.h)


def die_with_parent(parent_pid: int, poll_s: float = 0.5, use_prctl: bool = True) -> None:
    """Make this (worker) process end when ``parent_pid`` dies: Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``
    where available (and ``use_prctl``), plus a daemon thread that polls ``os.getppid()`` every ``poll_s``
    seconds and calls ``os._exit(70)`` once the parent is gone (portable; also covers a parent that died
    before the prctl)."""
    import signal

    if use_prctl and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: the watchdog remains
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(70)  # parent gone: stop now, write nothing more
            time.sleep(poll_s)

    if os.getppid() != parent_pid:
        os._exit(70)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _child(conn: Any, parent_pid: int, *args: Any) -> None:
    """Entry point of a worker process: run one experiment and send its result dict through ``conn``."""
    die_with_parent(parent_pid)
    try:
        conn.send(_run_one(*args))
    finally:
        conn.close()


def _failed_dependency(spec: ExperimentSpec, results: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Name of a dependency of ``spec`` that failed in this invocation (None if there is none)."""
    return next((d for d in spec.depends_on if results.get(d, {}).get("status") == "failed"), None)


def _run_all(plan: list[ExperimentSpec], cfgs: Mapping[str, Any], out: Path, *, jobs: int, force: bool,
             threads: int, quiet: bool, report: Any) -> None:
    """Run ``plan`` (in dependency order) inline or in ``jobs`` worker processes, calling ``report(result)``
    for each finished experiment."""
    results: dict[str, dict[str, Any]] = {}
    selected = {s.name for s in plan}

    def done(r: dict[str, Any]) -> None:
        results[r["name"]] = r
        report(r)

    def dependency_failed(spec: ExperimentSpec) -> bool:
        dep = _failed_dependency(spec, results)
        if dep is not None:
            done({"name": spec.name, "status": "failed", "wall_time_s": 0.0,
                  "error": f"depends on {dep}, which failed"})
        return dep is not None

    if jobs <= 1:
        for spec in plan:
            if not dependency_failed(spec):
                done(_run_one(spec, cfgs[spec.name], str(out), force, threads, quiet))
        return

    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # no fork after torch initialised its thread pools
    pending = list(plan)
    running: dict[str, tuple[Any, Any, float]] = {}
    try:
        _schedule(ctx, wait, pending, running, results, selected, cfgs, out, force, threads, quiet, done,
                  dependency_failed, jobs)
    finally:  # an interrupted parent (Ctrl-C, an error) leaves no worker behind
        for proc, recv, _ in running.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
            if proc.is_alive():  # pragma: no cover
                proc.kill()
            recv.close()


def _schedule(ctx: Any, wait: Any, pending: list[ExperimentSpec], running: dict[str, tuple[Any, Any, float]],
              results: dict[str, dict[str, Any]], selected: set[str], cfgs: Mapping[str, Any], out: Path,
              force: bool, threads: int, quiet: bool, done: Any, dependency_failed: Any, jobs: int) -> None:
    """Start workers as dependencies allow, collect their results (``running`` is shared with the caller so
    that it can stop what is still running)."""
    while pending or running:
        for spec in list(pending):
            if len(running) >= jobs:
                break
            if any(d in selected and d not in results for d in spec.depends_on):
                continue  # wait for the dependency
            pending.remove(spec)
            if dependency_failed(spec):
                continue
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(send, os.getpid(), spec, cfgs[spec.name], str(out), force,
                                                    threads, quiet),
                               name=f"reproduce-{spec.name}")
            proc.start()
            send.close()
            running[spec.name] = (proc, recv, time.perf_counter())
        if not running:
            continue
        wait([r[1] for r in running.values()] + [r[0].sentinel for r in running.values()])
        for name, (proc, recv, t_start) in list(running.items()):
            msg = None
            if recv.poll():
                try:
                    msg = recv.recv()
                except EOFError:
                    msg = None
            elif proc.is_alive():
                continue
            proc.join()
            recv.close()
            del running[name]
            done(msg or {"name": name, "status": "failed", "wall_time_s": time.perf_counter() - t_start,
                         "error": f"worker process exited with code {proc.exitcode}"})


def run_experiments(out: str | os.PathLike, size: str = "full", *, only: Sequence[int | str] | None = None,
                    jobs: int = 1, force: bool = False,
                    overrides: Mapping[str | int, Mapping[str, Any]] | None = None,
                    threads: int = 1, quiet: bool = False) -> dict[str, Any]:
    """Run the selected experiments into ``out``; returns the run manifest.

    Args:
        out: output directory (``results/``, ``runs/``, ``figures/``, ``report.html``).
        size: the tier, ``"quick"`` (minutes, CI), ``"demo"``, ``"full"``, or ``"tiny"`` (tests).
        only: experiments by number or name (default: all registered).
        jobs: parallel worker processes (1 = inline, no subprocess).
        force: rerun experiments even when a finished result exists.
        overrides: ``{experiment: {config field: value}}`` applied on top of the size's config.
        threads: torch threads per experiment.
        quiet: no progress lines on stderr.

    The manifest (also ``out/results/run_manifest.json``) holds per experiment its status (``done``,
    ``skipped`` = finished result reused, ``failed``), wall time and error, plus sizes and versions.
    """
    from infoplane.io import check_output_dir, dir_lock

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    for label, v in (("jobs", jobs), ("threads", threads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{label} must be an int >= 1, got {v!r}")
    out = check_output_dir(out, "out")
    plan = order(resolve(only))
    cfgs = configs(plan, size, overrides)  # validate sizes and overrides before starting any process
    with dir_lock(out, "reproduce"):
        return _locked(out, plan, cfgs, size, jobs=jobs, force=force, overrides=overrides, threads=threads,
                       quiet=quiet)


def _locked(out: Path, plan: list[ExperimentSpec], cfgs: Mapping[str, Any], size: str, *, jobs: int,
            force: bool, overrides: Mapping[str | int, Mapping[str, Any]] | None, threads: int,
            quiet: bool) -> dict[str, Any]:
    """The body of :func:`run_experiments`, run while ``out`` is locked."""
    from infoplane.io import atomic_write_json, versions

    (out / "results").mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}

    def progress(r: dict[str, Any]) -> None:
        results[r["name"]] = r
        if quiet:
            return
        extra = f" ({r['error']})" if r["status"] == "failed" else ""
        print(f"[reproduce {len(results)}/{len(plan)}] {r['name']}: {r['status']} in {r['wall_time_s']:.1f}s"
              f"{extra}", file=sys.stderr, flush=True)

    _run_all(plan, cfgs, out, jobs=jobs, force=force, threads=threads, quiet=quiet, report=progress)
    total = time.perf_counter() - t0
    manifest = {
        "size": size, "jobs": jobs, "threads_per_job": threads, "started_at": started,
        "experiments_wall_time_s": total, "selected": [s.name for s in plan],
        "experiments": results,
        "skipped": [n for n, r in results.items() if r["status"] == "skipped"],
        "failed": {n: r["error"] for n, r in results.items() if r["status"] == "failed"},
        "overrides": {get(k).name: {f: list(v) if isinstance(v, tuple) else v for f, v in d.items()}
                      for k, d in (overrides or {}).items()},
        "versions": versions(),
    }
    manifest["total_wall_time_s"] = total
    atomic_write_json(out / "results" / "run_manifest.json", manifest)
    return manifest
