"""Claims, preconditions and the four verdicts (rule: :data:`RULE_TEXT`, and the package docstring)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import NAN, as_1d, check_confidence
from .correlation import correlation_test
from .effects import Effect, paired_effect
from .multiplicity import holm
from .signflip import EXACT_MAX_N, sign_flip_all

__all__ = ["VERDICTS", "RULE_TEXT", "Precondition", "Claim", "ClaimResult", "evaluate"]

VERDICTS = ("holds", "does not hold", "inconclusive", "not testable at this scale")

RULE_TEXT = (
    "Per claim, d_i = treatment - baseline per seed (paired), or value - null (one sample). Preconditions "
    "are checked first: if any fails (including fewer seeds than the tier's minimum) the verdict is 'not "
    "testable at this scale' and names it; such claims are not tested. Effect: mean(d) with a 95% t "
    "interval (df = n-1); relative effect mean(treatment)/mean(baseline) - 1 with a delta-method interval. "
    "p: exact paired sign-flip permutation test of sum(d) (all 2^n sign patterns, n <= 16 non-zero "
    "differences; seeded Monte Carlo with +1 correction above), one-sided in the claimed direction; the "
    "smallest attainable p is 2^-n (0.125 with 3 seeds). Holm step-down adjustment across the tested claims "
    "of the report. 'holds' if Holm-adjusted p < 0.05 in the claimed direction, 'does not hold' if "
    "Holm-adjusted p < 0.05 in the opposite direction (a second Holm family), else 'inconclusive'. "
    "Cross-model claims (replicates = models): the effect is Pearson r (partial r given the declared "
    "covariates) with a Fisher-z 95% interval, p from a seeded Monte Carlo permutation test of r (+1 "
    "corrected), in the same Holm families. Power: with n seeds the smallest raw p is 2^-n and Holm "
    "multiplies a claim's p by up to the number m of tested claims, so a unanimous effect can hold only if "
    "2^-n times its multiplier is below 0.05 (n >= 9 for 22 claims); an 'inconclusive' verdict says when "
    "the design could not have reached it."
)


@dataclass(frozen=True)
class Precondition:
    """A condition a claim needs to be testable at this scale: name, passed, detail (shown in the table),
    e.g. ``Precondition("loss_saturated", False, "val loss still falling 4%/100 steps at the end")``."""

    name: str
    passed: bool
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Precondition.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.passed, (bool, np.bool_)):
            raise ValueError(f"Precondition.passed must be a bool, got {type(self.passed).__name__} "
                             f"for {self.name!r}")
        object.__setattr__(self, "passed", bool(self.passed))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Claim:
    """One claim and its measurements, as given to :func:`evaluate`.

    Attributes:
        id: unique key within the report. description: the claim in words. paper_value: the paper's number
            as text. direction: "increase" or "decrease" of the metric, treatment vs baseline (or vs null).
        treatment: ``[n]`` per-seed values (or the values of a one-sample claim). baseline: ``[n]`` per-seed
            values in the same seed order, or None (one-sample against ``null``).
        seeds: the ``n`` seeds (replicate ids), or empty. tier: scale tier name ("quick", "demo", "full").
        min_seeds: the tier's minimum number of replicates (checked as precondition ``min_seeds``).
        preconditions: declared :class:`Precondition` s. unit: unit of the metric.
        kind: ``"paired"`` (the default: per-seed differences, sign-flip test) or ``"correlation"``: the
            replicates are models, ``treatment`` holds a measure and ``baseline`` a score per model, and the
            claim is about their Pearson correlation (partial given ``covariates``, ``[k][n]`` or ``[n, k]``):
            "increase" = positive, "decrease" = negative (see :mod:`infoplane.stats.correlation`).
    """

    id: str
    description: str
    paper_value: str
    direction: str
    treatment: Sequence[float]
    baseline: Sequence[float] | None = None
    null: float = 0.0
    seeds: Sequence[int] = ()
    tier: str = ""
    min_seeds: int = 2
    preconditions: Sequence[Precondition] = ()
    unit: str = ""
    kind: str = "paired"
    covariates: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Claim.id must be a non-empty string, got {self.id!r}")
        if self.direction not in ("increase", "decrease"):
            raise ValueError(f"claim {self.id!r}: direction must be 'increase' or 'decrease', "
                             f"got {self.direction!r}")
        t = tuple(float(x) for x in as_1d(self.treatment, f"claim {self.id!r}: treatment"))
        object.__setattr__(self, "treatment", t)
        if self.baseline is not None:
            b = tuple(float(x) for x in as_1d(self.baseline, f"claim {self.id!r}: baseline"))
            if len(b) != len(t):
                raise ValueError(f"claim {self.id!r}: paired arms need one value per seed each, got "
                                 f"{len(t)} treatment and {len(b)} baseline values")
            object.__setattr__(self, "baseline", b)
        seeds = tuple(int(s) for s in self.seeds)
        if seeds and len(seeds) != len(t):
            raise ValueError(f"claim {self.id!r}: {len(seeds)} seeds for {len(t)} values")
        object.__setattr__(self, "seeds", seeds)
        if int(self.min_seeds) < 1:
            raise ValueError(f"claim {self.id!r}: min_seeds must be >= 1, got {self.min_seeds!r}")
        pre = tuple(self.preconditions)
        if any(not isinstance(p, Precondition) for p in pre):
            raise ValueError(f"claim {self.id!r}: preconditions must be Precondition objects, got "
                             f"{[type(p).__name__ for p in pre]}")
        object.__setattr__(self, "preconditions", pre)
        if self.kind not in ("paired", "correlation"):
            raise ValueError(f"claim {self.id!r}: kind must be 'paired' or 'correlation', got {self.kind!r}")
        if self.kind == "correlation" and self.baseline is None:
            raise ValueError(f"claim {self.id!r}: a correlation claim needs baseline = the score per model "
                             "(treatment = the measure per model)")
        if self.kind == "paired" and self.covariates is not None:
            raise ValueError(f"claim {self.id!r}: covariates only apply to kind='correlation'")

    def differences(self) -> np.ndarray:
        """``[n]`` per-seed differences treatment - baseline (or treatment - null)."""
        t = np.asarray(self.treatment, dtype=np.float64)
        return t - (np.asarray(self.baseline, dtype=np.float64) if self.baseline is not None else self.null)


@dataclass(frozen=True)
class ClaimResult:
    """A claim with its effect, CI, p-values (raw and Holm-adjusted), preconditions and verdict.

    ``p_raw``/``p_holm``: one-sided in the claimed direction; ``p_opposite``/``p_opposite_holm``: one-sided
    against it. p-values are NaN for claims that were not tested (a failed precondition). ``min_p`` is the
    smallest p the design can give (2^-n for n non-zero paired differences).
    """

    id: str
    description: str
    paper_value: str
    direction: str
    unit: str
    effect: float
    ci_low: float
    ci_high: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    confidence: float
    p_raw: float
    p_holm: float
    p_opposite: float
    p_opposite_holm: float
    min_p: float
    test: str
    n: int
    seeds: tuple[int, ...]
    tier: str
    preconditions: tuple[Precondition, ...]
    verdict: str
    reason: str
    alpha: float
    failed: tuple[str, ...] = field(default=())
    kind: str = "paired"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite floats become None, preconditions become dicts)."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            val = getattr(self, key)
            if key == "preconditions":
                val = [p.to_dict() for p in val]
            elif isinstance(val, tuple):
                val = list(val)
            elif isinstance(val, float) and not math.isfinite(val):
                val = None
            out[key] = val
        return out


def _claim_seed(seed: int, claim_id: str) -> list[int]:
    """Monte Carlo seed of one claim: independent of the claim's position in the report."""
    return [int(seed), zlib.crc32(claim_id.encode("utf-8"))]


