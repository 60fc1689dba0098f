"""Number formatting and figure helpers shared by the experiments' ``describe`` and ``figures`` hooks.

The hooks (see :mod:`infoplane.experiments.registry`) turn an experiment's results files into report text
and PNG figures; the report (:mod:`infoplane.report.build`) only loops over them. Figures are drawn
headless (matplotlib's Agg backend) from the tidy CSV tables in ``DIR/results`` and written atomically.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from infoplane.io import atomic_open, read_csv

__all__ = ["ARM_COLORS", "fmt", "pm", "stat_pm", "pyplot", "save_png", "as_float", "read_table", "mean_curve",
           "seed_dots"]

ARM_COLORS = {"baseline": "#1f77b4", "gapt": "#d62728", "static": "#2ca02c", "pretrained": "#7f7f7f"}


def fmt(x: Any, digits: int = 4) -> str:
    """Format numbers compactly (``digits`` significant digits; NaN/None as an en dash); others as text."""
    if x is None:
        return "\u2013"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "\u2013" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        if x == 0:
            return "0"
        if abs(x) >= 1e5 or abs(x) < 1e-3:
            return f"{x:.{max(digits - 1, 1)}e}"
        return f"{x:.{digits}g}"
    return str(x)


def pm(mean: Any, se: Any) -> str:
    """``"mean ± se"`` (just the mean when se is not finite; an en dash when the mean is not finite)."""
    if mean is None or not isinstance(mean, float) or not math.isfinite(mean):
        return "\u2013"
    return f"{fmt(mean)} \u00b1 {fmt(se)}" if isinstance(se, float) and math.isfinite(se) else fmt(mean)


def stat_pm(stats: Mapping[str, Any], arm: str, key: str) -> str:
    """:func:`pm` of ``stats[arm][key]`` (a :func:`~infoplane.experiments.common.summarize` dict)."""
    d = stats.get(arm, {}).get(key, {})
    return pm(d.get("mean"), d.get("se"))


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG (90 dpi, tight box) atomically to ``path``, close it and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return path


def as_float(v: Any) -> float:
    """``float(v)``, NaN when ``v`` is missing or not a number (CSV cells)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def read_table(results: Path, name: str) -> list[dict[str, Any]]:
    """Rows of ``results/<name>.csv`` (empty when the table is absent)."""
    p = results / f"{name}.csv"
    return read_csv(p) if p.is_file() else []


def mean_curve(rows: list[dict[str, Any]], arm: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and the mean of ``key`` over the rows (seeds) of ``arm`` at each step (finite values only)."""
    by_step: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("arm") == arm and np.isfinite(as_float(r.get(key))):
            by_step[as_float(r["step"])].append(as_float(r[key]))
    steps = np.array(sorted(by_step))
    return steps, np.array([np.mean(by_step[s]) for s in steps])


def seed_dots(ax: Any, rows: list[dict[str, Any]], arms: list[str], key: str, title: str) -> None:
    """Per arm: a bar at the mean of ``key`` and one dot per row (seed)."""
    for i, arm in enumerate(arms):
        vals = [as_float(r[key]) for r in rows if r.get("arm") == arm]
        ax.bar(i, np.nanmean(vals) if vals else np.nan, color=ARM_COLORS.get(arm, "0.5"), alpha=0.35)
        ax.scatter([i] * len(vals), vals, color=ARM_COLORS.get(arm, "0.5"), zorder=3, s=18)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(arms)
    ax.set_title(title, fontsize=9)
