"""The exact paired sign-flip permutation test (Monte Carlo above ``exact_max_n`` non-zero differences)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import ALTERNATIVES, NAN, as_1d, check_alternative

__all__ = ["EXACT_MAX_N", "SignFlipResult", "sign_flip_test", "sign_flip_all"]

EXACT_MAX_N = 16


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
        # Fisher 1935, The Design of Experiments, ch. III: every sign pattern of the paired differences
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
    # (Phipson & Smyth 2010, "Permutation p-values should never be zero")
    return hits / sums.size if exact else (hits + 1) / (sums.size + 1)


def sign_flip_all(differences: Any, exact_max_n: int, n_resamples: int,
                   seed: int | Sequence[int]) -> tuple[dict[str, float], SignFlipResult]:
    d = as_1d(differences, "differences")
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
    base = SignFlipResult(NAN, "", float(d.sum()), int(d.size), int(nz.size), exact,
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
    alternative = check_alternative(alternative)
    ps, base = sign_flip_all(differences, exact_max_n, n_resamples, seed)
    return SignFlipResult(ps[alternative], alternative, base.statistic, base.n, base.n_nonzero, base.exact,
                          base.n_resamples, base.min_p)
