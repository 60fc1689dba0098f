"""Figures of experiment 8 (:mod:`infoplane.experiments.trajectory`), drawn from its results tables only:

* dense plane paths (token complexity vs expressivity, raw MI) per hidden state and layer mean, every seed
  overlaid, points coloured by log10(step), the saturation step marked, the permutation nulls as bands;
* held-out CE and null-corrected complexity against step, saturation steps marked;
* the Markov plane with the source's exact answer, and the complexity about context beyond k over training.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["figures"]


def _sat(runs: list[dict], arm: str) -> dict[int, float]:
    from infoplane.experiments.presentation import as_float

    return {int(r["seed"]): as_float(r["saturation_step"]) for r in runs if r["arm"] == arm}


def _plane_paths(plane: list[dict], runs: list[dict], arm: str, figs: Path) -> tuple[Path, str] | None:
    from infoplane.experiments.presentation import as_float, pyplot, save_png

    rows = [r for r in plane if r["arm"] == arm and r["variant"] == "main" and int(r["n"]) == 1]
    if not rows:
        return None
    plt = pyplot()
    layers = sorted({str(r["layer"]) for r in rows}, key=lambda s: (s == "mean", s))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 3.4), squeeze=False)
    steps = [as_float(r["step"]) for r in rows]
    norm = plt.Normalize(math.log10(max(min(steps), 1)), math.log10(max(steps)))
    sat = _sat(runs, arm)
    sc = None
    for ax, layer in zip(axes[0], layers):
        sel = [r for r in rows if str(r["layer"]) == layer]
        by: dict[int, list[dict]] = defaultdict(list)
        for r in sel:
            by[int(r["seed"])].append(r)
        cx = [as_float(r["complexity"]) for r in sel]
        ey = [as_float(r["expressivity"]) for r in sel]
        hi = max(max(cx), max(ey)) * 1.1 or 1.0
        # null bands: the permutation-null MI (max over points) shaded along each axis
        ax.axvspan(0, max(as_float(r["complexity_null"]) for r in sel), color="0.85", lw=0)
        ax.axhspan(0, max(as_float(r["expressivity_null"]) for r in sel), color="0.85", lw=0)
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)  # bound I(X;Z) = I(Z;Y) (Conklin et al. 2026, sec. 2)
        for seed, rs in sorted(by.items()):
            rs.sort(key=lambda r: as_float(r["step"]))
            x = [as_float(r["complexity"]) for r in rs]
            y = [as_float(r["expressivity"]) for r in rs]
            ax.plot(x, y, "-", color="0.6", lw=0.5, zorder=1)
            sc = ax.scatter(
                x,
                y,
                c=[math.log10(as_float(r["step"])) for r in rs],
                cmap="viridis",
                norm=norm,
                s=7,
                zorder=2,
            )
            s = sat.get(seed)
            at = [r for r in rs if math.isfinite(s or math.nan) and as_float(r["step"]) == s]
            if at:
                ax.scatter(
                    [as_float(at[0]["complexity"])],
                    [as_float(at[0]["expressivity"])],
                    marker="x",
                    color="red",
                    s=30,
                    zorder=3,
                )
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel("complexity I(X;Z)")
        ax.set_title(f"{arm}: {'layer mean' if layer == 'mean' else 'hidden state ' + layer}", fontsize=8)
    axes[0][0].set_ylabel("expressivity I(Z;Y)")
    if sc is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), label="log10(step)", shrink=0.8)
    path = save_png(fig, figs / f"trajectory_plane_{arm}.png")
    return path, (
        f"{arm} runs: token-level plane paths per hidden state and layer mean, all seeds, colour = "
        "log10(step); red x = the run's saturation step; grey bands = permutation-null MI; dashed = "
        "the bound I(X;Z) = I(Z;Y)."
    )


def _curves(ce_rows: list[dict], plane: list[dict], runs: list[dict], figs: Path) -> tuple[Path, str] | None:
    from infoplane.experiments.presentation import ARM_COLORS, as_float, pyplot, save_png

    arms = [a for a in ("ce", "gapt") if any(r["arm"] == a for r in ce_rows)]
    if not arms:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    colors = {"ce": ARM_COLORS["baseline"], "gapt": ARM_COLORS["gapt"]}
    for arm in arms:
        sat = _sat(runs, arm)
        for seed in sorted({int(r["seed"]) for r in ce_rows if r["arm"] == arm}):
            c = sorted(
                (r for r in ce_rows if r["arm"] == arm and int(r["seed"]) == seed),
                key=lambda r: as_float(r["step"]),
            )
            p = sorted(
                (
                    r
                    for r in plane
                    if r["arm"] == arm
                    and int(r["seed"]) == seed
                    and r["variant"] == "main"
                    and str(r["layer"]) == "mean"
                    and int(r["n"]) == 1
                ),
                key=lambda r: as_float(r["step"]),
            )
            lab = arm if seed == min(sat, default=seed) else None
            axes[0].plot(
                [as_float(r["step"]) for r in c],
                [as_float(r["val_ce"]) for r in c],
                "-",
                lw=0.8,
                color=colors[arm],
                label=lab,
            )
            axes[1].plot(
                [as_float(r["step"]) for r in p],
                [as_float(r["complexity_excess"]) for r in p],
                "-",
                lw=0.8,
                color=colors[arm],
                label=lab,
            )
            s = sat.get(seed, math.nan)
            if math.isfinite(s):
                for ax in axes:
                    ax.axvline(s, color=colors[arm], lw=0.4, ls=":")
    axes[0].set_ylabel("held-out CE (nats/token)")
    axes[1].set_ylabel("I(X;Z) - null, token level, layer mean")
    axes[1].axhline(0, color="k", lw=0.5)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    path = save_png(fig, figs / "trajectory_ce.png")
    return path, (
        "Held-out CE and null-corrected token complexity at the monitor points, every seed; dotted "
        "lines = saturation steps (declared rule: < 1 % CE gain per doubling of steps)."
    )


def _markov(
    plane: list[dict], runs: list[dict], summary: dict[str, Any], figs: Path
) -> tuple[Path, str] | None:
    from infoplane.experiments.presentation import as_float, pyplot, save_png

    rows = [r for r in plane if r["arm"] == "markov" and str(r["layer"]) == "mean"]
    if not rows:
        return None
    ka = summary.get("known_answer", {})
    k = int(summary.get("config", {}).get("markov_order", 2))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sat = _sat(runs, "markov")
    ax = axes[0]
    for seed in sorted({int(r["seed"]) for r in rows}):

        def series(n: int, key: str, seed: int = seed) -> dict[float, float]:
            return {
                as_float(r["step"]): as_float(r[key])
                for r in rows
                if int(r["seed"]) == seed and int(r["n"]) == n
            }

        ck, e1 = series(k, "complexity"), series(1, "expressivity")
        st = sorted(set(ck) & set(e1))
        ax.plot([ck[s] for s in st], [e1[s] for s in st], "-", color="0.6", lw=0.5)
        ax.scatter([ck[s] for s in st], [e1[s] for s in st], c=np.log10(st), cmap="viridis", s=7)
        exk, exk1 = series(k, "complexity_excess"), series(k + 1, "complexity_excess")
        sb = sorted(set(exk) & set(exk1))
        axes[1].plot(sb, [exk1[s] - exk[s] for s in sb], "-", lw=0.8, color="#2ca02c")
        s = sat.get(seed, math.nan)
        if math.isfinite(s):
            axes[1].axvline(s, color="0.5", lw=0.4, ls=":")
    bound = ka.get("expressivity_bound_n1")
    if bound is not None:
        ax.axhline(bound, color="red", lw=1, label="exact I(Y_1;X_k) / log m")
    lim = ax.get_xlim()[1]
    ax.plot([0, lim], [0, lim], "k--", lw=0.8)
    ax.set_xlabel(f"complexity I(X_{k};Z)")
    ax.set_ylabel("expressivity I(Z;Y_1)")
    ax.legend(fontsize=7)
    axes[1].axhline(0, color="red", lw=1, label="known answer: 0 (source order k)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel(f"(I(X_{k + 1};Z) - null) - (I(X_{k};Z) - null)")
    axes[1].legend(fontsize=7)
    path = save_png(fig, figs / "trajectory_markov.png")
    return path, (
        f"Order-{k} Markov source: plane paths (layer mean, colour = log10(step)) against the exact "
        "ceiling of expressivity, and the null-corrected complexity about context beyond k over "
        "training (dotted: saturation steps)."
    )


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """The experiment's figures (module docstring) from ``trajectory_*.csv`` and ``trajectory.json``."""
    from infoplane.experiments.presentation import read_table
    from infoplane.io import read_json

    plane = read_table(results, "trajectory_plane")
    if not plane:
        return []
    runs, ce_rows = read_table(results, "trajectory_runs"), read_table(results, "trajectory_ce")
    summary_path = results / "trajectory.json"
    summary = read_json(summary_path) if summary_path.is_file() else {}
    out = [_plane_paths(plane, runs, arm, figs) for arm in ("ce", "gapt")]
    out += [_curves(ce_rows, plane, runs, figs), _markov(plane, runs, summary, figs)]
    return [o for o in out if o is not None]