def evaluate(claims: Sequence[Claim], *, alpha: float = 0.05, confidence: float = 0.95,
             exact_max_n: int = EXACT_MAX_N, n_resamples: int = 100_000, seed: int = 0) -> list[ClaimResult]:
    """Verdicts for the claims of one report (rule: module docstring / :data:`RULE_TEXT`).

    Holm's adjustment runs across the claims given here that pass their preconditions; call it once per
    report with all of them. Monte Carlo tests (more than ``exact_max_n`` non-zero differences) are seeded
    by ``seed`` and the claim id.
    """
    claims = list(claims)
    if any(not isinstance(c, Claim) for c in claims):
        raise ValueError(f"claims must be Claim objects, got {[type(c).__name__ for c in claims]}")
    ids = [c.id for c in claims]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"claim ids must be unique within a report, got duplicates {dup}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    check_confidence(confidence)

    rows: list[dict[str, Any]] = []
    for c in claims:
        d = c.differences()
        n = int(d.size)
        # preconditions first: decided without looking at the effect
        auto = [Precondition("min_seeds", n >= int(c.min_seeds),
                             f"{n} replicate(s); tier {c.tier or '?'} needs >= {int(c.min_seeds)}")]
        n_bad = int(np.count_nonzero(~np.isfinite(d)))
        auto.append(Precondition("finite_values", n_bad == 0, f"{n_bad} of {n} values non-finite"))
        pre = tuple(auto) + tuple(c.preconditions)
        failed = tuple(p.name for p in pre if not p.passed)
        if c.kind == "correlation":
            rows.append(_correlation_row(c, pre, failed, confidence, n_resamples, seed))
            continue
        eff = paired_effect(c.treatment, c.baseline, null=c.null, confidence=confidence) \
            if n_bad == 0 and n > 0 else Effect(NAN, NAN, NAN, NAN, n, max(n - 1, 0), confidence)
        row: dict[str, Any] = {"claim": c, "effect": eff, "pre": pre, "failed": failed,
                               "p": NAN, "p_opp": NAN, "min_p": NAN, "test": "not run"}
        if not failed:
            ps, base = sign_flip_all(d, exact_max_n, n_resamples, _claim_seed(seed, c.id))
            claimed, opposite = ("greater", "less") if c.direction == "increase" else ("less", "greater")
            row.update(p=ps[claimed], p_opp=ps[opposite], min_p=base.min_p,
                       test=(f"exact sign-flip, 2^{base.n_nonzero} patterns" if base.exact
                             else f"Monte Carlo sign-flip, {base.n_resamples} patterns"))
        rows.append(row)

    p_holm = holm([r["p"] for r in rows])
    # power statement: had a claim reached its smallest attainable p, Holm would still multiply it by
    # m - r + 1, r = its rank then (1 + the tested claims with a smaller p)
    tested = [r for r in rows if np.isfinite(r["p"])]
    for r in tested:
        rank = 1 + sum(1 for o in tested if o is not r and o["p"] < r["min_p"])
        r["holm_mult"], r["holm_m"] = len(tested) - rank + 1, len(tested)
    p_opp_holm = holm([r["p_opp"] for r in rows])
    out = []
    for r, ph, poh in zip(rows, p_holm, p_opp_holm):
        c, eff = r["claim"], r["effect"]
        verdict, reason = _verdict(r, float(ph), float(poh), float(alpha))
        out.append(ClaimResult(
            id=c.id, description=c.description, paper_value=c.paper_value, direction=c.direction,
            unit=c.unit, effect=eff.estimate, ci_low=eff.ci_low, ci_high=eff.ci_high, relative=eff.relative,
            relative_ci_low=eff.relative_ci_low, relative_ci_high=eff.relative_ci_high,
            confidence=float(confidence), p_raw=float(r["p"]), p_holm=float(ph), p_opposite=float(r["p_opp"]),
            p_opposite_holm=float(poh), min_p=float(r["min_p"]), test=r["test"], n=eff.n, seeds=c.seeds,
            tier=c.tier, preconditions=r["pre"], verdict=verdict, reason=reason, alpha=float(alpha),
            failed=r["failed"], kind=c.kind))
    return out


