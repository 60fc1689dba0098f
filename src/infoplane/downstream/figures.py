"""Figures of the cross-model study (headless Agg; PNG and SVG): each measure against the downstream score,
and the information plane with every model's layer mean coloured by its score (Conklin et al. 2026, fig. 5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infoplane.plots import pyplot_agg, save_figure

__all__ = ["plot_measure_scatter", "plot_plane_by_score"]


def _means(plane_rows: Sequence[Mapping[str, Any]], n: int) -> dict[str, Mapping[str, Any]]:
    """model -> its layer-mean row at order n (the last step when there are several)."""
    out: dict[str, Mapping[str, Any]] = {}
    for r in plane_rows:
        if str(r.get("layer")) != "mean" or r.get("n") in (None, "") or int(float(r["n"])) != n:
            continue
        m = str(r.get("model"))
        if m not in out or float(r.get("step") or 0) >= float(out[m].get("step") or 0):
            out[m] = r
    return out


def plot_measure_scatter(plane_rows: Sequence[Mapping[str, Any]], scores: Mapping[str, float],
                         measures: Sequence[str], out_dir: str | os.PathLike, *, n: int = 1,
                         score_name: str = "aggregate", stats: Mapping[str, Mapping[str, Any]] | None = None,
                         stem: str = "measures_vs_score") -> list[Path]:
    """One panel per measure: layer mean at order ``n`` (x) against the model's score (y); ``stats``
    (``{measure: correlate row}``) puts r, its interval and n in the panel title."""
    plt = pyplot_agg()
    means = _means(plane_rows, n)
    fig, axes = plt.subplots(1, len(measures), figsize=(3.6 * len(measures), 3.4), squeeze=False)
    for ax, meas in zip(axes[0], measures):
        pts = [(float(r[meas]), scores[m]) for m, r in sorted(means.items())
               if m in scores and r.get(meas) not in (None, "")]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22)
        ax.set_xlabel(f"{meas} (n = {n}, layer mean)")
        ax.set_ylabel(score_name)
        st = (stats or {}).get(meas)
        if st:
            ci = ""
            if st.get("pearson_ci_low") is not None:
                ci = f" [{st['pearson_ci_low']:.2f}, {st['pearson_ci_high']:.2f}]"
            ax.set_title(f"r = {st['pearson_r']:.2f}{ci}, n = {st['n_models']}", fontsize=9)
    return save_figure(fig, Path(out_dir), stem)


def plot_plane_by_score(plane_rows: Sequence[Mapping[str, Any]], scores: Mapping[str, float],
                        out_dir: str | os.PathLike, *, n: int = 1, score_name: str = "aggregate",
                        stem: str = "plane_by_score") -> list[Path]:
    """Complexity (x) against expressivity (y) of each model's layer mean at order ``n``, coloured by its
    score, with the bound I(X;Z) = I(Z;Y) dashed (Conklin et al. 2026, sec. 2)."""
    plt = pyplot_agg()
    pts = [(float(r["complexity"]), float(r["expressivity"]), scores[m]) for m, r in sorted(_means(
        plane_rows, n).items()) if m in scores and r.get("complexity") not in (None, "")
        and r.get("expressivity") not in (None, "")]
    if not pts:
        raise ValueError(f"no model has both a layer-mean plane row at n = {n} and a score")
    fig, ax = plt.subplots(figsize=(4.4, 4))
    hi = max(max(p[0], p[1]) for p in pts) * 1.1 or 1.0
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="bound I(X;Z) = I(Z;Y)")  # Conklin et al. 2026, sec. 2
    sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=[p[2] for p in pts], cmap="viridis", s=30)
    fig.colorbar(sc, ax=ax, label=score_name)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel(f"complexity I(X_{n}; Z)")
    ax.set_ylabel(f"expressivity I(Z; Y_{n})")
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, Path(out_dir), stem)
