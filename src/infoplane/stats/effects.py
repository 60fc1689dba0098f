"""Effect sizes with confidence intervals: paired mean difference (t), relative effect (delta method),
and a seeded bootstrap for statistics that are not a mean (a correlation, a slope)."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from ._checks import NAN, as_1d, check_confidence

__all__ = ["Effect", "paired_effect", "BootstrapCI", "bootstrap_ci"]


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
    relative: float = NAN
    relative_ci_low: float = NAN
    relative_ci_high: float = NAN
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
    t = as_1d(treatment, "treatment")
    conf = check_confidence(confidence)
    if t.size == 0:
        raise ValueError("treatment must hold at least one value, got an empty sequence")
    if baseline is None:
        d = t - float(null)
        b = None
    else:
        b = as_1d(baseline, "baseline")
        if b.size != t.size:
            raise ValueError(f"paired arms need one value per seed each, got {t.size} treatment and "
                             f"{b.size} baseline values")
        d = t - b
    n = int(d.size)
    est = float(d.mean())
    if n < 2:
        return Effect(est, NAN, NAN, NAN, n, 0, conf)
    # Student 1908 t interval for a mean, df = n - 1 (paired differences: one value per seed)
    tq = float(_sps.t.ppf(0.5 + conf / 2.0, n - 1))
    se = float(d.std(ddof=1) / math.sqrt(n))
    rel = rel_lo = rel_hi = NAN
    if b is not None and float(b.mean()) != 0.0:
        mb = float(b.mean())
        ratio = float(t.mean()) / mb
        # delta method for a ratio of means, Var(R) ~ Var(T - R B) / (n mean(B)^2)
        # (Cochran 1977, Sampling Techniques, ch. 6)
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
        method: "BCa" (bias-corrected and accelerated, Efron 1987, JASA 82:171) or "percentile". When BCa
            is undefined (e.g. a constant statistic) the percentile interval is returned and ``method`` says
            so.
    """
    conf = check_confidence(confidence)
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    samples = tuple(as_1d(x, f"data[{i}]") for i, x in enumerate(data))
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
