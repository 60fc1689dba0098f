"""``infoplane reproduce``: run the reproduction experiments and build the self-contained report.

    infoplane reproduce [--scale quick|demo|full] [--only N ...] [--jobs J] [--force] [--set EXP.FIELD=JSON]
                        --out DIR

Scale tiers: ``quick`` (CI, a few minutes), ``demo`` (what ``make demo`` runs; at most 20 minutes on 2 cores),
``full`` (every experiment, >= 8 independent seeds per headline claim; about an hour on 2 cores, resumable).

The experiments run through :func:`infoplane.experiments.runner.run_experiments` (dependency order from the
registry, worker processes, resume by done-markers); then :func:`infoplane.report.build.build_report` writes
``DIR/report.html`` from the results files. :func:`reproduce` (also ``infoplane.reproduce``) is those two
calls, under one lock of ``DIR`` (a second invocation into it is refused, naming the first); it lives here
because only the CLI layer sits above both the experiments and the report. Exit
status 1 if any experiment failed (the report is still built, with the failure shown).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["register", "reproduce", "parse_overrides"]


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


def reproduce(out: str | os.PathLike, size: str = "demo", *, only: Sequence[int | str] | None = None,
              jobs: int = 1, force: bool = False,
              overrides: Mapping[str | int, Mapping[str, Any]] | None = None,
              threads: int = 1, quiet: bool = False) -> dict[str, Any]:
    """Run the selected experiments into ``out`` and build ``out/report.html``; returns the run manifest.

    Arguments as in :func:`infoplane.experiments.runner.run_experiments`. The manifest gains
    ``report_wall_time_s`` and is rewritten to ``out/results/run_manifest.json``.
    """
    from infoplane.experiments.runner import run_experiments
    from infoplane.io import atomic_write_json, check_output_dir, dir_lock
    from infoplane.report.build import build_report

    t0 = time.perf_counter()
    check_output_dir(out, "out")
    with dir_lock(out, "reproduce"):  # experiments and report: one invocation at a time per directory
        manifest = run_experiments(out, size, only=only, jobs=jobs, force=force, overrides=overrides,
                                   threads=threads, quiet=quiet)
        t1 = time.perf_counter()
        html = build_report(out)
        manifest["report_wall_time_s"] = time.perf_counter() - t1
        manifest["total_wall_time_s"] = time.perf_counter() - t0
        atomic_write_json(Path(out) / "results" / "run_manifest.json", manifest)
    if not quiet:
        print(f"[reproduce] report: {html} (total {manifest['total_wall_time_s']:.1f}s)", file=sys.stderr,
              flush=True)
    return manifest


def _cmd(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    from infoplane.io import check_output_dir

    check_output_dir(args.out, "--out")  # before the experiments' configs are even built
    size = "quick" if args.quick else args.scale
    manifest = reproduce(args.out, size, only=args.only, jobs=args.jobs, force=args.force,
                         overrides=parse_overrides(args.set), threads=args.threads, quiet=args.quiet)
    return 1 if manifest["failed"] else 0


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` sub-command."""
    p = subparsers.add_parser(
        "reproduce", help="run the reproduction experiments and build DIR/report.html",
        description="Run the reproduction experiments (resumable) and build a self-contained HTML report "
                    "whose claims table has verdicts computed from the results.")
    p.add_argument("--out", required=True, help="output directory (results/, figures/, runs/, report.html)")
    p.add_argument("--scale", choices=["quick", "demo", "full"], default="demo",
                   help="tier: quick (CI, minutes), demo (make demo, <= 20 min on 2 cores), full (>= 8 seeds "
                        "per headline claim, resumable)")
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # alias of --scale quick
    p.add_argument("--only", nargs="+", metavar="N",
                   help="experiments to run, by number or name (default: all)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel worker processes (1 = inline; default min(2, CPUs))")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--force", action="store_true",
                   help="rerun experiments even when a finished result exists")
    p.add_argument("--quiet", action="store_true", help="no per-experiment progress lines")
    p.add_argument("--set", action="append", metavar="EXP.FIELD=JSON",
                   help="override a config field, e.g. --set lm_gapt.steps=40; a nested config's field with "
                        "a dotted name, e.g. --set plane_over_training.probe.max_tokens=256 (repeatable)")
    p.set_defaults(func=_cmd)
