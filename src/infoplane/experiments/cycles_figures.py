"""Figures of experiment 1 (:mod:`infoplane.experiments.cycles`), drawn from its results tables only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["draw"]

_COLORS = {"mbe": "#d62728", "frob": "#1f77b4"}
_LABELS = {"mbe": "MBE", "frob": "Frobenius control"}


def _grid(plt, n: int, w: float = 3.0, h: float = 2.4):
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False, sharex=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def draw(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """``cycles_alignment.png`` (series +- 2 SE per seed), ``cycles_surrogates.png`` (null counts vs
    observed), ``cycles_validity.png`` (cos_t vs the next fall of held-out MBE)."""
    from infoplane.experiments.presentation import as_float, pyplot, read_table, save_png

    rows = read_table(results, "cycles_alignment")
    if not rows or "cos_mbe_se" not in rows[0]:
        return []
    plt = pyplot()
    seeds = sorted({r["seed"] for r in rows})
    out = []

    fig, axes = _grid(plt, len(seeds))
    for ax, s in zip(axes, seeds):
        rs = [r for r in rows if r["seed"] == s]
        t = np.array([as_float(r["step"]) for r in rs])
        for fam in ("mbe", "frob"):
            m = np.array([as_float(r[f"cos_{fam}"]) for r in rs])
            se = np.array([as_float(r[f"cos_{fam}_se"]) for r in rs])
            ax.plot(t, m, lw=0.9, color=_COLORS[fam], label=_LABELS[fam])
            ax.fill_between(t, m - 2 * se, m + 2 * se, color=_COLORS[fam], alpha=0.25, lw=0)
        ax.axhline(0, color="k", lw=0.6)
        burn = [as_float(r["step"]) for r in rs if str(r.get("analysed")) == "False"]
        if burn:
            ax.axvspan(t[0], max(burn), color="0.85", lw=0, zorder=0)
        ax.set_title(f"seed {s}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    axes[0].set_ylabel("cosine", fontsize=8)
    out.append(
        (
            save_png(fig, figs / "cycles_alignment.png"),
            "Layer-mean cos(grad CE, grad MBE) (red) and the Frobenius control (blue) during CE-only "
            "training, mean over the K fixed held-out probe batches with a +-2 SE band, per seed (x: step; "
            "grey: burn-in, not analysed).",
        )
    )

    nulls = [r for r in read_table(results, "cycles_null") if r.get("count") not in (None, "")]
    if nulls:
        fig, axes = _grid(plt, len(seeds))
        for ax, s in zip(axes, seeds):
            for fam in ("mbe", "frob"):
                ns = [r for r in nulls if r["seed"] == s and r["gradient"] == fam]
                if not ns:
                    continue
                c = np.array([as_float(r["count"]) for r in ns])
                f = np.array([as_float(r["frequency"]) for r in ns])
                ax.step(c, f / f.sum(), where="mid", color=_COLORS[fam], lw=1, label=f"{_LABELS[fam]} null")
                ax.axvline(as_float(ns[0]["observed"]), color=_COLORS[fam], ls="--", lw=1)
            ax.set_title(f"seed {s}", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].legend(fontsize=6)
        axes[0].set_ylabel("share of surrogates", fontsize=8)
        out.append(
            (
                save_png(fig, figs / "cycles_surrogates.png"),
                "Significant sign changes (|mean| > 2 SE on both sides) of the detrended layer-mean cosine: "
                "distribution over its AR(1) surrogates (steps) and the observed count (dashed), per seed; "
                "red MBE, blue Frobenius control (x: sign changes).",
            )
        )

    fig, ax = plt.subplots(figsize=(5, 4))
    cmap = plt.get_cmap("tab10")
    for j, s in enumerate(seeds):
        rs = [r for r in rows if r["seed"] == s and str(r.get("analysed")) != "False"]
        cos = np.array([as_float(r["cos_mbe"]) for r in rs])
        mbe = np.array([as_float(r["mbe_mean"]) for r in rs])
        ax.scatter(cos[:-1], -np.diff(mbe), s=6, color=cmap(j % 10), alpha=0.6, label=f"seed {s}")
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("cos(grad CE, grad MBE) at point t")
    ax.set_ylabel("-(MBE(t+1) - MBE(t)), held-out (nats)")
    ax.legend(fontsize=6, ncol=2)
    out.append(
        (
            save_png(fig, figs / "cycles_validity.png"),
            "Validity check: the layer-mean MBE cosine at one point against the fall of held-out layer-mean "
            "MBE until the next point, after the burn-in (upper right / lower left = the sign predicts the "
            "change).",
        )
    )
    return out
