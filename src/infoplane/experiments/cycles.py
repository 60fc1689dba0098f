"""Experiment 1: emergent memorization-compression cycles under CE-only training (Yu 2025, abstract).

The compact GPT is trained with cross-entropy only on the KJV corpus. Every ``align_every`` steps, on one
**fixed** held-out batch (same batch every time, so batch sampling noise does not enter the series), we take
``torch.autograd.grad`` of CE and of each block's patch MBE (and, as the control, of each block's mean squared
activation = Frobenius norm^2 / (B T), a representation-size penalty with no entropy content) and record

* ``cos(grad CE, grad MBE_l)`` per layer and for the layer-mean MBE (global),
* the same for the Frobenius control,

via :func:`infoplane.train.alignment.gradient_alignment`. Positive cosine: a CE descent step also lowers MBE
(compression); negative: CE descent raises MBE (memorization / expansion). The paper reports oscillating
sign. :func:`infoplane.train.alignment.detect_cycles` gives sign changes, zero-crossing and FFT periods of the
raw and of the smoothed (centred moving average of ``smooth`` points) series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from infoplane.experiments.common import ExperimentPaths, Progress, fresh_dir, lm_data, summarize
from infoplane.io import atomic_write_csv

NAME = "cycles"

__all__ = ["NAME", "CyclesConfig", "run", "smooth_series", "AlignmentProbe"]


@dataclass(frozen=True)
class CyclesConfig:
    """CE-only training and alignment logging (mod_gpt src/gradtracker.py; scaled down)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    tokenizer: str = "bpe:512"
    val_fraction: float = 0.05
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 64
    block_size: int = 64
    batch_size: int = 16
    steps: int = 400
    lr: float = 3e-3
    warmup_steps: int = 20
    patch_size: int = 8
    align_every: int = 5
    align_batch: int = 8
    smooth: int = 5

    @classmethod
    def quick(cls) -> CyclesConfig:
        return cls(seeds=(0, 1), steps=120, align_every=5, smooth=3)

    @classmethod
    def demo(cls) -> CyclesConfig:
        return cls()

    @classmethod
    def full(cls) -> CyclesConfig:
        return cls(seeds=tuple(range(8)))


def smooth_series(y: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average over ``k`` points (edges use the available points); k <= 1 returns y."""
    y = np.asarray(y, dtype=float)
    if k <= 1 or y.size == 0:
        return y
    out = np.empty_like(y)
    h = k // 2
    for i in range(y.size):
        seg = y[max(0, i - h): i + h + 1]
        seg = seg[np.isfinite(seg)]
        out[i] = seg.mean() if seg.size else np.nan
    return out


class AlignmentProbe:
    """Trainer callback: every ``every`` steps, gradient cosines on a fixed batch ``(x [B,T], y [B,T])``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, every: int, patch_size: int) -> None:
        self.x, self.y, self.every, self.patch = x, y, every, patch_size
        self.rows: list[dict] = []

    def __call__(self, trainer, rec: dict) -> None:
        step = int(rec["step"])
        if step % self.every and step != 1:
            return
        from infoplane.estimators import patch_matrix_entropy
        from infoplane.train.alignment import gradient_alignment

        model = trainer.model
        was_training = model.training
        model.eval()
        out = model(self.x, self.y)
        hidden = out.hidden_states
        mbe = {i: patch_matrix_entropy(h, patch_size=self.patch, remainder="drop_start")
               for i, h in enumerate(hidden)}
        frob = {i: h.pow(2).mean() for i, h in enumerate(hidden)}  # control: ||H_l||_F^2 / (B T)
        a = gradient_alignment(model, out.loss, mbe, per_layer=True, retain_graph=True)
        c = gradient_alignment(model, out.loss, frob, per_layer=True, retain_graph=False)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        row = {"step": step, "ce_fixed": out.loss.item(), "cos_mbe": a["cos"], "cos_frob": c["cos"],
               "mbe_fixed_mean": float(torch.stack(list(mbe.values())).mean())}
        for i in range(len(hidden)):
            row[f"cos_mbe_{i}"] = a["cos_layer"][i]
            row[f"cos_frob_{i}"] = c["cos_layer"][i]
        self.rows.append(row)
        rec["align_fixed"] = {"cos_mbe": a["cos"], "cos_frob": c["cos"]}


