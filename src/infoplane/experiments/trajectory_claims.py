"""Claims and report sentences of experiment 8 (:mod:`infoplane.experiments.trajectory`) from its per-run
numbers (:func:`~infoplane.experiments.trajectory.analyze_run`). Preconditions are decided by the declared
rules (saturation, points after it, probe positions, MI above the null), never by the effect."""

from __future__ import annotations

import math
from typing import Any

from infoplane.experiments.common import summarize
from infoplane.experiments.trajectory_config import TrajectoryConfig

__all__ = ["summarize_claims", "describe"]


def _fmt(x: Any) -> str:
    return "none" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def _pre_saturation(rows: list[dict], cfg: TrajectoryConfig, what: str) -> list[dict[str, Any]]:
    sats = [r["saturation_step"] for r in rows]
    n_after = [int(r["n_after"]) for r in rows]
    return [
        {
            "name": "saturated",
            "passed": bool(rows) and all(s is not None for s in sats),
            "detail": f"saturation step per {what} run: {', '.join(_fmt(s) for s in sats)} "
            + (f"(declared rule: held-out CE within {100 * cfg.markov_floor_gap:g}% of the source's exact "
               "entropy rate from s on" if what == "Markov" else
               f"(declared rule: held-out CE improving < {100 * cfg.saturation_tol:g}% since the monitor "
               "point nearest t/2 at every t from s on")
            + f" to the cooldown, s >= {cfg.saturation_min_step}; every run must saturate)",
        },
        {
            "name": "points_after_saturation",
            "passed": bool(rows) and min(n_after) >= cfg.min_post_points,
            "detail": f"monitor points after the saturation step: min {min(n_after, default=0)} "
            f"(>= {cfg.min_post_points} needed)",
        },
    ]


def _pre_positions(n: int, cfg: TrajectoryConfig) -> dict[str, Any]:
    return {
        "name": "probe_positions",
        "passed": n >= cfg.min_probe_positions,
        "detail": f"{n} probe positions per monitor point (>= {cfg.min_probe_positions} needed)",
    }


def _pre_above_null(rows: list[dict], key: str, what: str) -> dict[str, Any]:
    vals = [float(r[key]) for r in rows]
    return {
        "name": "mi_above_null",
        "passed": bool(vals) and all(math.isfinite(v) and v > 0 for v in vals),
        "detail": f"smallest {what} above its null over the selected points, per run: "
        + ", ".join(f"{v:.4f}" for v in vals),
    }


