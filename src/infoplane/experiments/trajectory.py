"""Experiment 8: the information plane during training -- saturation, then compression? (Conklin et al.
2026, arXiv:2604.07569, sec. 3: complexity and expressivity rise while the model fits, then complexity falls
toward the bound once next-token loss saturates.)

Independent CE-only runs of the compact GPT on KJV (``bpe:512``; in the full tier the first 30k training
tokens, repeated: on the whole split this model's held-out CE does not saturate within the budget, on the
prefix it reaches its minimum and then rises, so "saturation" here includes over-fitting), each with an
:class:`~infoplane.probe.monitor.InfoPlaneMonitor` on a fixed, seeded sample of the held-out documents
(the same positions at every step), constant learning rate with a final linear cooldown, monitor points
log-spaced early and dense after (:mod:`~infoplane.experiments.trajectory_config` declares the schedule, the
saturation rule and the slope). Complexity is null-corrected: ``I(X;Z) - null`` (the permutation null of
the same pass), token level (n = 1), mean over layers excluding the embedding.

Claims (pre-registered; :func:`run` records them under ``summary["claims"]``):

* ``traj_compression``: per seed, the least-squares slope of layer-mean null-corrected token complexity
  against log10(step) over the monitor points from the saturation step on; one-sample vs 0, "decrease".
  Preconditions: every run saturates by the declared rule, >= ``min_post_points`` points after it, probe
  positions >= ``min_probe_positions``, complexity above its null at every selected point.
* ``traj_compression_pooled``: the same slope from a second monitor of the same runs with rare-label pooling
  (``ProbeConfig.min_count = pooled_min_count``).
* ``traj_gapt_bound``: final null-corrected distance ``(I(X;Z) - null) - (I(Z;Y) - null)`` (token level,
  layer mean), GAPT (lambda, layers "rotate", windowed controller, as experiment 7) vs CE, paired by seed.
* ``traj_markov_beyond_k``: per Markov seed, the slope after saturation of the null-corrected complexity
  about context beyond the source's order k, ``(I(X_{k+1};Z) - null) - (I(X_k;Z) - null)``; "decrease".

Estimator spread: the final weights of every LM run are probed again with the other reference-point seeds
(``ProbeConfig.seed``: reference points, position sample and null permutation).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any

import numpy as np

from infoplane.experiments.common import ExperimentPaths, Progress, fresh_dir, lm_data, summarize
from infoplane.experiments.trajectory_claims import describe, summarize_claims
from infoplane.experiments.trajectory_config import (
    TrajectoryConfig,
    floor_saturation_step,
    monitor_steps,
    post_saturation_slope,
    saturation_step,
)
from infoplane.experiments.trajectory_figures import figures
from infoplane.experiments.trajectory_runs import lm_run, markov_run, markov_source
from infoplane.io import atomic_write_csv

NAME = "trajectory"

__all__ = [
    "NAME",
    "TrajectoryConfig",
    "run",
    "describe",
    "figures",
    "analyze_run",
    "monitor_steps",
    "saturation_step",
    "post_saturation_slope",
]


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _series(plane: list[dict], variant: str, n: int, key: str) -> dict[int, float]:
    """``{step: value}`` of the layer-mean rows of one run (``variant``, order ``n``)."""
    return {
        int(r["step"]): _f(r[key])
        for r in plane
        if r["variant"] == variant and r["layer"] == "mean" and int(r["n"]) == n
    }


def analyze_run(cfg: TrajectoryConfig, plane: list[dict], ce: list[dict], *, markov: bool = False) -> dict:
    """Per-run numbers: saturation step (declared rule on the held-out CE at the monitor points), the
    post-saturation slopes, MI-above-null checks and the final plane position (see module docstring)."""
    ce = sorted(ce, key=lambda r: r["step"])
    steps = [int(r["step"]) for r in ce]
    total = cfg.markov_steps if markov else cfg.steps
    until = total - max(1, int(round(cfg.cooldown * total)))  # constant-lr phase (train.schedule)
    tol, first = cfg.saturation_tol, cfg.saturation_min_step
    if markov:  # known floor: the exact entropy rate of the source
        floor = markov_source(cfg).entropy_rate()
        gap = cfg.markov_floor_gap
        sat = floor_saturation_step(steps, [r["val_ce"] for r in ce], floor, gap, first, until)
    else:
        sat = saturation_step(steps, [r["val_ce"] for r in ce], tol, first, until)
    k = cfg.markov_order
    variants = sorted({r["variant"] for r in plane})
    out: dict[str, Any] = {
        "saturation_step": sat,
        "saturated": sat is not None,
        "final_step": steps[-1] if steps else None,
        "final_val_ce": ce[-1]["val_ce"] if ce else math.nan,
        "val_ce_at_saturation": next((r["val_ce"] for r in ce if r["step"] == sat), math.nan),
    }
    # declared fallback for an unsaturated run: slope over the last min_post_points + 1 points (reported, but
    # the run fails the saturation precondition, so the claim is "not testable")
    start = sat if sat is not None else steps[max(len(steps) - cfg.min_post_points - 1, 0)]

    def slope_of(series: dict[int, float], name: str) -> None:
        st = sorted(series)
        res = post_saturation_slope(st, [series[s] for s in st], start)
        out[f"{name}_slope"] = res["slope"]
        out[f"{name}_decades"] = res["decades"]
        out["n_after"] = sum(1 for s in st if sat is not None and s > sat)
        sel = [series[s] for s in st if s >= start]
        out[f"{name}_min_selected"] = min(sel) if sel else math.nan

    if markov:
        c_k, c_k1 = (_series(plane, "main", n, "complexity_excess") for n in (k, k + 1))
        beyond = {s: c_k1[s] - c_k[s] for s in c_k if s in c_k1}
        slope_of(beyond, "beyond_k")
        slope_of(_series(plane, "main", k + 1, "complexity_excess"), "complexity_k1")
        slope_of(_series(plane, "main", 1, "complexity_excess"), "complexity")
        last = max(beyond) if beyond else None
        out["final_beyond_k"] = beyond.get(last, math.nan) if last else math.nan
        out["peak_beyond_k_step"] = max(beyond, key=lambda s: beyond[s]) if beyond else None
        for key in ("expressivity", "expressivity_excess", "complexity", "complexity_excess"):
            out[f"final_{key}_n1"] = _series(plane, "main", 1, key).get(last, math.nan)
            out[f"final_{key}_nk"] = _series(plane, "main", k, key).get(last, math.nan)
        return out
    for variant in variants:
        name = "complexity" if variant == "main" else f"complexity_{variant}"
        slope_of(_series(plane, variant, 1, "complexity_excess"), name)
    comp = _series(plane, "main", 1, "complexity_excess")
    expr = _series(plane, "main", 1, "expressivity_excess")
    last = max(comp) if comp else None
    out["peak_complexity_step"] = max(comp, key=lambda s: comp[s]) if comp else None
    out["final_complexity_excess"] = comp.get(last, math.nan) if last else math.nan
    out["final_expressivity_excess"] = expr.get(last, math.nan) if last else math.nan
    out["final_distance_excess"] = out["final_complexity_excess"] - out["final_expressivity_excess"]
    out["final_complexity"] = (
        _series(plane, "main", 1, "complexity").get(last, math.nan) if last else math.nan
    )
    out["final_expressivity"] = (
        _series(plane, "main", 1, "expressivity").get(last, math.nan) if last else math.nan
    )
    return out


def run(cfg: TrajectoryConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """Train and monitor every run; writes ``trajectory_plane.csv`` (monitor rows of every run, layer and n),
    ``trajectory_ce.csv`` (held-out CE at the monitor points), ``trajectory_ref.csv`` (final weights under
    each reference-point seed) and ``trajectory_runs.csv`` (per-run numbers); records the claims."""
    tok, splits, _ = lm_data(cfg.tokenizer, cfg.val_fraction, 0)
    if cfg.train_tokens is not None:  # a fixed prefix of the training split, seen for several epochs
        splits = dataclasses.replace(splits, train=splits.train[: cfg.train_tokens])
    plane: list[dict] = []
    ce: list[dict] = []
    ref: list[dict] = []
    runs: list[dict] = []
    arms = ("ce", "gapt") if cfg.gapt else ("ce",)
    for seed in cfg.seeds:
        for arm in arms:
            r = lm_run(cfg, arm, seed, splits, tok, fresh_dir(paths.runs / f"{arm}_s{seed}"))
            plane += r["plane"]
            ce += r["ce"]
            ref += r["ref"]
            row = {
                "arm": arm,
                "seed": seed,
                **analyze_run(cfg, r["plane"], r["ce"]),
                "n_switches": len(r["switches"]),
                "wall_time_s": r["wall_time_s"],
                "probe_seconds": r["probe_seconds"],
            }
            runs.append(row)
            log(
                f"{arm} seed {seed}: saturation step {row['saturation_step']}, CE {row['final_val_ce']:.3f}, "
                f"slope {row['complexity_slope']:+.4f}/decade ({row['n_after']} points after), "
                f"{row['wall_time_s']:.0f}s train + {row['probe_seconds']:.0f}s probe"
            )
    for seed in cfg.markov_seeds:
        r = markov_run(cfg, seed, fresh_dir(paths.runs / f"markov_s{seed}"))
        plane += r["plane"]
        ce += r["ce"]
        row = {
            "arm": "markov",
            "seed": seed,
            **analyze_run(cfg, r["plane"], r["ce"], markov=True),
            "wall_time_s": r["wall_time_s"],
            "probe_seconds": r["probe_seconds"],
        }
        runs.append(row)
        log(
            f"markov seed {seed}: saturation step {row['saturation_step']}, CE {row['final_val_ce']:.3f}, "
            f"beyond-k slope {row['beyond_k_slope']:+.4f}/decade"
        )
    atomic_write_csv(paths.table("plane"), plane)
    atomic_write_csv(paths.table("ce"), ce)
    atomic_write_csv(paths.table("ref"), ref or [{"arm": None}])
    atomic_write_csv(paths.table("runs"), runs)
    return _summarize(cfg, runs, ref, plane, paths)


def _known_answer(cfg: TrajectoryConfig) -> dict[str, float]:
    """The Markov source's exact quantities (nats, and in plane units: divided by log m)."""
    src = markov_source(cfg)
    k, log_m = cfg.markov_order, math.log(cfg.markov_probe.n_bins)
    out = {
        "entropy_rate": src.entropy_rate(),
        "marginal_entropy": src.marginal_entropy(),
        "next_token_information_k": src.next_token_information(k),
        "log_m": log_m,
    }
    for n in range(1, k + 1):
        out[f"next_token_information_{n}"] = src.next_token_information(n)
        out[f"block_entropy_{n}"] = src.block_entropy(n)
    out["expressivity_bound_n1"] = out["next_token_information_k"] / log_m  # data processing: I(Z;Y_1)
    return out


