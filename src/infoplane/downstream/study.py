"""The cross-model study behind ``infoplane correlate``: probe tables + lm-eval results -> correlation table
and figures (Conklin et al. 2026, sec. 5 and fig. 5).

Inputs: tidy plane tables of many models (``*_plane.csv``, or raw ``probe.csv`` rows, one ``model`` column),
lm-eval result files in lm-eval's own format, and optionally a models table (CSV with ``model`` and any of
``config``, ``n_params``, ``ce``): ``config`` clusters the bootstrap, ``log(n_params)`` and ``ce`` (in-domain
held-out cross-entropy) are partialled out.
Outputs in ``out``: ``correlations.csv`` (one row per measure and score), ``scores.csv`` (per model: task
scores and the aggregate), ``measures_vs_score.{png,svg}`` and ``plane_by_score.{png,svg}``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infoplane.io import atomic_write_csv, read_csv
from infoplane.plots import load_plane_rows

from .correlate import correlate
from .evaluate import aggregate_score, read_results
from .figures import plot_measure_scatter, plot_plane_by_score

__all__ = ["correlate_study", "STUDY_MEASURES"]

STUDY_MEASURES = ("optimality", "complexity", "expressivity")


def _models_table(path: str | os.PathLike | None
                  ) -> tuple[dict[str, str] | None, dict[str, dict[str, float]]]:
    if path is None:
        return None, {}
    rows = read_csv(path)
    if not rows or "model" not in rows[0]:
        raise ValueError(f"models table {str(path)!r}: expected a CSV with a 'model' column and any of "
                         f"config, n_params, ce; got columns {sorted(rows[0]) if rows else []}")
    clusters = {str(r["model"]): str(r["config"]) for r in rows if r.get("config") not in (None, "")} \
        if "config" in rows[0] else None
    cov: dict[str, dict[str, float]] = {}
    for r in rows:
        m = str(r["model"])
        if r.get("n_params") not in (None, ""):
            n_params = float(r["n_params"])
            if n_params <= 0:
                raise ValueError(f"models table: n_params of {m!r} must be > 0, got {n_params}")
            cov.setdefault("log_params", {})[m] = math.log(n_params)
        if r.get("ce") not in (None, ""):
            cov.setdefault("ce", {})[m] = float(r["ce"])
    return clusters, cov


def correlate_study(plane: Sequence[str | os.PathLike], lm_eval: Sequence[str | os.PathLike],
                    out: str | os.PathLike, *, models: str | os.PathLike | None = None, n: int = 1,
                    measures: Sequence[str] | None = None, score: str = "aggregate",
                    n_resamples: int = 2000, seed: int = 0) -> dict[str, Path]:
    """Correlate plane measures with lm-eval scores across models; returns ``{name: path}`` of the outputs.

    Args:
        plane: plane tables (paths) of the models (their ``model`` columns must match the lm-eval names).
        lm_eval: lm-eval result files or folders (see :func:`infoplane.downstream.evaluate.read_results`).
        out: output folder.
        models: optional models table (``model, config, n_params, ce``).
        n: back-off order (paper: token level, 1).
        measures: plane columns (default: optimality, complexity, expressivity and any ``seq_mi_*``).
        score: ``"aggregate"`` or one task name (its primary metric).
        n_resamples: bootstrap resamples of the intervals; seed: their seed.
    """
    if not plane or not lm_eval:
        raise ValueError("need at least one plane table and one lm-eval result")
    rows: list[dict[str, Any]] = []
    for p in plane:
        rows.extend(load_plane_rows(p))
    table = aggregate_score(read_results(lm_eval))
    scores = {m: v[score] for m, v in table.items() if score in v}
    if len(scores) < 3:
        raise ValueError(f"score {score!r} is available for {len(scores)} models ({sorted(scores)}): need "
                         f">= 3 (tasks per model: { {m: sorted(v) for m, v in table.items()} })")
    clusters, cov = _models_table(models)
    if measures is None:
        seq = sorted({k for r in rows for k in r if k.startswith("seq_mi_")
                      and not k.startswith("seq_mi_null") and r.get(k) not in (None, "")})
        measures = [*STUDY_MEASURES, *seq]
    result = correlate(rows, [{"model": m, score: v} for m, v in scores.items()],
                       measures=measures, n=n, covariates=cov or None, clusters=clusters,
                       n_resamples=n_resamples, seed=seed)
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    written = {"correlations.csv": d / "correlations.csv", "scores.csv": d / "scores.csv"}
    atomic_write_csv(written["correlations.csv"], result)
    tasks = sorted({t for v in table.values() for t in v})
    atomic_write_csv(written["scores.csv"], [{"model": m, **{t: v.get(t) for t in tasks}}
                                             for m, v in sorted(table.items())])
    stats = {r["measure"]: r for r in result}
    for p in plot_measure_scatter(rows, scores, list(measures), d, n=n, score_name=score, stats=stats):
        written[p.name] = p
    for p in plot_plane_by_score(rows, scores, d, n=n, score_name=score):
        written[p.name] = p
    return written
