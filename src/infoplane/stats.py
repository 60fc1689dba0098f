"""The verdict engine: effect sizes with confidence intervals, exact permutation tests, Holm correction.

Pure numpy/scipy; imports nothing from the rest of infoplane. Every claim of a report goes through
:func:`evaluate`, which applies the rule below (also available as :data:`RULE_TEXT` for the report).

Replicates are independent training runs (one value per seed and arm, paired by seed) or independent
text samples -- never layers of one model, never runs that share their training prefix.

The rule, per claim (``d_i`` = treatment_i - baseline_i per seed, or value_i - null for a one-sample claim):

1. **Preconditions first.** Each claim declares :class:`Precondition` s (name, passed, detail); the engine
   adds ``min_seeds`` (n >= the tier's minimum) and ``finite_values``. Any failed precondition gives
   **not testable at this scale**, naming every failed one. This is decided before any test is run,
   so the effect cannot influence it; such claims are left out of the Holm family.
2. **Effect and 95 % CI**: mean of ``d_i`` with a t interval (df = n - 1); relative effect
   mean(treatment)/mean(baseline) - 1 with a delta-method t interval.
3. **p-value**: exact paired sign-flip permutation test on ``sum(d_i)`` (all 2^n sign patterns, the
   observed one included) when at most 16 differences are non-zero, Monte Carlo (seeded, +1 corrected)
   above. Zero differences are kept: they do not change the sum under any flip, so they neither help nor
   hurt; all-zero differences give p = 1. With n non-zero differences the smallest attainable p is 2^-n
   (0.125 for 3 seeds), however large the effect.
4. **Holm** step-down adjustment of the one-sided p-values in the claimed direction across the testable
   claims of one report (family-wise error <= alpha for "holds"); the one-sided p-values in the opposite
   direction form a second Holm family of the same claims.
5. **Verdict**: Holm-adjusted claimed-direction p < alpha (0.05): **holds**; Holm-adjusted
   opposite-direction p < alpha: **does not hold**; otherwise **inconclusive**.

Also here: :func:`bootstrap_ci` for statistics that are not a mean (a correlation, a slope), and the
permutation nulls for mutual information (:func:`label_permutations`, :func:`compare_to_null`): labels per
position are shuffled over positions; labels per text are shuffled across texts, so that all positions of a
text keep one shared label (positions of one text are not exchangeable).
"""

from __future__ import annotations

import inspect
import math
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _sps

__all__ = [
    "VERDICTS", "RULE_TEXT", "ALTERNATIVES",
    "Effect", "paired_effect", "BootstrapCI", "bootstrap_ci",
    "SignFlipResult", "sign_flip_test", "holm",
    "Precondition", "Claim", "ClaimResult", "evaluate",
    "label_permutations", "NullComparison", "compare_to_null",
]

VERDICTS = ("holds", "does not hold", "inconclusive", "not testable at this scale")
ALTERNATIVES = ("greater", "less", "two-sided")
EXACT_MAX_N = 16

RULE_TEXT = (
    "Per claim, d_i = treatment - baseline per seed (paired), or value - null (one sample). Preconditions "
    "are checked first: if any fails (including fewer seeds than the tier's minimum) the verdict is 'not "
    "testable at this scale' and names it; such claims are not tested. Effect: mean(d) with a 95% t "
    "interval (df = n-1); relative effect mean(treatment)/mean(baseline) - 1 with a delta-method interval. "
    "p: exact paired sign-flip permutation test of sum(d) (all 2^n sign patterns, n <= 16 non-zero "
    "differences; seeded Monte Carlo with +1 correction above), one-sided in the claimed direction; the "
    "smallest attainable p is 2^-n (0.125 with 3 seeds). Holm step-down adjustment across the tested claims "
    "of the report. 'holds' if Holm-adjusted p < 0.05 in the claimed direction, 'does not hold' if "
    "Holm-adjusted p < 0.05 in the opposite direction (a second Holm family), else 'inconclusive'."
)

