"""Experiment 1: memorization-compression cycles under CE-only training, tested against noise (Yu 2025,
arXiv:2505.08727, abstract: "oscillating positive/negative gradient alignment between cross-entropy and MBE").

The compact GPT is trained with cross-entropy only on the KJV corpus (independent seeds). Every
``align_every`` steps, on each of K **fixed** held-out probe batches (drawn once with ``probe_seed``, the same
batches at every point and in every run), :func:`infoplane.train.alignment.probe_alignment` takes
``torch.autograd.grad`` of CE, of each block's patch MBE and of each block's mean squared activation (the
Frobenius control: a representation-size loss with no entropy content) and records ``cos(grad CE, grad MBE)``
(layer mean and per layer) and the control's cosine; the series keep the mean and standard error over the K
batches. Held-out CE and MBE (uncentered and centered, per layer) on separate held-out batches are recorded at
the same points. Positive cosine: a CE descent step also lowers MBE (compression).

Per run and family (:mod:`infoplane.experiments.cycles_analysis`): a spectral test against AR(1)
surrogates, significant sign changes (``|mean| > z SE`` on both sides) of the linearly detrended series
against its own AR(1) surrogates (excess = observed - surrogate mean), and the validity check (does the
cosine's sign predict the next change of held-out MBE?).

Claims: ``cycles`` (MBE excess > 0 across runs), ``cycles_vs_control`` (MBE excess > Frobenius excess,
paired), ``cycles_validity`` (validity correlation > 0). Their preconditions are design facts only (run
length, K, points per run), declared here before any result is seen. Figures: :mod:`cycles_figures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infoplane.experiments.common import (
    ExperimentPaths,
    Progress,
    fresh_dir,
    kjv_run_config,
    lm_data,
    summarize,
)
from infoplane.experiments.cycles_analysis import null_counts, series_tests, surrogate_seed, validity
from infoplane.experiments.cycles_probe import AlignmentProbe, probe_batches
from infoplane.io import atomic_write_csv

NAME = "cycles"

__all__ = [
    "NAME",
    "CyclesConfig",
    "AlignmentProbe",
    "probe_batches",
    "analyse_run",
    "run",
    "describe",
    "figures",
    "MIN_STEPS",
    "MIN_PROBE_BATCHES",
    "MIN_POINTS",
]

# declared design preconditions (not looked up from results): long runs, K fixed probe batches, series length
MIN_STEPS = 2000
MIN_PROBE_BATCHES = 4
MIN_POINTS = 50


@dataclass(frozen=True)
class CyclesConfig:
    """CE-only training with alignment probes (mod_gpt src/gradtracker.py protocol; scaled down).

    Probes: ``probe_batches`` (K) held-out batches of ``probe_batch_size`` sequences x ``block_size``
    tokens; held-out CE / MBE on ``mbe_batches`` batches of ``batch_size`` sequences. The Frobenius
    control is taken for the layer mean only unless ``control_per_layer`` (L - 1 more backwards per batch).
    Tests: ``z`` SE for a significant point, ``n_surrogates`` AR(1) surrogates, polynomial detrending of
    degree ``detrend_order``.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    tokenizer: str = "bpe:512"
    val_fraction: float = 0.05
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 32
    block_size: int = 64
    batch_size: int = 8
    steps: int = 600
    lr: float = 3e-3
    warmup_steps: int = 20
    patch_size: int = 8
    align_every: int = 10
    burn_in: int = 100
    probe_batches: int = 4
    probe_batch_size: int = 4
    probe_seed: int = 0
    mbe_batches: int = 2
    control_per_layer: bool = False
    z: float = 2.0
    n_surrogates: int = 999
    detrend_order: int = 1
    num_threads: int = 1

    @classmethod
    def quick(cls) -> CyclesConfig:
        return cls(seeds=(0, 1), steps=80, align_every=10, burn_in=0, n_surrogates=199, mbe_batches=1)

    @classmethod
    def demo(cls) -> CyclesConfig:
        return cls(steps=500, align_every=10)

    @classmethod
    def full(cls) -> CyclesConfig:
        return cls(seeds=tuple(range(8)), steps=2000, align_every=25, burn_in=200)


