"""Figures of the reproduction experiments, drawn from their results files only (``DIR/results/*.csv``).

Each ``fig_<experiment>(results_dir, fig_dir) -> list[(path, caption)]`` returns the PNG files it wrote
(an empty list when the experiment's tables are absent). Information-plane panels reuse
:func:`infoplane.report.plots.plot_plane` (probe area).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infoplane.io import atomic_open, read_csv

__all__ = ["FIGURES", "make_figures"]

_ARM_COLORS = {"baseline": "#1f77b4", "gapt": "#d62728", "static": "#2ca02c", "pretrained": "#7f7f7f"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return path


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _table(results: Path, name: str) -> list[dict[str, Any]]:
    p = results / f"{name}.csv"
    return read_csv(p) if p.is_file() else []


def _mean_curve(rows: list[dict], arm: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    by_step: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("arm") == arm and np.isfinite(_f(r.get(key))):
            by_step[_f(r["step"])].append(_f(r[key]))
    steps = np.array(sorted(by_step))
    return steps, np.array([np.mean(by_step[s]) for s in steps])


def _seed_dots(ax, rows: list[dict], arms: list[str], key: str, title: str) -> None:
    for i, arm in enumerate(arms):
        vals = [_f(r[key]) for r in rows if r.get("arm") == arm]
        ax.bar(i, np.nanmean(vals) if vals else np.nan, color=_ARM_COLORS.get(arm, "0.5"), alpha=0.35)
        ax.scatter([i] * len(vals), vals, color=_ARM_COLORS.get(arm, "0.5"), zorder=3, s=18)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(arms)
    ax.set_title(title, fontsize=9)


def fig_cycles(results: Path, figs: Path) -> list[tuple[Path, str]]:
    rows = _table(results, "cycles_alignment")
    if not rows:
        return []
    plt = _plt()
    seeds = sorted({r["seed"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    for ax, kind, label in ((axes[0], "mbe", "MBE"), (axes[1], "frob", "Frobenius control")):
        for s in seeds:
            rs = [r for r in rows if r["seed"] == s]
            ax.plot([r["step"] for r in rs], [_f(r[f"cos_{kind}"]) for r in rs], lw=1, label=f"seed {s}")
        ax.axhline(0, color="k", lw=0.7)
        ax.set_xlabel("step")
        ax.set_title(f"cos(grad CE, grad {label}), layer mean", fontsize=9)
    axes[0].set_ylabel("cosine")
    axes[0].legend(fontsize=7)
    out = [(_save(fig, figs / "cycles_alignment.png"),
            "Gradient alignment on a fixed held-out batch during CE-only training (per seed); left: MBE, "
            "right: Frobenius-norm control.")]
    n_layer = len([k for k in rows[0] if k.startswith("cos_mbe_")])
    fig, axes = plt.subplots(1, n_layer, figsize=(2.8 * n_layer, 2.8), sharey=True, squeeze=False)
    rs = [r for r in rows if r["seed"] == seeds[0]]
    for ax, layer in zip(axes[0], range(n_layer)):
        ax.plot([r["step"] for r in rs], [_f(r[f"cos_mbe_{layer}"]) for r in rs], lw=1, label="MBE")
        ax.plot([r["step"] for r in rs], [_f(r[f"cos_frob_{layer}"]) for r in rs], lw=1, label="Frobenius")
        ax.axhline(0, color="k", lw=0.7)
        ax.set_title(f"block {layer}", fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    out.append((_save(fig, figs / "cycles_layers.png"), f"Per-block cosines, seed {seeds[0]}."))
    return out


def fig_lm_gapt(results: Path, figs: Path) -> list[tuple[Path, str]]:
    curves, runs = _table(results, "lm_gapt_curves"), _table(results, "lm_gapt_runs")
    if not runs:
        return []
    plt = _plt()
    arms = [a for a in ("baseline", "gapt", "static") if any(r["arm"] == a for r in runs)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
    for arm in arms:
        for ax, key in ((axes[0], "ce"), (axes[1], "mbe_mean")):
            s, v = _mean_curve(curves, arm, key)
            if s.size:
                k = max(1, s.size // 40)
                if k > 1:  # centred moving average, normalised at the edges
                    v = np.convolve(v, np.ones(k), mode="same") / np.convolve(np.ones_like(v), np.ones(k),
                                                                              mode="same")
                ax.plot(s, v, color=_ARM_COLORS[arm], lw=1, label=arm)
    axes[0].set_title("training CE (mean over seeds)", fontsize=9)
    axes[1].set_title("training MBE, regularised layers (mean over seeds)", fontsize=9)
    axes[0].legend(fontsize=7)
    for ax in axes[:2]:
        ax.set_xlabel("step")
    _seed_dots(axes[2], runs, arms, "val_ce", "held-out CE (nats/token), final")
    _seed_dots(axes[3], runs, arms, "val_mbe_mean", "held-out MBE, layer mean (nats), final")
    return [(_save(fig, figs / "lm_gapt.png"),
             "Compact GPT on KJV: training curves and final held-out CE / layer-mean MBE per arm "
             "(dots = seeds, bars = means).")]


def fig_arithmetic(results: Path, figs: Path) -> list[tuple[Path, str]]:
    curves, runs = _table(results, "arithmetic_curves"), _table(results, "arithmetic_runs")
    if not runs:
        return []
    plt = _plt()
    arms = [a for a in ("baseline", "gapt") if any(r["arm"] == a for r in runs)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
    for arm in arms:
        s, v = _mean_curve(curves, arm, "val_masked_ce")
        axes[0].plot(s, v, color=_ARM_COLORS[arm], label=arm)
    axes[0].set_title("ID validation masked answer CE", fontsize=9)
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=7)
    _seed_dots(axes[1], runs, arms, "test_id_masked_ce", "ID test masked CE")
    _seed_dots(axes[2], runs, arms, "test_ood_masked_ce", "OOD test masked CE")
    _seed_dots(axes[3], runs, arms, "test_id_exact", "ID test exact match")
    return [(_save(fig, figs / "arithmetic.png"),
             "Multiplication: ID validation curve (model selection) and test metrics of the selected "
             "models.")]


def fig_forgetting(results: Path, figs: Path) -> list[tuple[Path, str]]:
    runs = _table(results, "forgetting_runs")
    if not runs:
        return []
    plt = _plt()
    arms = [a for a in ("pretrained", "baseline", "static", "gapt") if any(r["arm"] == a for r in runs)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    _seed_dots(axes[0], runs, arms, "separation", "separation of hidden representations")
    _seed_dots(axes[1], runs, arms, "old_loss", "L1 loss on the old task")
    _seed_dots(axes[2], runs, arms, "new_loss", "L1 loss on the new task")
    return [(_save(fig, figs / "forgetting.png"),
             "Conflicting tasks: separation ratio and losses after fine-tuning on the new task "
             "(dots = seeds).")]


def fig_plane_over_training(results: Path, figs: Path) -> list[tuple[Path, str]]:
    traj = _table(results, "plane_over_training_trajectory")
    if not traj:
        return []
    out = []
    rows = [{**r, "model": f"{r['arm']} s{r['seed']}"} for r in traj]
    try:
        from infoplane.report.plots import plot_plane

        paths = plot_plane(rows, figs, color_by="step", stem="plane_over_training")
        png = [p for p in paths if p.suffix == ".png"]
        if png:
            out.append((png[0], "Information-plane trajectories over training (layer means, embedding "
                                "excluded); colour = training step, dashed = bound."))
    except Exception as exc:  # the plane figure is optional; the trajectory panel below always renders
        print(f"report: plane figure skipped ({exc})")
    plt = _plt()
    ns = sorted({int(r["n"]) for r in traj})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for key, ax in zip(("complexity", "expressivity", "distance"), axes):
        for arm in sorted({r["arm"] for r in traj}):
            for s in sorted({r["seed"] for r in traj}):
                rs = sorted((r for r in traj if r["arm"] == arm and r["seed"] == s and int(r["n"]) == ns[0]),
                            key=lambda r: r["step"])
                if rs:
                    ax.plot([r["step"] for r in rs], [_f(r[key]) for r in rs], "o-", ms=3, lw=1,
                            color=_ARM_COLORS.get(arm, "0.5"), label=f"{arm}" if s == 0 else None)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{key} (n = {ns[0]}, layer mean)", fontsize=9)
    axes[0].legend(fontsize=7)
    out.append((_save(fig, figs / "plane_over_training_steps.png"),
                "Token-level complexity, expressivity and distance to the bound against training step."))
    return out


def fig_pretrained(results: Path, figs: Path) -> list[tuple[Path, str]]:
    layers = _table(results, "pretrained_layers")
    if not layers:
        return []
    plt = _plt()
    ns = sorted({int(r["n"]) for r in layers})
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
    for n in ns:
        rs = sorted((r for r in layers if int(r["n"]) == n), key=lambda r: int(r["layer"]))
        x = [int(r["layer"]) for r in rs]
        for ax, key in zip(axes, ("complexity", "expressivity", "optimality", "backoff_in_share_top")):
            ax.plot(x, [_f(r.get(key)) for r in rs], "o-", ms=2, lw=1, label=f"n = {n}")
    rs = sorted((r for r in layers if int(r["n"]) == ns[0]), key=lambda r: int(r["layer"]))
    axes[0].plot([int(r["layer"]) for r in rs], [_f(r["entropy"]) for r in rs], "k--", lw=1, label="H(Z)")
    for ax, key in zip(axes, ("complexity I(X_n;Z) and H(Z)", "expressivity I(Z;Y_n)", "optimality",
                              "back-off share of I(X_nmax;Z)")):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("layer (0 = embedding)")
    axes[0].legend(fontsize=7)
    return [(_save(fig, figs / "pretrained_layers.png"),
             "SmolLM2-135M on KJV: per-layer soft entropy, information-plane measures and back-off shares.")]


FIGURES: dict[str, Callable[[Path, Path], list[tuple[Path, str]]]] = {
    "cycles": fig_cycles, "lm_gapt": fig_lm_gapt, "arithmetic": fig_arithmetic, "forgetting": fig_forgetting,
    "plane_over_training": fig_plane_over_training, "pretrained": fig_pretrained,
}


def make_figures(name: str, results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Figures of experiment ``name`` (empty when it has no figure function or no tables)."""
    fn = FIGURES.get(name)
    return fn(results, figs) if fn else []
