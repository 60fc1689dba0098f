"""``infoplane reproduce``: run the reproduction experiments and build the self-contained report.

    infoplane reproduce [--quick] [--only N ...] [--jobs J] [--force] [--set EXP.FIELD=JSON ...] --out DIR

Experiments run in up to ``--jobs`` worker processes (one torch thread each; experiment 5 waits for
experiment 2, whose checkpoints it probes). Each finished experiment writes its results atomically with a
done-marker holding its config hash, so a rerun skips it unless its config changed (``--force`` reruns).
Then ``DIR/report.html`` is built from the results files. Exit status 1 if any experiment failed (the report
is still built, with the failure shown).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["register", "reproduce", "parse_overrides"]

# longest first, so that two workers stay busy; plane_over_training depends on lm_gapt
_ORDER = ("lm_gapt", "arithmetic", "cycles", "pretrained", "forgetting", "plane_over_training")
_DEPENDS = {"plane_over_training": "lm_gapt"}


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["lm_gapt.steps=40", "forgetting.seeds=[0,1]"]`` -> ``{"lm_gapt": {"steps": 40}, ...}`` (values are
    JSON; lists become tuples; a value that is not JSON is kept as a string)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"--set expects EXPERIMENT.FIELD=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        exp, fld = key.split(".", 1)
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        if isinstance(val, list):
            val = tuple(val)
        out.setdefault(exp, {})[fld] = val
    return out


def _configs(names: list[str], size: str, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from infoplane.experiments.common import config_hash
    from infoplane.experiments.registry import get, make_config

    cfgs = {}
    for name in names:
        cfgs[name] = make_config(get(name), size, overrides.get(name))
    if "plane_over_training" in cfgs:  # rerun experiment 5 whenever experiment 2's config changes
        import dataclasses

        lm_cfg = cfgs.get("lm_gapt") or make_config(get("lm_gapt"), size, overrides.get("lm_gapt"))
        cfgs["plane_over_training"] = dataclasses.replace(cfgs["plane_over_training"],
                                                          source_hash=config_hash(lm_cfg))
    return cfgs


def _run_one(name: str, size: str, overrides: dict[str, dict[str, Any]], out: str, force: bool,
             threads: int) -> dict[str, Any]:
    """Build the config and run one experiment (in a child process or inline); never raises."""
    t0 = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(threads)
        from infoplane.experiments.common import run_experiment
        from infoplane.experiments.registry import get

        cfg = _configs([name], size, overrides)[name]
        summary = run_experiment(name, cfg, out, get(name).run_fn(), force=force)
        return {"name": name, "status": "skipped" if summary.get("resumed") else "done",
                "wall_time_s": time.perf_counter() - t0, "skipped_reason": summary.get("skipped_reason")}
    except Exception as exc:  # recorded in the manifest and shown in the report
        traceback.print_exc()
        return {"name": name, "status": "failed", "wall_time_s": time.perf_counter() - t0,
                "error": f"{type(exc).__name__}: {exc}"}


def _child(conn: Any, *args: Any) -> None:
    """Entry point of a child process: run one experiment and send its result dict through ``conn``."""
    try:
        conn.send(_run_one(*args))
    finally:
        conn.close()


def reproduce(out: str | os.PathLike, size: str = "full", only: list[str] | None = None, jobs: int = 1,
              force: bool = False, overrides: dict[str, dict[str, Any]] | None = None,
              threads: int = 1) -> dict[str, Any]:
    """Run the selected experiments and build the report; returns the run manifest."""
    from infoplane.experiments.registry import resolve
    from infoplane.io import atomic_write_json, versions
    from infoplane.report.build import build_report

    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    specs = resolve(only)
    names = [n for n in _ORDER if n in {s.name for s in specs}]
    _configs(names, size, overrides or {})  # validate sizes and overrides before starting any process
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    n_total = len(names)

    def report(r: dict[str, Any]) -> None:
        results[r["name"]] = r
        extra = f" ({r['error']})" if r["status"] == "failed" else ""
        print(f"[reproduce {len(results)}/{n_total}] {r['name']}: {r['status']} in {r['wall_time_s']:.1f}s"
              f"{extra}", file=sys.stderr, flush=True)

    if jobs <= 1:
        for name in names:
            dep = _DEPENDS.get(name)
            if dep in results and results[dep]["status"] == "failed":
                report({"name": name, "status": "failed", "wall_time_s": 0.0,
                        "error": f"depends on {dep}, which failed"})
                continue
            report(_run_one(name, size, overrides or {}, str(out), force, threads))
    else:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")  # no fork after torch initialised its thread pools
        pending = list(names)
        running: dict[str, tuple[Any, Any, float]] = {}
        while pending or running:
            for name in list(pending):
                if len(running) >= jobs:
                    break
                dep = _DEPENDS.get(name)
                if dep in names and dep not in results:
                    continue  # wait for the dependency
                pending.remove(name)
                if dep in results and results[dep]["status"] == "failed":
                    report({"name": name, "status": "failed", "wall_time_s": 0.0,
                            "error": f"depends on {dep}, which failed"})
                    continue
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, name, size, overrides or {}, str(out), force,
                                                        threads), name=f"reproduce-{name}")
                proc.start()
                send.close()
                running[name] = (proc, recv, time.perf_counter())
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
                report(msg or {"name": name, "status": "failed", "wall_time_s": time.perf_counter() - t_start,
                               "error": f"worker process exited with code {proc.exitcode}"})
    total = time.perf_counter() - t0
    manifest = {
        "size": size, "jobs": jobs, "threads_per_job": threads, "started_at": started,
        "experiments_wall_time_s": total, "selected": names,
        "experiments": results,
        "skipped": [n for n, r in results.items() if r["status"] == "skipped"],
        "failed": {n: r["error"] for n, r in results.items() if r["status"] == "failed"},
        "overrides": {k: {f: list(v) if isinstance(v, tuple) else v for f, v in d.items()}
                      for k, d in (overrides or {}).items()},
        "versions": versions(),
    }
    manifest["total_wall_time_s"] = total
    atomic_write_json(out / "results" / "run_manifest.json", manifest)
    t1 = time.perf_counter()
    html = build_report(out)
    manifest["report_wall_time_s"] = time.perf_counter() - t1
    manifest["total_wall_time_s"] = time.perf_counter() - t0
    atomic_write_json(out / "results" / "run_manifest.json", manifest)
    print(f"[reproduce] report: {html} (total {manifest['total_wall_time_s']:.1f}s)", file=sys.stderr,
          flush=True)
    return manifest


def _cmd(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    size = "quick" if args.quick else "full"
    manifest = reproduce(args.out, size=size, only=args.only, jobs=args.jobs, force=args.force,
                         overrides=parse_overrides(args.set), threads=args.threads)
    return 1 if manifest["failed"] else 0


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` sub-command."""
    p = subparsers.add_parser(
        "reproduce", help="run the reproduction experiments and build DIR/report.html",
        description="Run the six reproduction experiments (resumable) and build a self-contained HTML report "
                    "whose claims table has verdicts computed from the results.")
    p.add_argument("--out", required=True, help="output directory (results/, figures/, runs/, report.html)")
    p.add_argument("--quick", action="store_true", help="small sizes (CI; a few minutes in total)")
    p.add_argument("--only", nargs="+", metavar="N",
                   help="experiments to run, by number (1-6) or name (default: all)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel worker processes (default: min(2, CPUs))")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--force", action="store_true",
                   help="rerun experiments even when a finished result exists")
    p.add_argument("--set", action="append", metavar="EXP.FIELD=JSON",
                   help="override a config field, e.g. --set lm_gapt.steps=40 (repeatable)")
    p.set_defaults(func=_cmd)
