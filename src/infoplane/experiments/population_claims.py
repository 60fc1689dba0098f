"""Claims, sentences and the out-of-family figure of experiment 9 (:mod:`infoplane.experiments.population`).

Claims are correlations across the pooled models (``kind: "correlation"``): ``treatment`` is a measure per
model, ``baseline`` the downstream score per model in the same order. Preconditions are declared from
things other than the correlation: enough models, scores that are not all at chance and that differ between
models by more than item-sampling noise, and MI above its null for the measures (each declared below).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from infoplane.experiments.population_config import PAIRS_TASK, PopulationConfig

__all__ = ["CHANCE", "build_claims", "score_spread", "describe_lines", "plot_with_out_of_family"]

# chance accuracy of the accuracy-type tasks (1 / number of choices)
CHANCE = {"infoplane_brown_cloze": 0.25, "infoplane_brown_pairs": 0.5}
_PAPER = "Conklin et al. 2026, sec. 5 (47 open models, token back-off)"


def _items(task: str, limit: int | None) -> int:
    from infoplane.downstream.evaluate import DEFAULT_SUITE

    lines = (DEFAULT_SUITE / f"{task}.jsonl").read_text("utf-8").count("\n")
    return min(lines, limit) if limit is not None else lines


def score_spread(rows: list[dict], tasks: list[str], limit: int | None, z: float) -> dict[str, Any]:
    """Is the score (mean accuracy over ``tasks``) a measurement worth correlating? Declared criterion:
    (a) the pool's mean score exceeds chance by >= ``z`` binomial standard errors of one model's score, and
    (b) the standard deviation of the score across models is >= one such standard error (models differ by
    more than item-sampling noise). SE of the mean of K accuracies: sqrt(sum_k p_k (1 - p_k) / n_k) / K
    at the pool-mean accuracies p_k (binomial variance)."""
    vals = np.array([np.mean([r[t] for t in tasks]) for r in rows], dtype=np.float64)
    p = {t: float(np.mean([r[t] for r in rows])) for t in tasks}
    se = math.sqrt(sum(p[t] * (1 - p[t]) / _items(t, limit) for t in tasks)) / len(tasks)
    chance = float(np.mean([CHANCE[t] for t in tasks]))
    sd = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
    above = (float(vals.mean()) - chance) / se if se > 0 else math.nan
    passed = bool(se > 0 and above >= z and sd >= se)
    return {"name": "score_spread", "passed": passed,
            "detail": f"mean score {vals.mean():.3f} vs chance {chance:.3f}: {above:.1f} SE (need >= {z:g}); "
                      f"SD across models {sd:.4f} vs binomial SE {se:.4f} (need SD >= SE)"}


def _mi_above_null(rows: list[dict], keys: tuple[str, ...], share: float) -> dict[str, Any]:
    ok = [all(r.get(k) is not None and float(r[k]) > 0 for k in keys) for r in rows]
    frac = float(np.mean(ok)) if ok else 0.0
    return {"name": "mi_above_null", "passed": bool(frac >= share),
            "detail": f"{sum(ok)} of {len(ok)} models have {' and '.join(keys)} > 0 (MI above its null; "
                      f"need a share >= {share:g})"}


def build_claims(cfg: PopulationConfig, rows: list[dict]) -> dict[str, dict[str, Any]]:
    """The five pre-registered correlation claims from the pooled models' rows (sorted by model name)."""
    rows = sorted((r for r in rows if r.get("pooled")), key=lambda r: r["model"])
    models = [r["model"] for r in rows]
    acc_tasks = sorted(t for t in cfg.tasks if t in CHANCE)
    n_ok = {"name": "n_models", "passed": len(rows) >= cfg.min_models,
            "detail": f"{len(rows)} pooled models (need >= {cfg.min_models})"}
    spread = score_spread(rows, acc_tasks, cfg.eval_limit, cfg.spread_z)
    plane_mi = _mi_above_null(rows, ("complexity_excess", "expressivity_excess"), cfg.mi_above_null_share)
    pref_mi = _mi_above_null(rows, ("pref_excess",), cfg.mi_above_null_share)
    pair_spread = score_spread(rows, [PAIRS_TASK], cfg.eval_limit, cfg.spread_z)
    agg = [float(r["aggregate"]) for r in rows]
    scale = (f"{len(rows)} GPTs, layers {cfg.depths} x d {cfg.widths} x steps {cfg.steps} x "
             f"{cfg.objectives} x seeds {cfg.seeds}; KJV {cfg.tokenizer}; probe n = 1 on {cfg.probe_seqs} "
             f"x {cfg.block_size} held-out tokens; score = mean accuracy of {acc_tasks}")
    common = {"kind": "correlation", "models": models, "replicates": "locally trained models",
              "unit": "r", "scale": scale, "baseline_label": "aggregate score",
              "clusters": [r["config"] for r in rows]}

    def claim(measure: str, label: str, note: str, pre: list[dict], **extra: Any) -> dict[str, Any]:
        return {**common, "treatment": [float(r[measure]) for r in rows], "baseline": agg,
                "treatment_label": label, "preconditions": pre, "note": note, **extra}

    out = {
        "pop_optimality": claim("optimality", "optimality I(Z;Y)/I(X;Z), layer mean, n = 1",
                                f"{_PAPER}: r = 0.52", [n_ok, spread, plane_mi]),
        "pop_complexity": claim("complexity", "complexity I(X;Z), layer mean, n = 1",
                                f"{_PAPER}: r = -0.38", [n_ok, spread, plane_mi]),
        "pop_expressivity": claim("expressivity", "expressivity I(Z;Y), layer mean, n = 1",
                                  f"{_PAPER}: r = 0.08 (no correlation found)", [n_ok, spread, plane_mi]),
        "pop_optimality_beyond_ce": claim(
            "optimality", "optimality, partial r given log parameters and held-out CE",
            "partial correlation given log parameter count and in-domain held-out CE: does optimality say "
            "anything the loss does not?", [n_ok, spread, plane_mi],
            covariates={"log_params": [float(r["log_params"]) for r in rows],
                        "ce": [float(r["ce"]) for r in rows]}),
    }
    out["pop_preference"] = {
        **common, "treatment": [float(r["pref_excess"]) for r in rows],
        "baseline": [float(r[PAIRS_TASK]) for r in rows],
        "treatment_label": "I(Z; pref) above its text-level null (real vs spliced), layer mean",
        "baseline_label": "minimal-pairs accuracy (word swaps; a different corruption)",
        "preconditions": [n_ok, pair_spread, pref_mi],
        "note": f"{_PAPER}: r = 0.76; here the preference set (splices) and the two-choice task (swaps) use "
                "different corruptions on disjoint Brown files, so the correlation is not circular"}
    return out


