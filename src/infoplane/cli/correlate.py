"""``infoplane correlate``: information-plane measures of many models against their downstream scores.

    infoplane correlate --plane runs/*/probe_plane.csv --lm-eval evals/ --models models.csv --out study/

Reads tidy plane tables and lm-eval result files (lm-eval's own ``results_*.json``), writes the correlation
table (Pearson and Spearman with bootstrap intervals clustered by configuration, partial r given log
parameters and in-domain CE) and the figures; see :mod:`infoplane.downstream.study`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _cmd(args: argparse.Namespace) -> int:
    from infoplane.downstream.study import correlate_study

    written = correlate_study(args.plane, args.lm_eval, args.out, models=args.models, n=args.n,
                              measures=args.measures, score=args.score, n_resamples=args.bootstrap,
                              seed=args.seed)
    for name, path in written.items():
        print(f"{name}\t{path}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``correlate`` sub-command."""
    p = subparsers.add_parser(
        "correlate", help="correlate plane measures of many models with their lm-eval scores",
        description="Pearson/Spearman (bootstrap CIs, clustered by configuration) and partial correlations "
                    "(given log parameters and in-domain CE) of information-plane measures with downstream "
                    "scores across models; writes correlations.csv, scores.csv and figures.")
    p.add_argument("--plane", nargs="+", required=True, metavar="CSV",
                   help="plane tables (*_plane.csv or probe.csv) with a model column")
    p.add_argument("--lm-eval", nargs="+", required=True, metavar="PATH",
                   help="lm-eval results_*.json files or folders holding them")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--models", metavar="CSV", help="models table: model, config, n_params, ce")
    p.add_argument("--n", type=int, default=1, help="back-off order of the measures")
    p.add_argument("--measures", nargs="+", metavar="COLUMN",
                   help="plane columns (default: optimality complexity expressivity and any seq_mi_*)")
    p.add_argument("--score", default="aggregate", help="'aggregate' or a task name")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.set_defaults(func=_cmd)