def _correlation_row(c: Claim, pre: tuple[Precondition, ...], failed: tuple[str, ...], confidence: float,
                     n_resamples: int, seed: int) -> dict[str, Any]:
    """A correlation claim's row: r with its interval (shown even when untested) and, when every
    precondition passed, one-sided permutation p-values."""
    row: dict[str, Any] = {"claim": c, "pre": pre, "failed": failed, "p": NAN, "p_opp": NAN, "min_p": NAN,
                           "test": "not run"}
    try:
        ct = correlation_test(c.treatment, c.baseline, c.covariates, confidence=confidence,
                              n_resamples=n_resamples if not failed else 1, seed=_claim_seed(seed, c.id))
    except ValueError as exc:
        if not failed:  # a constant series or too few models: say why instead of testing
            bad = Precondition("correlation_defined", False, str(exc))
            row.update(pre=pre + (bad,), failed=failed + (bad.name,))
        row["effect"] = Effect(NAN, NAN, NAN, NAN, len(c.treatment), 0, confidence)
        return row
    row["effect"] = Effect(ct.r, ct.ci_low, ct.ci_high, NAN, ct.n, ct.n - 2 - ct.k, confidence, method="r")
    if not failed:
        claimed, opposite = ("greater", "less") if c.direction == "increase" else ("less", "greater")
        row.update(p=ct.p(claimed), p_opp=ct.p(opposite), min_p=ct.min_p, test=ct.method)
    return row


def _verdict(row: dict[str, Any], p_holm: float, p_opp_holm: float, alpha: float) -> tuple[str, str]:
    if row["failed"]:
        bad = [p for p in row["pre"] if not p.passed]
        return VERDICTS[3], "failed precondition(s): " + "; ".join(
            f"{p.name} ({p.detail})" if p.detail else p.name for p in bad)
    if p_holm < alpha:
        return VERDICTS[0], f"Holm-adjusted one-sided p = {p_holm:.3g} < {alpha:g} in the claimed direction"
    if p_opp_holm < alpha:
        return VERDICTS[1], (f"Holm-adjusted one-sided p = {p_opp_holm:.3g} < {alpha:g} against the "
                             "claimed direction")
    reason = (f"Holm-adjusted p = {p_holm:.3g} (claimed direction), {p_opp_holm:.3g} (opposite): "
              f"neither < {alpha:g}")
    if row["min_p"] >= alpha:
        reason += f"; the smallest attainable p with these replicates is {row['min_p']:.3g}"
    elif row.get("holm_mult", 1) * row["min_p"] >= alpha:
        reason += (f"; even at its smallest attainable raw p ({row['min_p']:.3g} with these replicates) Holm "
                   f"would multiply it by {row['holm_mult']} among {row['holm_m']} tested claims, giving "
                   f">= {row['holm_mult'] * row['min_p']:.3g}: this design cannot reach {alpha:g} in this "
                   "family")
    return VERDICTS[2], reason