def _fmt(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "\u2013"
    return f"{v:.2f}" if math.isfinite(v) else "\u2013"


def describe_lines(summary: dict) -> list[str]:
    """Sentences: per measure r [CI], partial r, n; the out-of-family points; the wall times."""
    out = []
    for c in summary.get("correlations", []):
        out.append(f"{c.get('measure')} vs {c.get('score')}: Pearson r = {_fmt(c.get('pearson_r'))} "
                   f"[{_fmt(c.get('pearson_ci_low'))}, {_fmt(c.get('pearson_ci_high'))}], Spearman "
                   f"{_fmt(c.get('spearman_r'))}, partial r given {c.get('controls') or 'nothing'} "
                   f"{_fmt(c.get('partial_r'))}, n = {c.get('n_models')} models.")
    for name, v in summary.get("out_of_family", {}).items():
        out.append(f"Out of family (not pooled) {name}: optimality {_fmt(v.get('optimality'))}, complexity "
                   f"{_fmt(v.get('complexity'))}, aggregate score {_fmt(v.get('aggregate'))} (first "
                   f"{v.get('eval_limit')} items per task), preference excess {v.get('pref_excess')}; load "
                   f"{_fmt(v.get('load_seconds'))} s, probe {_fmt(v.get('probe_seconds'))} s, lm-eval "
                   f"{_fmt(v.get('eval_seconds'))} s.")
    for name, why in summary.get("out_of_family_skipped", {}).items():
        out.append(f"Out-of-family model {name} not measured: {why}.")
    if summary.get("pool_seconds") is not None:
        out.append(f"Training, probing and scoring the {summary.get('n_models')} pooled models took "
                   f"{summary['pool_seconds'] / 60:.1f} min.")
    return out


def plot_with_out_of_family(results: Path, figs: Path) -> Path | None:
    """Optimality, complexity and preference excess against the scores: pooled models coloured by objective,
    out-of-family models as labelled stars (``population_models.csv``)."""
    from infoplane.experiments.presentation import ARM_COLORS, as_float, pyplot, read_table, save_png

    rows = read_table(results, "population_models")
    if not rows:
        return None
    plt = pyplot()
    panels = (("optimality", "aggregate"), ("complexity", "aggregate"), ("pref_excess", PAIRS_TASK))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    colors = {"ce": ARM_COLORS["baseline"], "static": ARM_COLORS["static"], "gapt": ARM_COLORS["gapt"]}
    for ax, (x, y) in zip(axes, panels):
        for obj, color in colors.items():
            pts = [(as_float(r.get(x)), as_float(r.get(y))) for r in rows
                   if str(r.get("pooled")) == "True" and r.get("objective") == obj]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=color, label=obj)
        for r in rows:
            if str(r.get("pooled")) != "True":
                ax.scatter([as_float(r.get(x))], [as_float(r.get(y))], marker="*", s=140, color="k")
                ax.annotate(str(r["model"]), (as_float(r.get(x)), as_float(r.get(y))), fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    axes[0].legend(fontsize=7)
    return save_png(fig, figs / "population_out_of_family.png")