def _cycle_stats(steps: np.ndarray, series: np.ndarray, smooth: int) -> dict[str, float]:
    from infoplane.train.alignment import detect_cycles

    raw = detect_cycles(series, steps)
    sm = detect_cycles(smooth_series(series, smooth), steps)
    return {"sign_changes_raw": raw["n_sign_changes"], "sign_changes": sm["n_sign_changes"],
            "period": sm["period"], "period_fft": raw["period_fft"], "frac_positive": raw["frac_positive"],
            "mean_cos": float(np.nanmean(series)), "std_cos": float(np.nanstd(series))}


def run(cfg: CyclesConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """CE-only runs with alignment logging; writes ``cycles_alignment.csv`` and ``cycles_stats.csv``."""
    from infoplane.train.config import TrainConfig
    from infoplane.train.model import GPTConfig
    from infoplane.train.objective import ObjectiveConfig
    from infoplane.train.trainer import Trainer

    tok, splits, _ = lm_data(cfg.tokenizer, cfg.val_fraction, 0)
    from infoplane.data.lm_data import val_batches

    xb, yb = val_batches(splits.val, cfg.align_batch, cfg.block_size, 1)[0]
    series_rows, stat_rows = [], []
    for seed in cfg.seeds:
        tc = TrainConfig(corpus="kjv", tokenizer=cfg.tokenizer, val_fraction=cfg.val_fraction,
                         model=GPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model,
                                         block_size=cfg.block_size),
                         objective=ObjectiveConfig(kind="ce", patch_size=cfg.patch_size, log_mbe=False),
                         steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                         warmup_steps=cfg.warmup_steps, eval_every=0, eval_batches=4,
                         checkpoint_steps="final",
                         seed=seed, out_dir=str(fresh_dir(paths.runs / f"seed{seed}")), progress=False)
        probe = AlignmentProbe(xb, yb, cfg.align_every, cfg.patch_size)
        res = Trainer(tc, splits=splits, tokenizer=tok, callbacks=[probe]).run()
        for r in probe.rows:
            series_rows.append({"seed": seed, **r})
        steps = np.array([r["step"] for r in probe.rows], dtype=float)
        for kind in ("mbe", "frob"):
            for layer in ["mean", *range(cfg.n_layer)]:
                key = f"cos_{kind}" if layer == "mean" else f"cos_{kind}_{layer}"
                y = np.array([r[key] for r in probe.rows], dtype=float)
                stat_rows.append({"seed": seed, "gradient": kind, "layer": layer,
                                  **_cycle_stats(steps, y, cfg.smooth)})
        st = {(r["gradient"], r["layer"]): r for r in stat_rows if r["seed"] == seed}
        log(f"seed {seed}: val CE {res.final_val_ce:.3f}; sign changes (smoothed, layer mean) MBE "
            f"{st[('mbe', 'mean')]['sign_changes']}, Frobenius {st[('frob', 'mean')]['sign_changes']}")
    atomic_write_csv(paths.table("alignment"), series_rows)
    atomic_write_csv(paths.table("stats"), stat_rows)

    def col(kind: str, key: str, layer="mean") -> list[float]:
        return [r[key] for r in stat_rows if r["gradient"] == kind and r["layer"] == layer]

    stats = {kind: {k: summarize(col(kind, k)) for k in ("sign_changes", "sign_changes_raw", "period",
                                                            "frac_positive", "mean_cos")}
             for kind in ("mbe", "frob")}
    per_layer = {f"{kind}_{layer}": summarize(col(kind, "sign_changes", layer))
                 for kind in ("mbe", "frob") for layer in range(cfg.n_layer)}
    n_points = len(series_rows) // max(len(cfg.seeds), 1)
    scale = (f"GPT {cfg.n_layer} layers x d{cfg.d_model}, {cfg.steps} CE-only steps, cosine every "
             f"{cfg.align_every} steps on a fixed batch of {cfg.align_batch}x{cfg.block_size} tokens "
             f"({n_points} points/run, smoothing {cfg.smooth}), {len(cfg.seeds)} seeds")
    claims = {"cycles": {"treatment": col("mbe", "sign_changes"), "baseline": col("frob", "sign_changes"),
                         "paired": True, "seeds": list(cfg.seeds),
                         "replicates": "independent training seeds", "unit": "sign changes", "scale": scale,
                         "treatment_label": "cos(grad CE, grad MBE)",
                         "baseline_label": "cos(grad CE, grad Frobenius)"}}
    return {"title": "Emergent memorization-compression cycles", "stats": stats, "per_layer": per_layer,
            "claims": claims, "scale": scale, "n_points": n_points,
            "tables": [paths.table("alignment").name, paths.table("stats").name]}


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers (sign changes, mean cosine, period), for the report."""
    from infoplane.experiments.presentation import stat_pm

    st = summary.get("stats", {})
    if not st:
        return []

    def m(arm: str, key: str) -> str:
        return stat_pm(st, arm, key)

    return [f"Smoothed layer-mean cosine sign changes per run: MBE {m('mbe', 'sign_changes')}, "
            f"Frobenius control {m('frob', 'sign_changes')} (mean \u00b1 SE over seeds); "
            f"raw series: MBE {m('mbe', 'sign_changes_raw')}, "
            f"control {m('frob', 'sign_changes_raw')}.",
            f"Mean cosine: MBE {m('mbe', 'mean_cos')}, control {m('frob', 'mean_cos')}; fraction of "
            f"positive points: MBE {m('mbe', 'frac_positive')}, control {m('frob', 'frac_positive')}; "
            f"zero-crossing period (steps, smoothed): MBE {m('mbe', 'period')}."]


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Alignment curves per seed (layer mean) and per block (first seed) from ``cycles_alignment.csv``."""
    from infoplane.experiments.presentation import as_float, pyplot, read_table, save_png

    rows = read_table(results, "cycles_alignment")
    if not rows:
        return []
    plt = pyplot()
    seeds = sorted({r["seed"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    for ax, kind, label in ((axes[0], "mbe", "MBE"), (axes[1], "frob", "Frobenius control")):
        for s in seeds:
            rs = [r for r in rows if r["seed"] == s]
            ax.plot([r["step"] for r in rs], [as_float(r[f"cos_{kind}"]) for r in rs], lw=1,
                    label=f"seed {s}")
        ax.axhline(0, color="k", lw=0.7)
        ax.set_xlabel("step")
        ax.set_title(f"cos(grad CE, grad {label}), layer mean", fontsize=9)
    axes[0].set_ylabel("cosine")
    axes[0].legend(fontsize=7)
    out = [(save_png(fig, figs / "cycles_alignment.png"),
            "Gradient alignment on a fixed held-out batch during CE-only training (per seed); left: MBE, "
            "right: Frobenius-norm control.")]
    n_layer = len([k for k in rows[0] if k.startswith("cos_mbe_")])
    fig, axes = plt.subplots(1, n_layer, figsize=(2.8 * n_layer, 2.8), sharey=True, squeeze=False)
    rs = [r for r in rows if r["seed"] == seeds[0]]
    for ax, layer in zip(axes[0], range(n_layer)):
        ax.plot([r["step"] for r in rs], [as_float(r[f"cos_mbe_{layer}"]) for r in rs], lw=1, label="MBE")
        ax.plot([r["step"] for r in rs], [as_float(r[f"cos_frob_{layer}"]) for r in rs], lw=1,
                label="Frobenius")
        ax.axhline(0, color="k", lw=0.7)
        ax.set_title(f"block {layer}", fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    out.append((save_png(fig, figs / "cycles_layers.png"), f"Per-block cosines, seed {seeds[0]}."))
    return out
