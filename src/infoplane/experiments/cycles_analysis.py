"""Per-run statistics of experiment 1 (:mod:`infoplane.experiments.cycles`): cosine series tested against
red noise, and the validity check.

Pure numpy / scipy on the recorded series (no models). For one run and one gradient family (MBE or the
Frobenius control), the layer-mean (or one layer's) cosine is a series of per-point means over K fixed probe
batches with their standard errors:

* :func:`series_tests`: the spectral test against AR(1) surrogates (:func:`infoplane.stats.ar1_spectral_test`,
  detrended inside) and the significant-sign-change count of the *detrended* series (only points with
  ``|mean| > z SE`` count, :func:`infoplane.stats.sign_change_test`) against AR(1) surrogates of that series;
  ``excess = observed - surrogate mean``. The same count on the raw (not detrended) series is kept beside it.
* :func:`null_counts`: the surrogates' sign-change counts themselves (for the figure), drawn exactly as
  :func:`infoplane.stats.sign_change_test` draws them.
* :func:`validity`: does the cosine's sign predict the next change of held-out MBE? Rank (Spearman) and
  Pearson correlation of ``cos_t`` with ``-(MBE_{t+1} - MBE_t)``; positive = a positive cosine (CE descent
  lowers MBE, Yu 2025 sign convention) is followed by falling held-out MBE.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from infoplane.stats.surrogates import (
    ar1_spectral_test,
    ar1_surrogates,
    detrend,
    fit_ar1,
    sign_change_test,
    significant_sign_changes,
)

__all__ = ["series_tests", "null_counts", "validity", "surrogate_seed"]

_FAMILIES = ("mbe", "frob")


def surrogate_seed(run_seed: int, family: str, layer: int | str) -> int:
    """The surrogates' RNG seed of one (run, family, layer) series: distinct for every series, fixed."""
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {_FAMILIES}, got {family!r}")
    lay = 0 if layer == "mean" else int(layer) + 1
    return 10_000 * int(run_seed) + 100 * _FAMILIES.index(family) + lay


def _check(mean: Any, se: Any) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    if m.ndim != 1 or s.shape != m.shape:
        raise ValueError(
            f"mean and se must be 1-D series of the same length, got shapes {m.shape} and {s.shape}"
        )
    return m, s


def series_tests(
    mean: Any, se: Any, *, z: float = 2.0, n_surrogates: int = 999, seed: int = 0, order: int = 1
) -> dict[str, float]:
    """Spectral and significant-sign-change tests of one cosine series (module docstring).

    Args:
        mean: ``[n]`` per-point mean cosine over the K probe batches (n >= 8, finite).
        se: ``[n]`` its standard errors.
        z: a point counts as signed when ``|mean| > z * se``.
        n_surrogates, seed: AR(1) surrogates of every test (same seed for all three).
        order: polynomial detrending degree (1 = linear).

    Returns:
        ``spectral_stat``, ``spectral_p``, ``phi`` (AR(1) of the detrended series), ``sign_changes``
        (detrended, significant), ``null_mean``, ``excess``, ``sign_p``, the same three for the raw series
        (``raw_sign_changes``, ``raw_null_mean``, ``raw_excess``, ``raw_sign_p``), ``frac_significant`` and
        ``frac_positive`` (of the raw series' significant points), ``mean_cos``, ``n_points``.
    """
    m, s = _check(mean, se)
    spec = ar1_spectral_test(m, n_surrogates=n_surrogates, seed=seed, order=order)
    det = sign_change_test(detrend(m, order), s, z=z, n_surrogates=n_surrogates, seed=seed)
    raw = sign_change_test(m, s, z=z, n_surrogates=n_surrogates, seed=seed)
    sig = np.abs(m) > z * s
    return {
        "spectral_stat": spec.statistic,
        "spectral_p": spec.p_value,
        "phi": spec.phi,
        "sign_changes": det.statistic,
        "null_mean": det.null_mean,
        "excess": det.statistic - det.null_mean,
        "sign_p": det.p_value,
        "raw_sign_changes": raw.statistic,
        "raw_null_mean": raw.null_mean,
        "raw_excess": raw.statistic - raw.null_mean,
        "raw_sign_p": raw.p_value,
        "frac_significant": float(sig.mean()),
        "frac_positive": float(np.mean(m[sig] > 0)) if sig.any() else math.nan,
        "mean_cos": float(m.mean()),
        "n_points": int(m.size),
    }


def null_counts(
    mean: Any, se: Any, *, z: float = 2.0, n_surrogates: int = 999, seed: int = 0, order: int = 1
) -> np.ndarray:
    """``[n_surrogates]`` significant-sign-change counts of the AR(1) surrogates of the detrended series,
    the null behind ``series_tests(...)["null_mean"]`` (same draws as :func:`sign_change_test`)."""
    m, s = _check(mean, se)
    d = detrend(m, order)
    phi, sigma = fit_ar1(d)
    sur = ar1_surrogates(phi, sigma, d.size, n_surrogates, seed, mean=float(d.mean()))
    return np.asarray(significant_sign_changes(sur, s, z))


def validity(cos: Any, mbe: Any) -> dict[str, float]:
    """Correlation of ``cos_t`` with the next held-out MBE change, sign flipped: ``-(mbe_{t+1} - mbe_t)``.

    ``cos``, ``mbe``: ``[n]`` series at the same points (n >= 3, finite). Returns ``spearman`` (the claim's
    statistic: rank correlation, robust to the large early changes), ``pearson``, ``sign_agree`` (share of
    pairs whose signs match) and ``n_pairs`` (n - 1); the correlations are NaN when either side is constant.
    """
    from scipy.stats import rankdata

    c = np.asarray(cos, dtype=np.float64)
    b = np.asarray(mbe, dtype=np.float64)
    if c.ndim != 1 or c.shape != b.shape or c.size < 3:
        raise ValueError(
            f"cos and mbe must be 1-D series of the same length >= 3, got {c.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(b))):
        raise ValueError("cos and mbe must be finite")
    x = c[:-1]
    y = -np.diff(b)  # positive cosine predicts a fall of held-out MBE (compression)

    def pearson(u: np.ndarray, v: np.ndarray) -> float:
        u, v = u - u.mean(), v - v.mean()
        den = math.sqrt(float((u * u).sum() * (v * v).sum()))
        return float((u * v).sum() / den) if den > 0 else math.nan

    # Spearman's rho = Pearson r of the (average-tie) ranks
    return {
        "spearman": pearson(rankdata(x), rankdata(y)),
        "pearson": pearson(x, y),
        "sign_agree": float(np.mean(np.sign(x) == np.sign(y))),
        "n_pairs": int(x.size),
    }