def summarize_claims(
    cfg: TrajectoryConfig, runs: list[dict], n_samples: dict[str, int]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(claims, stats, scale)`` of the experiment's summary."""
    ce = [r for r in runs if r["arm"] == "ce"]
    gapt = {r["seed"]: r for r in runs if r["arm"] == "gapt"}
    markov = [r for r in runs if r["arm"] == "markov"]
    scale = (
        f"GPT {cfg.n_layer} layers x d{cfg.d_model}, context {cfg.block_size}, {cfg.steps} steps x "
        f"{cfg.batch_size} seqs, constant lr {cfg.lr:g} then linear cooldown over the last "
        f"{100 * cfg.cooldown:g}% to {cfg.min_lr_ratio:g} x lr, KJV {cfg.tokenizer}"
        + (f" (first {cfg.train_tokens:,} training tokens, "
           f"{cfg.steps * cfg.batch_size * cfg.block_size / cfg.train_tokens:.0f} epochs)"
           if cfg.train_tokens else "")
        + "; "
        f"{len(cfg.lm_monitor_steps())} monitor points ({cfg.n_log} log-spaced to step {cfg.dense_from}, "
        f"then every {cfg.dense_every}); {n_samples.get('ce', 0)} held-out positions, m = "
        f"{cfg.probe.n_bins}, orders {list(cfg.probe.orders)}"
    )
    claims: dict[str, Any] = {}
    common = {
        "baseline": None,
        "null": 0.0,
        "paired": False,
        "unit": "normalised MI above null per decade",
        "replicates": "independent training seeds",
        "baseline_label": "0 (no change)",
    }
    if ce:
        pre = _pre_saturation(ce, cfg, "CE") + [_pre_positions(n_samples.get("ce", 0), cfg)]
        seeds = [r["seed"] for r in ce]
        note = (
            "least-squares slope of layer-mean (embedding excluded) token complexity I(X;Z) - null vs "
            "log10(step), monitor points from the saturation step on (an unsaturated run's value is the "
            f"slope over its last {cfg.min_post_points + 1} points, reported but not testable)"
        )
        claims["traj_compression"] = {
            **common,
            "treatment": [r["complexity_slope"] for r in ce],
            "seeds": seeds,
            "preconditions": pre + [_pre_above_null(ce, "complexity_min_selected", "token complexity")],
            "scale": scale,
            "treatment_label": "CE runs, main probe",
            "note": note,
        }
        if all("complexity_pooled_slope" in r for r in ce):
            claims["traj_compression_pooled"] = {
                **common,
                "treatment": [r["complexity_pooled_slope"] for r in ce],
                "seeds": seeds,
                "preconditions": pre
                + [_pre_above_null(ce, "complexity_pooled_min_selected", "pooled token complexity")],
                "scale": f"{scale}; labels seen < {cfg.pooled_min_count} times pooled",
                "treatment_label": f"CE runs, rare labels pooled (min_count {cfg.pooled_min_count})",
                "note": note + "; same runs, second monitor with rare-label pooling",
            }
    if ce and gapt:
        seeds = [r["seed"] for r in ce if r["seed"] in gapt]
        b = {r["seed"]: r for r in ce}
        low = [min(gapt[s]["final_complexity_excess"], b[s]["final_complexity_excess"]) for s in seeds]
        claims["traj_gapt_bound"] = {
            "treatment": [gapt[s]["final_distance_excess"] for s in seeds],
            "baseline": [b[s]["final_distance_excess"] for s in seeds],
            "paired": True,
            "seeds": seeds,
            "preconditions": [
                {
                    "name": "mi_above_null",
                    "passed": bool(low) and all(v > 0 for v in low),
                    "detail": "final token complexity above its null (min of the two arms) per seed: "
                    + ", ".join(f"{v:.4f}" for v in low),
                },
                _pre_positions(min(n_samples.get("ce", 0), n_samples.get("gapt", 0)), cfg),
            ],
            "unit": "normalised MI above null",
            "replicates": "independent training seeds (paired)",
            "scale": f"{scale}; GAPT lambda {cfg.gapt_lambda:g}, layers rotate, windowed controller",
            "treatment_label": "GAPT",
            "baseline_label": "CE only",
            "note": "final monitor point; distance (I(X;Z) - null) - (I(Z;Y) - null), token level, "
            "layer mean",
        }
    if markov:
        k = cfg.markov_order
        claims["traj_markov_beyond_k"] = {
            **common,
            "treatment": [r["beyond_k_slope"] for r in markov],
            "seeds": [r["seed"] for r in markov],
            "preconditions": _pre_saturation(markov, cfg, "Markov")
            + [
                _pre_positions(n_samples.get("markov", 0), cfg),
                _pre_above_null(markov, "complexity_k1_min_selected", f"complexity about X_{k + 1}"),
            ],
            "scale": (
                f"order-{k} Markov source, V = {cfg.markov_vocab}, concentration "
                f"{cfg.markov_concentration:g}; GPT {cfg.markov_n_layer} layers x d{cfg.markov_d_model}, "
                f"{cfg.markov_steps} steps, {n_samples.get('markov', 0)} held-out positions"
            ),
            "treatment_label": "Markov runs",
            "note": f"slope after saturation of (I(X_{k + 1};Z) - null) - (I(X_{k};Z) - null), layer mean: "
            "complexity about context the source does not use",
        }
    keys = (
        "saturation_step",
        "val_ce_at_saturation",
        "final_val_ce",
        "complexity_slope",
        "complexity_pooled_slope",
        "beyond_k_slope",
        "final_complexity_excess",
        "final_expressivity_excess",
        "final_distance_excess",
        "final_beyond_k",
        "final_expressivity_n1",
        "final_expressivity_excess_n1",
        "final_complexity_excess_nk",
        "n_after",
        "wall_time_s",
        "probe_seconds",
    )
    stats = {
        arm: {
            k: summarize(float(r[k]) if r.get(k) is not None else math.nan for r in runs if r["arm"] == arm)
            for k in keys
            if any(k in r for r in runs if r["arm"] == arm)
        }
        for arm in sorted({r["arm"] for r in runs})
    }
    return claims, stats, scale


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers."""
    from infoplane.experiments.presentation import fmt, stat_pm

    st = summary.get("stats", {})
    out = []
    if "ce" in st:
        out.append(
            f"CE-only runs: saturation step {stat_pm(st, 'ce', 'saturation_step')} (held-out CE there "
            f"{stat_pm(st, 'ce', 'val_ce_at_saturation')}), final held-out CE "
            f"{stat_pm(st, 'ce', 'final_val_ce')} nats/token; slope of null-corrected token complexity "
            f"after saturation {stat_pm(st, 'ce', 'complexity_slope')} per decade of steps "
            f"(rare labels pooled: {stat_pm(st, 'ce', 'complexity_pooled_slope')}), "
            f"{stat_pm(st, 'ce', 'n_after')} monitor points after saturation."
        )
    spread = summary.get("estimator_spread", {})
    for arm, sp in spread.items():
        out.append(
            f"{arm}: SD of the final null-corrected token complexity over "
            f"{sp.get('n_probe_seeds')} reference-point seeds "
            f"{fmt(sp['complexity_excess_sd'].get('mean'))} (mean over runs); of the distance "
            f"{fmt(sp['distance_excess_sd'].get('mean'))}."
        )
    if "gapt" in st:
        out.append(
            f"Final null-corrected distance to the bound: GAPT {stat_pm(st, 'gapt', 'final_distance_excess')}"
            f", CE only {stat_pm(st, 'ce', 'final_distance_excess')}."
        )
    ka = summary.get("known_answer", {})
    if "markov" in st and ka:
        out.append(
            f"Markov source: entropy rate {fmt(ka.get('entropy_rate'))} nats, trained models' final "
            f"held-out CE {stat_pm(st, 'markov', 'final_val_ce')}; expressivity I(Z;Y_1) "
            f"{stat_pm(st, 'markov', 'final_expressivity_n1')} against the exact ceiling I(Y_1;X_k)/log m "
            f"= {fmt(ka.get('expressivity_bound_n1'))}; complexity about context beyond k: final "
            f"{stat_pm(st, 'markov', 'final_beyond_k')}, slope after saturation "
            f"{stat_pm(st, 'markov', 'beyond_k_slope')} per decade."
        )
    return out
