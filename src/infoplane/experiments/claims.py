"""The papers' claims, their numbers, and the rule that turns measured per-seed values into a verdict.

Verdicts are computed from results files, never typed in. The rule (:func:`verdict`):

* effect ``d`` = mean(treatment) - mean(baseline) (paired per seed when both arms share seeds, then
  d = mean of per-seed differences), or mean(values) - null for a one-sample claim;
* its standard error ``se`` = std(per-seed differences)/sqrt(n) (paired) or sqrt(se_t^2 + se_b^2) (unpaired);
* signed effect ``s = d`` for a claimed increase and ``-d`` for a claimed decrease;
* **holds** if ``s > z * se`` (claimed direction, beyond ``z`` = 2 standard errors),
  **does not hold** if ``s < -z * se`` (opposite direction beyond noise),
  **inconclusive** otherwise, or when fewer than 2 seeds per arm make the spread unknown, or values are
  missing / non-finite.

The verdict judges the *direction* beyond seed noise; the magnitude is reported beside it as the relative
change ``d / |mean(baseline)|`` against the paper's number (our runs are orders of magnitude smaller).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["ClaimSpec", "CLAIMS", "RULE_TEXT", "verdict", "evaluate_claims", "VERDICTS"]

VERDICTS = ("holds", "does not hold", "inconclusive")

RULE_TEXT = (
    "Effect d = mean(treatment) - mean(baseline), paired per seed when the arms share seeds "
    "(else Welch-style SE = sqrt(se_t^2 + se_b^2)); for one-sample claims d = mean(values) - null. "
    "Signed effect s = d for a claimed increase, -d for a claimed decrease. Verdict: 'holds' if s > 2 SE, "
    "'does not hold' if s < -2 SE, otherwise 'inconclusive' (also when fewer than 2 seeds per arm or "
    "non-finite values). The verdict judges the direction beyond seed noise; the relative change "
    "d/|baseline| is shown next to the paper's number."
)


@dataclass(frozen=True)
class ClaimSpec:
    """One checkable claim.

    Attributes:
        id: key under ``summary["claims"]`` of the experiment's results.
        experiment: experiment name (registry key) whose summary holds the measurements.
        paper: short citation. statement: the claim in words. metric: what we measure.
        direction: "increase" or "decrease" (of the metric, treatment vs baseline / vs null).
        paper_value: the paper's number as text. paper_relative: the same as a relative change (or None).
    """

    id: str
    experiment: str
    paper: str
    statement: str
    metric: str
    direction: str
    paper_value: str
    paper_relative: float | None = None


_YU = "Yu 2025 (arXiv:2505.08727)"
_CONKLIN = "Conklin et al. 2026 (arXiv:2604.07569)"

CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("cycles", "cycles", _YU,
              "Under CE-only training, cos(grad CE, grad MBE) oscillates between positive and negative "
              "(memorization-compression cycles), more than a Frobenius-norm control gradient.",
              "sign changes of the smoothed layer-mean cosine per run (MBE vs Frobenius control)",
              "increase", "oscillation (no number)"),
    ClaimSpec("gapt_mbe", "lm_gapt", _YU, "GAPT lowers layer-mean MBE vs CE-only baseline.",
              "held-out layer-mean MBE (nats), GAPT vs baseline", "decrease", "-50%", -0.50),
    ClaimSpec("gapt_ce", "lm_gapt", _YU, "GAPT lowers held-out cross-entropy vs CE-only baseline.",
              "held-out CE (nats/token), GAPT vs baseline", "decrease", "-4.8%", -0.048),
    ClaimSpec("arith_ood", "arithmetic", _YU,
              "GAPT improves OOD generalisation on multiplication (longer operands).",
              "OOD masked answer-token CE (nats), GAPT vs baseline "
              "(paper's '+35%' read as a 35% lower OOD CE)",
              "decrease", "+35% OOD (CE -35%)", -0.35),
    ClaimSpec("arith_ood_exact", "arithmetic", _YU,
              "GAPT improves OOD exact-match accuracy on multiplication.",
              "OOD exact match (fraction), GAPT vs baseline", "increase", "(not reported)"),
    ClaimSpec("forget_separation", "forgetting", _YU,
              "GAPT separates the conflicting tasks' representations better (less interference).",
              "separation ||mu_pos-mu_neg|| / sqrt(mean trace var) of hidden units, GAPT vs baseline",
              "increase", "+97%", 0.97),
    ClaimSpec("forget_old_loss", "forgetting", _YU,
              "GAPT reduces interference: lower loss on the old (negative) task after fine-tuning.",
              "L1 loss on the old task after fine-tuning, GAPT vs baseline", "decrease", "(qualitative)"),
    ClaimSpec("plane_compression", "plane_over_training", _CONKLIN,
              "Training shows fitting then compression: complexity I(X;Z) rises, then falls.",
              "per run: min(rise, fall) of layer-mean token complexity (rise = peak-first, fall = peak-last)",
              "increase", "expansion then compression (no number)"),
    ClaimSpec("plane_gapt_bound", "plane_over_training", "our question (GAPT x information plane)",
              "GAPT ends closer to the bound I(X;Z) = I(Y;Z) than the baseline.",
              "final distance I(X;Z)-I(Y;Z) (token level, layer mean), GAPT vs baseline", "decrease",
              "(no paper number)"),
    ClaimSpec("pretrained_optimality", "pretrained", _CONKLIN,
              "In a trained LM, optimality I(Y;Z)/I(X;Z) rises with n-gram order (back-off levels).",
              "per layer: optimality(n=2) - optimality(n=1), SmolLM2-135M on KJV", "increase",
              "higher orders: higher optimality"),
)


def _finite(values: Sequence[float] | None) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    return v


def verdict(treatment: Sequence[float], baseline: Sequence[float] | None, direction: str,
            paired: bool = False, null: float = 0.0, z: float = 2.0) -> dict[str, Any]:
    """Verdict of one claim from per-seed values (see module docstring for the rule).

    Args:
        treatment: per-seed metric of the treatment arm (e.g. GAPT), or the values of a one-sample claim.
        baseline: per-seed metric of the baseline arm, or None for a one-sample test against ``null``.
        direction: "increase" or "decrease" (claimed change of the metric).
        paired: arms share seeds in the same order (then per-seed differences are used).
        z: number of standard errors the effect must exceed.

    Returns a dict: verdict, effect (d), se, signed_effect, relative_change, n_treatment, n_baseline,
    treatment_mean, baseline_mean, reason.
    """
    if direction not in ("increase", "decrease"):
        raise ValueError(f"direction must be 'increase' or 'decrease', got {direction!r}")
    t = _finite(treatment)
    b = _finite(baseline) if baseline is not None else None
    out: dict[str, Any] = {"n_treatment": int(t.size), "n_baseline": int(b.size) if b is not None else 0,
                           "treatment_mean": float(t.mean()) if t.size else float("nan"),
                           "baseline_mean": float(b.mean()) if b is not None and b.size else float("nan"),
                           "effect": float("nan"), "se": float("nan"), "signed_effect": float("nan"),
                           "relative_change": float("nan")}
    sign = 1.0 if direction == "increase" else -1.0
    if t.size == 0 or not np.all(np.isfinite(t)) or (b is not None and (b.size == 0 or
                                                                         not np.all(np.isfinite(b)))):
        return {**out, "verdict": "inconclusive", "reason": "missing or non-finite values"}
    if b is None:
        d = float(t.mean()) - null
        se = float(t.std(ddof=1) / math.sqrt(t.size)) if t.size > 1 else float("nan")
        rel = float("nan")
    elif paired:
        if t.size != b.size:
            raise ValueError(f"paired arms need equal seed counts, got {t.size} and {b.size}")
        diff = t - b
        d = float(diff.mean())
        se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else float("nan")
        rel = d / abs(float(b.mean())) if float(b.mean()) != 0 else float("nan")
    else:
        d = float(t.mean() - b.mean())
        if t.size > 1 and b.size > 1:
            se = math.sqrt(float(t.var(ddof=1)) / t.size + float(b.var(ddof=1)) / b.size)
        else:
            se = float("nan")
        rel = d / abs(float(b.mean())) if float(b.mean()) != 0 else float("nan")
    s = sign * d
    out.update({"effect": d, "se": se, "signed_effect": s, "relative_change": rel})
    if not math.isfinite(se):
        return {**out, "verdict": "inconclusive", "reason": "fewer than 2 seeds: spread unknown"}
    if s > z * se:
        return {**out, "verdict": "holds", "reason": f"effect in the claimed direction beyond {z:g} SE"}
    if s < -z * se:
        return {**out, "verdict": "does not hold", "reason": f"effect opposite to the claim beyond {z:g} SE"}
    return {**out, "verdict": "inconclusive", "reason": f"effect within {z:g} SE of zero"}


def evaluate_claims(summaries: Mapping[str, Mapping[str, Any]],
                    claims: Sequence[ClaimSpec] = CLAIMS) -> list[dict[str, Any]]:
    """One row per claim: spec, measurement (from ``summaries[exp]["claims"][id]``) and computed verdict.

    A measurement dict holds ``treatment`` (list), ``baseline`` (list or None), ``paired`` (bool), optional
    ``null``, ``unit``, ``scale``, ``treatment_label``, ``baseline_label``, ``note``. Claims whose experiment
    did not run or was skipped get verdict "not run" and the reason.
    """
    rows = []
    for spec in claims:
        row: dict[str, Any] = asdict(spec)
        summ = summaries.get(spec.experiment)
        meas = (summ or {}).get("claims", {}).get(spec.id) if summ else None
        if summ is None or summ.get("skipped_reason") or meas is None:
            reason = (summ or {}).get("skipped_reason") or (
                "experiment not run" if summ is None else "no measurement recorded")
            row.update({"verdict": "not run", "reason": reason, "n_treatment": 0, "n_baseline": 0})
            rows.append(row)
            continue
        v = verdict(meas.get("treatment", []), meas.get("baseline"), spec.direction,
                    paired=bool(meas.get("paired", False)), null=float(meas.get("null", 0.0)))
        row.update(v)
        for key in ("unit", "scale", "treatment_label", "baseline_label", "note"):
            row[key] = meas.get(key, "")
        row["paired"] = bool(meas.get("paired", False))
        row["null"] = float(meas.get("null", 0.0))
        row["treatment"] = list(meas.get("treatment", []))
        row["baseline"] = list(meas["baseline"]) if meas.get("baseline") is not None else None
        rows.append(row)
    return rows