_NAN = float("nan")


def _as_1d(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a sequence of numbers, got {type(values).__name__}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional [n], got shape {arr.shape}")
    return arr


def _check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return alternative


def _check_confidence(confidence: float) -> float:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


# ----------------------------------------------------------------------------------------- effect sizes


@dataclass(frozen=True)
class Effect:
    """Mean paired difference with a t interval, and the relative effect with a delta-method interval.

    Attributes (units of the metric unless stated): estimate = mean(d); ci_low, ci_high: its interval;
    se = sd(d)/sqrt(n); n, df = n - 1; relative = mean(treatment)/mean(baseline) - 1 (dimensionless, NaN
    for one-sample claims or a zero baseline mean) with relative_ci_low/high; confidence (e.g. 0.95).
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    n: int
    df: int
    confidence: float
    relative: float = _NAN
    relative_ci_low: float = _NAN
    relative_ci_high: float = _NAN
    method: str = "t"


def paired_effect(treatment: Sequence[float], baseline: Sequence[float] | None = None, *,
                  null: float = 0.0, confidence: float = 0.95) -> Effect:
    """Effect size with a t confidence interval for paired per-seed values.

    Args:
        treatment: ``[n]`` per-seed values of the treatment arm (or of a one-sample claim).
        baseline: ``[n]`` per-seed values of the baseline arm in the same seed order, or None for a
            one-sample effect ``mean(treatment) - null``.
        null: reference value of a one-sample claim (ignored when ``baseline`` is given).
        confidence: coverage of the intervals.

    With n < 2 the intervals are NaN; with zero spread (all differences equal) the t interval has zero
    width -- it is the sign-flip test, not this interval, that judges such a case.
    """
    t = _as_1d(treatment, "treatment")
    conf = _check_confidence(confidence)
    if t.size == 0:
        raise ValueError("treatment must hold at least one value, got an empty sequence")
    if baseline is None:
        d = t - float(null)
        b = None
    else:
        b = _as_1d(baseline, "baseline")
        if b.size != t.size:
            raise ValueError(f"paired arms need one value per seed each, got {t.size} treatment and "
                             f"{b.size} baseline values")
        d = t - b
    n = int(d.size)
    est = float(d.mean())
    if n < 2:
        return Effect(est, _NAN, _NAN, _NAN, n, 0, conf)
    # Student t interval for a mean, df = n - 1 (paired differences: one value per seed)
    tq = float(_sps.t.ppf(0.5 + conf / 2.0, n - 1))
    se = float(d.std(ddof=1) / math.sqrt(n))
    rel = rel_lo = rel_hi = _NAN
    if b is not None and float(b.mean()) != 0.0:
        mb = float(b.mean())
        ratio = float(t.mean()) / mb
        # delta method for a ratio of means: Var(R) ~ Var(T - R B) / (n mean(B)^2) (Cochran 1977, ch. 6)
        se_r = float((t - ratio * b).std(ddof=1) / (math.sqrt(n) * abs(mb)))
        rel, rel_lo, rel_hi = ratio - 1.0, ratio - 1.0 - tq * se_r, ratio - 1.0 + tq * se_r
    return Effect(est, est - tq * se, est + tq * se, se, n, n - 1, conf, rel, rel_lo, rel_hi)


@dataclass(frozen=True)
class BootstrapCI:
    """Bootstrap interval of a statistic: estimate (statistic on the data), ci_low, ci_high (its units),
    confidence, method actually used ("BCa" or "percentile"), n_resamples, seed."""

    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    method: str
    n_resamples: int
    seed: int


def bootstrap_ci(data: Sequence[Any], statistic: Callable[..., float], *, paired: bool = True,
                 confidence: float = 0.95, n_resamples: int = 9999, method: str = "BCa",
                 seed: int = 0) -> BootstrapCI:
    """Seeded bootstrap interval for a statistic that is not a mean (a correlation, a slope).

    Resample the replicates (seeds or texts), never layers. Wraps :func:`scipy.stats.bootstrap`.

    Args:
        data: tuple of ``[n]`` samples, e.g. ``(x, y)``; with ``paired=True`` rows are resampled together.
        statistic: ``statistic(*samples) -> float`` (called once per resample).
        method: "BCa" (Efron 1987, bias-corrected and accelerated) or "percentile". When BCa is undefined
            (e.g. a constant statistic) the percentile interval is returned and ``method`` says so.
    """
    conf = _check_confidence(confidence)
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    samples = tuple(_as_1d(x, f"data[{i}]") for i, x in enumerate(data))
    if not samples or any(s.size < 2 for s in samples):
        raise ValueError(f"data must be a non-empty tuple of samples with >= 2 values each, got sizes "
                         f"{[s.size for s in samples]}")
    if paired and len({s.size for s in samples}) != 1:
        raise ValueError(f"paired samples need equal sizes, got {[s.size for s in samples]}")
    estimate = float(statistic(*samples))
    rng_kw = "rng" if "rng" in inspect.signature(_sps.bootstrap).parameters else "random_state"
    used = method
    for attempt in ((method, "percentile") if method == "BCa" else (method,)):
        used = attempt
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate-data warnings: handled by the percentile fallback
            res = _sps.bootstrap(samples, statistic, n_resamples=int(n_resamples), vectorized=False,
                                 paired=paired, confidence_level=conf, method=attempt,
                                 **{rng_kw: np.random.default_rng(seed)})
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
    return BootstrapCI(estimate, lo, hi, conf, used, int(n_resamples), int(seed))


# ---------------------------------------------------------------------------------- permutation tests


@dataclass(frozen=True)
class SignFlipResult:
    """Paired sign-flip permutation test.

    Attributes: p_value; alternative; statistic = sum(d) (metric units); n (all differences), n_nonzero;
    exact (all 2^n_nonzero sign patterns enumerated) or Monte Carlo with n_resamples draws;
    min_p: the smallest p-value this design can give (2^-n_nonzero exact, 1/(n_resamples+1) Monte Carlo).
    """

    p_value: float
    alternative: str
    statistic: float
    n: int
    n_nonzero: int
    exact: bool
    n_resamples: int
    min_p: float


def _flip_sums(d: np.ndarray, exact_max_n: int, n_resamples: int,
               rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Null sums ``sum_i s_i d_i`` over sign patterns s: all 2^n (exact) or ``n_resamples`` random ones."""
    n = d.size
    if n == 0:
        return np.zeros(1), True
    if n <= exact_max_n:
        bits = (np.arange(2 ** n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)) & 1
        return (1.0 - 2.0 * bits) @ d, True  # pattern 0 (all +1) is the observed one
    out = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, 2 ** 20 // n)
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        out[start:start + m] = (1.0 - 2.0 * rng.integers(0, 2, size=(m, n))) @ d
    return out, False


def _flip_p(sums: np.ndarray, observed: float, tol: float, alternative: str, exact: bool) -> float:
    if alternative == "greater":
        hits = int(np.count_nonzero(sums >= observed - tol))
    elif alternative == "less":
        hits = int(np.count_nonzero(sums <= observed + tol))
    else:
        hits = int(np.count_nonzero(np.abs(sums) >= abs(observed) - tol))
    # exact: the observed pattern is among the 2^n; Monte Carlo: +1 so p is never 0
    # (Phipson & Smyth 2010, "Permutation p-values should never be zero", sec. 2)
    return hits / sums.size if exact else (hits + 1) / (sums.size + 1)


def _sign_flip_all(differences: Any, exact_max_n: int, n_resamples: int,
                   seed: int | Sequence[int]) -> tuple[dict[str, float], SignFlipResult]:
    d = _as_1d(differences, "differences")
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be a non-empty sequence of finite numbers, got {d.tolist()!r}")
    if int(exact_max_n) < 0 or int(exact_max_n) > 24:
        raise ValueError(f"exact_max_n must be in [0, 24] (2^n patterns are enumerated), got {exact_max_n}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    nz = d[d != 0.0]  # zeros add 0 to the sum under every flip: dropping them leaves p unchanged
    sums, exact = _flip_sums(nz, int(exact_max_n), int(n_resamples), np.random.default_rng(seed))
    observed = float(nz.sum())
    # floating-point ties: sums within a relative 1e-12 of sum|d| count as equal to the observed one
    tol = 1e-12 * float(np.abs(nz).sum())
    ps = {alt: _flip_p(sums, observed, tol, alt, exact) for alt in ALTERNATIVES}
    min_p = 1.0 / sums.size if exact else 1.0 / (sums.size + 1)
    base = SignFlipResult(_NAN, "", float(d.sum()), int(d.size), int(nz.size), exact,
                          0 if exact else int(n_resamples), min_p)
    return ps, base


def sign_flip_test(differences: Sequence[float], *, alternative: str = "greater",
                   exact_max_n: int = EXACT_MAX_N, n_resamples: int = 100_000,
                   seed: int = 0) -> SignFlipResult:
    """Paired sign-flip permutation test of H0: the differences are symmetric about zero.

    Statistic: ``sum(d)``. Exact (all ``2^n`` sign patterns, the observed one included) when at most
    ``exact_max_n`` differences are non-zero; otherwise ``n_resamples`` seeded random patterns with
    p = (1 + #{S* >= S}) / (1 + n_resamples). Exactly zero differences are kept in ``n`` and do not
    change p (they add 0 under every flip); all-zero differences give p = 1.

    Args:
        differences: ``[n]`` paired per-seed differences (treatment - baseline), finite.
        alternative: "greater" (mean difference > 0), "less", or "two-sided" (``|S*| >= |S|``).
    """
    alternative = _check_alternative(alternative)
    ps, base = _sign_flip_all(differences, exact_max_n, n_resamples, seed)
    return SignFlipResult(ps[alternative], alternative, base.statistic, base.n, base.n_nonzero, base.exact,
                          base.n_resamples, base.min_p)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order.

    Sorted ascending ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
    (Holm 1979, "A simple sequentially rejective multiple test procedure", sec. 2). NaN entries (claims
    not tested) are left out of the family and stay NaN. Rejecting where ``adj < alpha`` controls the
    family-wise error rate at ``alpha``.
    """
    p = _as_1d(p_values, "p_values")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0.0) | (p[ok] > 1.0)):
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN), got {p.tolist()!r}")
    out = np.full(p.shape, _NAN)
    idx = np.flatnonzero(ok)
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    # Holm 1979, sec. 2: multiplier m - j + 1 for the j-th smallest, monotone by running maximum, cap at 1
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


# ---------------------------------------------------------------------------------------------- claims


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

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Claim.id must be a non-empty string, got {self.id!r}")
        if self.direction not in ("increase", "decrease"):
            raise ValueError(f"claim {self.id!r}: direction must be 'increase' or 'decrease', "
                             f"got {self.direction!r}")
        t = tuple(float(x) for x in _as_1d(self.treatment, f"claim {self.id!r}: treatment"))
        object.__setattr__(self, "treatment", t)
        if self.baseline is not None:
            b = tuple(float(x) for x in _as_1d(self.baseline, f"claim {self.id!r}: baseline"))
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
    _check_confidence(confidence)

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
        eff = paired_effect(c.treatment, c.baseline, null=c.null, confidence=confidence) \
            if n_bad == 0 and n > 0 else Effect(_NAN, _NAN, _NAN, _NAN, n, max(n - 1, 0), confidence)
        row: dict[str, Any] = {"claim": c, "effect": eff, "pre": pre, "failed": failed,
                               "p": _NAN, "p_opp": _NAN, "min_p": _NAN, "test": "not run"}
        if not failed:
            ps, base = _sign_flip_all(d, exact_max_n, n_resamples, _claim_seed(seed, c.id))
            claimed, opposite = ("greater", "less") if c.direction == "increase" else ("less", "greater")
            row.update(p=ps[claimed], p_opp=ps[opposite], min_p=base.min_p,
                       test=(f"exact sign-flip, 2^{base.n_nonzero} patterns" if base.exact
                             else f"Monte Carlo sign-flip, {base.n_resamples} patterns"))
        rows.append(row)

    p_holm = holm([r["p"] for r in rows])
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
            failed=r["failed"]))
    return out


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
    return VERDICTS[2], reason


# --------------------------------------------------------------------------- permutation nulls for MI


def label_permutations(labels: Any, *, groups: Any = None, n_permutations: int = 100,
                       seed: int = 0) -> Iterator[np.ndarray]:
    """Permuted label vectors for a permutation null of I(labels; Z), one ``[N]`` array per permutation.

    Args:
        labels: ``[N]`` integer label per position.
        groups: None for per-position labels (positions are exchangeable: a plain shuffle of positions), or
            ``[N]`` text index per position for per-text labels: every text must carry one label on all
            its positions, and the texts' labels are shuffled across texts, so all positions of a text keep
            one shared label (positions of one text are not exchangeable, and a position shuffle would
            break that dependence and make the null too lenient).
        n_permutations: how many permutations to yield. seed: seeds the generator.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty [N] integer array, got shape {lab.shape}, "
                         f"dtype {lab.dtype}")
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations!r}")
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(int(n_permutations)):
            yield lab[rng.permutation(lab.size)]
        return
    grp = np.asarray(groups)
    if grp.shape != lab.shape or not np.issubdtype(grp.dtype, np.integer):
        raise ValueError(f"groups must be an integer [N] array like labels {lab.shape}, got shape "
                         f"{grp.shape}, dtype {grp.dtype}")
    uniq, first, inverse = np.unique(grp, return_index=True, return_inverse=True)
    text_labels = lab[first]
    mixed = np.flatnonzero(text_labels[inverse] != lab)
    if mixed.size:
        g = grp[mixed[0]]
        raise ValueError(f"per-text labels must be constant within a text; text {g} carries labels "
                         f"{sorted(set(lab[grp == g].tolist()))[:5]}")
    for _ in range(int(n_permutations)):
        yield text_labels[rng.permutation(uniq.size)][inverse]