def _ref_spread(ref: list[dict]) -> dict[str, Any]:
    """Per LM run, the spread (SD over reference-point seeds) of the final layer-mean token complexity excess
    and distance excess."""
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in ref:
        if r.get("layer") == "mean" and r.get("n") is not None and int(r["n"]) == 1:
            by[(r["arm"], r["seed"])].append(r)
    out: dict[str, Any] = {}
    for arm in sorted({a for a, _ in by}):
        sd_c, sd_d = [], []
        for (a, _), rows in by.items():
            if a != arm or len(rows) < 2:
                continue
            c = [_f(r["complexity_excess"]) for r in rows]
            d = [_f(r["complexity_excess"]) - _f(r["expressivity_excess"]) for r in rows]
            sd_c.append(float(np.std(c, ddof=1)))
            sd_d.append(float(np.std(d, ddof=1)))
        out[arm] = {
            "complexity_excess_sd": summarize(sd_c),
            "distance_excess_sd": summarize(sd_d),
            "n_probe_seeds": max((len(v) for (a, _), v in by.items() if a == arm), default=0),
        }
    return out


def _summarize(
    cfg: TrajectoryConfig, runs: list[dict], ref: list[dict], plane: list[dict], paths: ExperimentPaths
) -> dict:
    n_samples = {r["arm"]: int(r["n_samples"]) for r in plane if r.get("n_samples") is not None}
    claims, stats, scale = summarize_claims(cfg, runs, n_samples)
    return {
        "title": "The information plane during training: saturation, then compression?",
        "stats": stats,
        "claims": claims,
        "scale": scale,
        "known_answer": _known_answer(cfg),
        "estimator_spread": _ref_spread(ref),
        "monitor_steps": cfg.lm_monitor_steps(),
        "markov_monitor_steps": cfg.markov_monitor_steps(),
        "tables": [paths.table(k).name for k in ("plane", "ce", "ref", "runs")],
    }
