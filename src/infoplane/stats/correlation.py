"""A correlation across replicates (models) as a claim: Pearson r (or partial r given covariates), its
Fisher-z interval, and a seeded Monte Carlo permutation test.

Used for cross-model claims such as "optimality correlates with the downstream score" (Conklin et al. 2026,
sec. 5, fig. 5), where the replicates are models, not paired seeds. A partial correlation is the Pearson r of
the residuals of x and y after an ordinary least-squares fit on ``[1, covariates]``; its permutation test
permutes the residuals of y (Freedman & Lane 1983), and its interval uses df = n - 3 - k (k covariates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from ._checks import ALTERNATIVES, as_1d, check_alternative, check_confidence

__all__ = ["CorrelationTest", "correlation_test", "residualize"]


@dataclass(frozen=True)
class CorrelationTest:
    """Pearson (partial) correlation with a Fisher-z interval and one-sided permutation p-values.

    Attributes: r (dimensionless, in [-1, 1]); ci_low, ci_high; n (pairs), k (covariates partialled out);
    confidence; p_greater / p_less: one-sided Monte Carlo permutation p-values (+1 corrected);
    n_resamples; min_p = 1 / (n_resamples + 1); method (text).
    """

    r: float
    ci_low: float
    ci_high: float
    n: int
    k: int
    confidence: float
    p_greater: float
    p_less: float
    n_resamples: int
    min_p: float
    method: str

    def p(self, alternative: str) -> float:
        """One-sided p-value: ``"greater"`` (r > 0) or ``"less"`` (r < 0)."""
        alternative = check_alternative(alternative)
        if alternative not in ("greater", "less"):
            raise ValueError(f"alternative must be 'greater' or 'less' here, got {alternative!r} "
                             f"(one of {ALTERNATIVES})")
        return self.p_greater if alternative == "greater" else self.p_less


def residualize(v: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """Residuals of ``v`` ([n]) after least squares on ``[1, covariates]`` (covariates: [n, k], k >= 0)."""
    design = np.column_stack([np.ones(v.size), covariates]) if covariates.size else np.ones((v.size, 1))
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    return v - design @ coef


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of x ([n]) with each row of y ([B, n] or [n])."""
    xc = x - x.mean()
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum()) * np.sqrt((yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (yc @ xc) / den


def correlation_test(x: Sequence[float], y: Sequence[float], covariates: Any = None, *,
                     confidence: float = 0.95, n_resamples: int = 100_000, seed: Any = 0) -> CorrelationTest:
    """Pearson r of x and y ([n] each), partial given ``covariates`` ([n, k] or a list of k length-n
    sequences), with a Fisher-z interval and a seeded Monte Carlo permutation test.

    Raises ValueError for mismatched lengths, non-finite values, fewer than k + 4 pairs or a constant series.
    """
    check_confidence(confidence)
    xa = as_1d(x, "x").astype(np.float64)
    ya = as_1d(y, "y").astype(np.float64)
    if xa.size != ya.size:
        raise ValueError(f"x and y need one value per replicate each, got {xa.size} and {ya.size}")
    if covariates is None or (hasattr(covariates, "__len__") and len(covariates) == 0):
        cov = np.zeros((xa.size, 0))
    else:
        cov = np.asarray(covariates, dtype=np.float64)
        if cov.ndim == 1:
            cov = cov[:, None]
        if cov.shape[0] != xa.size and cov.shape[-1] == xa.size:
            cov = cov.T  # given as k sequences of length n
        if cov.shape[0] != xa.size:
            raise ValueError(f"covariates must be [n, k] with n = {xa.size}, got shape {cov.shape}")
    for name, arr in (("x", xa), ("y", ya), ("covariates", cov)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} holds non-finite values")
    n, k = int(xa.size), int(cov.shape[1])
    if n < k + 4:
        raise ValueError(f"a (partial) correlation with {k} covariate(s) needs >= {k + 4} pairs, got {n}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    rx, ry = residualize(xa, cov), residualize(ya, cov)
    if np.ptp(rx) <= 1e-12 * max(1.0, float(np.abs(xa).max())) or \
            np.ptp(ry) <= 1e-12 * max(1.0, float(np.abs(ya).max())):
        raise ValueError("x or y is constant (after removing the covariates): the correlation is undefined")
    r = float(np.clip(_pearson(rx, ry), -1.0, 1.0))
    # Fisher 1921: atanh(r) is approximately normal with sd 1/sqrt(n - 3 - k)
    z = math.atanh(min(max(r, -1 + 1e-15), 1 - 1e-15))
    half = float(_sps.norm.ppf(0.5 + confidence / 2)) / math.sqrt(n - 3 - k) if n - 3 - k > 0 else math.inf
    lo, hi = math.tanh(z - half), math.tanh(z + half)
    rng = np.random.default_rng(seed)
    ge = le = 0
    chunk = max(1, 2 ** 20 // n)
    for start in range(0, int(n_resamples), chunk):
        m = min(chunk, int(n_resamples) - start)
        perm = rng.permuted(np.broadcast_to(ry, (m, n)), axis=1)
        rs = _pearson(rx, perm)
        tol = 1e-12
        ge += int(np.count_nonzero(rs >= r - tol))
        le += int(np.count_nonzero(rs <= r + tol))
    b = int(n_resamples)
    method = (f"Pearson r, Fisher-z {confidence:.0%} interval, Monte Carlo permutation test ({b} permutations"
              + (f" of y's residuals given {k} covariate(s)" if k else "") + ")")
    return CorrelationTest(r=r, ci_low=lo, ci_high=hi, n=n, k=k, confidence=float(confidence),
                           p_greater=(ge + 1) / (b + 1), p_less=(le + 1) / (b + 1), n_resamples=b,
                           min_p=1.0 / (b + 1), method=method)