@dataclass(frozen=True)
class NullComparison:
    """An observed statistic against its permutation null: observed, null_mean, null_sd, excess =
    observed - null_mean (the null-corrected value, same units), p_value (+1 corrected), n_permutations."""

    observed: float
    null_mean: float
    null_sd: float
    excess: float
    p_value: float
    n_permutations: int


def compare_to_null(observed: float, null_values: Sequence[float], *,
                    alternative: str = "greater") -> NullComparison:
    """Null-corrected value and permutation p of ``observed`` against ``null_values`` (e.g. MI under
    :func:`label_permutations`); p = (1 + #{null >= observed}) / (1 + P) (Phipson & Smyth 2010, sec. 2)."""
    alternative = _check_alternative(alternative)
    null = _as_1d(null_values, "null_values")
    obs = float(observed)
    if null.size == 0 or not np.all(np.isfinite(null)) or not math.isfinite(obs):
        raise ValueError(f"need a finite observed value and >= 1 finite null values, got {obs!r} and "
                         f"{null.size} values")
    mu = float(null.mean())
    if alternative == "greater":
        hits = np.count_nonzero(null >= obs)
    elif alternative == "less":
        hits = np.count_nonzero(null <= obs)
    else:
        hits = np.count_nonzero(np.abs(null - mu) >= abs(obs - mu))
    sd = float(null.std(ddof=1)) if null.size > 1 else _NAN
    return NullComparison(obs, mu, sd, obs - mu, (int(hits) + 1) / (null.size + 1), int(null.size))