def analyse_run(cfg: CyclesConfig, seed: int, rows: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Tests of one run's series after the burn-in: ``(stat_rows, null_rows)``; one stat row per (family,
    layer) with the validity correlation against the matching held-out MBE (``validity_*_all``: the whole
    series, burn-in included, for reference); null rows (layer mean): surrogate histogram."""
    stats, nulls = [], []
    everything, rows = rows, [r for r in rows if r["step"] > cfg.burn_in]
    layers: list[Any] = ["mean", *range(cfg.n_layer)]
    for fam in ("mbe", "frob"):
        for layer in layers:
            key = f"cos_{fam}" if layer == "mean" else f"cos_{fam}_{layer}"
            if key not in rows[0]:  # the control per layer was not taken (control_per_layer=False)
                continue
            m = np.array([r[key] for r in rows], dtype=float)
            s = np.array([r[f"{key}_se"] for r in rows], dtype=float)
            sd = surrogate_seed(seed, fam, layer)
            kw = {"z": cfg.z, "n_surrogates": cfg.n_surrogates, "seed": sd, "order": cfg.detrend_order}
            row: dict[str, Any] = {"seed": seed, "gradient": fam, "layer": layer, "surrogate_seed": sd}
            if np.all(np.isfinite(m)) and np.all(np.isfinite(s)) and m.size >= 8:
                row.update(series_tests(m, s, **kw))
                mbe = np.array(
                    [r["mbe_mean" if layer == "mean" else f"mbe_{layer}"] for r in rows], dtype=float
                )
                v = validity(m, mbe)
                row.update({f"validity_{k}": v[k] for k in ("spearman", "pearson", "sign_agree")})
                c_all = np.array([r[key] for r in everything], dtype=float)
                b_all = np.array([r["mbe_mean" if layer == "mean" else f"mbe_{layer}"] for r in everything])
                ok = bool(np.all(np.isfinite(c_all)) and np.all(np.isfinite(b_all)))
                v_all = validity(c_all, b_all) if ok else {"spearman": np.nan, "pearson": np.nan}
                row.update(
                    {"validity_spearman_all": v_all["spearman"], "validity_pearson_all": v_all["pearson"]}
                )
                if layer == "mean":
                    counts, freq = np.unique(null_counts(m, s, **kw), return_counts=True)
                    nulls += [
                        {
                            "seed": seed,
                            "gradient": fam,
                            "count": int(c),
                            "frequency": int(f),
                            "observed": row["sign_changes"],
                        }
                        for c, f in zip(counts, freq)
                    ]
            else:  # a zero gradient (NaN cosine) or a too short series: no test, said so in the table
                row["note"] = f"not tested: {int((~np.isfinite(m)).sum())} non-finite points of {m.size}"
            stats.append(row)
    return stats, nulls


def run(cfg: CyclesConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """CE-only runs with probes; writes ``cycles_alignment.csv`` (per point), ``cycles_probe.csv`` (per probe
    batch), ``cycles_stats.csv`` (per run, family, layer) and ``cycles_null.csv``; records the claims."""
    from infoplane.data.lm_data import val_batches
    from infoplane.train.objective import ObjectiveConfig
    from infoplane.train.trainer import Trainer

    if (cfg.steps - cfg.burn_in) // cfg.align_every < 8:
        raise ValueError(
            f"(steps - burn_in) // align_every must give >= 8 points for the tests, got ({cfg.steps} - "
            f"{cfg.burn_in}) // {cfg.align_every}"
        )
    tok, splits, _ = lm_data(cfg.tokenizer, cfg.val_fraction, 0)
    half = len(splits.val) // 2  # held-out tokens: first half for the probes, second half for CE / MBE
    probes = probe_batches(
        splits.val[:half], cfg.probe_batches, cfg.probe_batch_size, cfg.block_size, cfg.probe_seed
    )
    heldout = val_batches(splits.val[half:], cfg.batch_size, cfg.block_size, cfg.mbe_batches)
    series, batch_rows, stat_rows, null_rows = [], [], [], []
    for seed in cfg.seeds:
        tc = kjv_run_config(cfg, seed=seed, out_dir=fresh_dir(paths.runs / f"seed{seed}"),
                            objective=ObjectiveConfig(kind="ce", patch_size=cfg.patch_size, log_mbe=False))
        probe = AlignmentProbe(probes, heldout, cfg.align_every, cfg.patch_size, cfg.control_per_layer)
        res = Trainer(tc, splits=splits, tokenizer=tok, callbacks=[probe]).run()
        series += [{"seed": seed, **r, "analysed": r["step"] > cfg.burn_in} for r in probe.rows]
        batch_rows += [{"seed": seed, **r} for r in probe.batch_rows]
        st, nl = analyse_run(cfg, seed, probe.rows)
        stat_rows += st
        null_rows += nl
        top = {r["gradient"]: r for r in st if r["layer"] == "mean"}
        log(
            f"seed {seed}: train {res.wall_time:.0f}s + probes {probe.seconds:.0f}s, held-out CE "
            f"{probe.rows[-1]['heldout_ce']:.3f}; layer-mean "
            f"excess sign changes MBE {top['mbe'].get('excess', float('nan')):+.2f}, Frobenius "
            f"{top['frob'].get('excess', float('nan')):+.2f}; spectral p MBE "
            f"{top['mbe'].get('spectral_p', float('nan')):.3f}; validity "
            f"{top['mbe'].get('validity_spearman', float('nan')):+.3f}"
        )
    atomic_write_csv(paths.table("alignment"), series)
    atomic_write_csv(paths.table("probe"), batch_rows)
    atomic_write_csv(paths.table("stats"), stat_rows)
    atomic_write_csv(paths.table("null"), null_rows or [{"seed": None}])
    return _summarize(cfg, stat_rows, sum(r["analysed"] for r in series) // max(len(cfg.seeds), 1), paths)


def _summarize(cfg: CyclesConfig, stat_rows: list[dict], n_points: int, paths: ExperimentPaths) -> dict:
    def col(fam: str, key: str, layer: Any = "mean") -> list[float]:
        by = {
            r["seed"]: float(r.get(key, float("nan")))
            for r in stat_rows
            if r["gradient"] == fam and r["layer"] == layer
        }
        return [by[s] for s in cfg.seeds]

    keys = (
        "excess",
        "sign_changes",
        "null_mean",
        "sign_p",
        "spectral_p",
        "raw_excess",
        "raw_sign_changes",
        "mean_cos",
        "frac_significant",
        "frac_positive",
        "phi",
        "validity_spearman",
        "validity_pearson",
        "validity_sign_agree",
        "validity_spearman_all",
    )
    stats = {fam: {k: summarize(col(fam, k)) for k in keys} for fam in ("mbe", "frob")}
    fams = ("mbe", "frob") if cfg.control_per_layer else ("mbe",)
    per_layer = {
        f"{fam}_{layer}": {k: summarize(col(fam, k, layer)) for k in ("excess", "validity_spearman")}
        for fam in fams
        for layer in range(cfg.n_layer)
    }
    scale = (
        f"GPT {cfg.n_layer} layers x d{cfg.d_model}, context {cfg.block_size}, {cfg.steps} CE-only steps x "
        f"{cfg.batch_size} seqs; cosines every {cfg.align_every} steps ({n_points} points/run after a "
        f"{cfg.burn_in}-step burn-in) on "
        f"K = {cfg.probe_batches} fixed held-out batches of {cfg.probe_batch_size}x{cfg.block_size} tokens; "
        f"{cfg.n_surrogates} AR(1) surrogates, |mean| > {cfg.z:g} SE, detrend degree {cfg.detrend_order}"
    )
    design = [
        {
            "name": "long_runs",
            "passed": cfg.steps >= MIN_STEPS,
            "detail": f"{cfg.steps} CE-only steps per run (declared minimum {MIN_STEPS})",
        },
        {
            "name": "probe_batches",
            "passed": cfg.probe_batches >= MIN_PROBE_BATCHES,
            "detail": f"K = {cfg.probe_batches} fixed probe batches per point (declared minimum "
            f"{MIN_PROBE_BATCHES})",
        },
        {
            "name": "points_per_run",
            "passed": n_points >= MIN_POINTS,
            "detail": f"{n_points} points per run (declared minimum {MIN_POINTS})",
        },
    ]
    common = {
        "seeds": list(cfg.seeds),
        "replicates": "independent training seeds",
        "scale": scale,
        "preconditions": design,
    }
    claims = {
        "cycles": {
            **common,
            "treatment": col("mbe", "excess"),
            "baseline": None,
            "null": 0.0,
            "unit": "sign changes",
            "treatment_label": "excess significant sign changes, MBE cosine",
            "baseline_label": "AR(1) surrogates of the same run (excess 0)",
            "note": "per run: significant sign changes (|mean| > 2 SE over K probe batches on both sides) "
            "of the detrended layer-mean cos(grad CE, grad MBE) minus the mean count of its "
            "AR(1) surrogates",
        },
        "cycles_vs_control": {
            **common,
            "treatment": col("mbe", "excess"),
            "baseline": col("frob", "excess"),
            "paired": True,
            "unit": "sign changes",
            "treatment_label": "excess sign changes, MBE cosine",
            "baseline_label": "excess sign changes, Frobenius-control cosine",
            "note": "each family against its own AR(1) null; paired by training run",
        },
        "cycles_validity": {
            **common,
            "treatment": col("mbe", "validity_spearman"),
            "baseline": None,
            "null": 0.0,
            "unit": "Spearman rho",
            "preconditions": design[1:],
            "treatment_label": "rank corr(cos_t, -(MBE_{t+1} - MBE_t))",
            "baseline_label": "no association (0)",
            "note": "layer-mean MBE cosine vs the next change of held-out layer-mean MBE "
            "(uncentered); positive = the cosine's sign predicts compression",
        },
    }
    return {
        "title": "Memorization-compression cycles, tested against red noise",
        "stats": stats,
        "per_layer": per_layer,
        "claims": claims,
        "scale": scale,
        "n_points": n_points,
        "spectral_p": {fam: col(fam, "spectral_p") for fam in ("mbe", "frob")},
        "tables": [paths.table(t).name for t in ("alignment", "probe", "stats", "null")],
    }


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers (excess sign changes, spectral p per run, validity)."""
    from infoplane.experiments.presentation import fmt, stat_pm

    st = summary.get("stats", {})
    if not st or "excess" not in st.get("mbe", {}):
        return []

    def m(fam: str, key: str) -> str:
        return stat_pm(st, fam, key)

    ps = summary.get("spectral_p", {})
    return [
        "Significant sign changes of the detrended layer-mean cosine per run: MBE "
        f"{m('mbe', 'sign_changes')} "
        f"(AR(1) surrogates {m('mbe', 'null_mean')}, excess {m('mbe', 'excess')}); Frobenius control "
        f"{m('frob', 'sign_changes')} (surrogates {m('frob', 'null_mean')}, excess {m('frob', 'excess')}); "
        f"mean \u00b1 SE over seeds.",
        "Spectral test against AR(1) red noise, p per run: MBE "
        f"{', '.join(fmt(p, 3) for p in ps.get('mbe', []))}; control "
        f"{', '.join(fmt(p, 3) for p in ps.get('frob', []))}.",
        f"Mean cosine: MBE {m('mbe', 'mean_cos')}, control {m('frob', 'mean_cos')}; share of points more "
        f"than 2 SE from zero: MBE {m('mbe', 'frac_significant')}, control "
        f"{m('frob', 'frac_significant')}; lag-1 autocorrelation of the detrended series: MBE "
        f"{m('mbe', 'phi')}, control {m('frob', 'phi')}.",
        f"Validity: rank correlation of the MBE cosine with the next fall of held-out MBE "
        f"{m('mbe', 'validity_spearman')} (Pearson {m('mbe', 'validity_pearson')}; share of pairs with "
        f"matching signs {m('mbe', 'validity_sign_agree')}); over the whole run, burn-in included: "
        f"{m('mbe', 'validity_spearman_all')}.",
    ]


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Cosine series with +-2 SE bands, surrogate sign-change distributions, validity scatter."""
    from infoplane.experiments.cycles_figures import draw

    return draw(results, figs)
