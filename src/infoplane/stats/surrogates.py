"""Cycles tested against red noise: AR(1) surrogates, a spectral test and a significant-sign-change count.

Pure numpy. A series that merely wanders (autocorrelated noise) crosses zero and shows low-frequency power
without any cycle, so both statistics are compared with surrogates drawn from the AR(1) model fitted to the
series itself (red-noise null of climate spectral analysis: Gilman, Fuglister & Mitchell 1963; Mann & Lees
1996, "Robust estimation of background noise and signal detection in climatic time series")::

    x_t - mu = phi (x_{t-1} - mu) + sigma e_t,   e_t ~ N(0, 1)            (AR(1) red noise)
    phi = r_1 (lag-1 autocorrelation, Yule-Walker),  sigma^2 = var(x) (1 - phi^2)
    S(f) = sigma^2 / |1 - phi exp(-2 pi i f)|^2        (AR(1) power spectrum, f in cycles/step)

* :func:`ar1_spectral_test`: detrend, fit AR(1), statistic = max over a frequency band of the periodogram
  divided by the fitted AR(1) spectrum; every surrogate is detrended and refitted the same way (parametric
  bootstrap), p = (1 + #{null >= observed}) / (1 + n_surrogates).
* :func:`sign_change_test`: sign changes of a series of per-point means counted only between points whose
  mean is more than ``z`` standard errors from zero on both sides (:func:`significant_sign_changes`),
  against AR(1) surrogates of the means with the same per-point standard errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["SurrogateTest", "detrend", "fit_ar1", "ar1_surrogates", "ar1_spectrum", "spectral_statistic",
           "ar1_spectral_test", "significant_sign_changes", "sign_change_test"]

_PHI_MAX = 0.99  # |phi| clipped below 1 so that the fitted AR(1) is stationary
_MIN_LEN = 8


@dataclass(frozen=True)
class SurrogateTest:
    """Result of a surrogate test.

    statistic: the observed statistic. p_value: Monte Carlo p, (1 + #{null >= observed}) / (1 + S).
    null_mean: mean of the surrogate statistics. phi, sigma: the AR(1) fitted to the (detrended) series.
    n_surrogates: S. seed: RNG seed. detail: test-specific settings (band, z, ...).
    """

    statistic: float
    p_value: float
    null_mean: float
    phi: float
    sigma: float
    n_surrogates: int
    seed: int
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _series(x: Any, name: str = "x") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D series, got shape {a.shape}")
    if a.size < _MIN_LEN:
        raise ValueError(f"{name} must have at least {_MIN_LEN} points, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(a)).sum())} non-finite value(s)")
    return a


def _check_surrogates(n_surrogates: Any, seed: Any) -> None:
    if isinstance(n_surrogates, bool) or not isinstance(n_surrogates, (int, np.integer)) or n_surrogates < 1:
        raise ValueError(f"n_surrogates must be an int >= 1, got {n_surrogates!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


def detrend(x: Any, order: int = 1) -> np.ndarray:
    """Residuals of a least-squares polynomial (degree ``order`` in the index); ``[n]`` or per row ``[S, n]``.

    ``order=0`` removes the mean, 1 a linear trend. Returns an array of the input's shape.
    """
    a = np.asarray(x, dtype=np.float64)
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be an int >= 0, got {order!r}")
    n = a.shape[-1]
    t = np.linspace(-1.0, 1.0, n)
    basis = np.vander(t, order + 1)  # [n, order+1]
    coef, *_ = np.linalg.lstsq(basis, np.atleast_2d(a).T, rcond=None)
    res = np.atleast_2d(a) - (basis @ coef).T
    return res.reshape(a.shape)


def fit_ar1(x: Any) -> tuple[float, float]:
    """Yule-Walker AR(1) fit of a series (``[n]``) or of each row (``[S, n]``): ``(phi, sigma)``.

    phi = lag-1 autocorrelation of the demeaned series, clipped to [-0.99, 0.99]; sigma^2 = var(x)(1 - phi^2)
    (innovation variance of a stationary AR(1)). Returns floats for 1-D input, arrays ``[S]`` otherwise.
    """
    a = np.atleast_2d(np.asarray(x, dtype=np.float64))
    d = a - a.mean(axis=1, keepdims=True)
    var = (d * d).mean(axis=1)
    cov1 = (d[:, 1:] * d[:, :-1]).sum(axis=1) / a.shape[1]
    phi = np.clip(np.divide(cov1, var, out=np.zeros_like(var), where=var > 0), -_PHI_MAX, _PHI_MAX)
    sigma = np.sqrt(var * (1.0 - phi ** 2))  # stationary AR(1): var = sigma^2 / (1 - phi^2)
    if np.asarray(x).ndim == 1:
        return float(phi[0]), float(sigma[0])
    return phi, sigma  # type: ignore[return-value]


def ar1_surrogates(phi: float, sigma: float, n: int, n_surrogates: int, seed: int = 0,
                   mean: float = 0.0) -> np.ndarray:
    """``[n_surrogates, n]`` seeded AR(1) series ``x_t - mean = phi (x_{t-1} - mean) + sigma e_t``, started
    from the stationary distribution N(0, sigma^2 / (1 - phi^2))."""
    if not (np.isfinite(phi) and abs(phi) < 1):
        raise ValueError(f"phi must be finite with |phi| < 1, got {phi!r}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    _check_surrogates(n_surrogates, seed)
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n_surrogates, n)) * sigma
    out = np.empty((n_surrogates, n))
    out[:, 0] = e[:, 0] / np.sqrt(1.0 - phi ** 2)  # stationary start
    for t in range(1, n):
        out[:, t] = phi * out[:, t - 1] + e[:, t]
    return out + mean


def ar1_spectrum(phi: Any, sigma: Any, freqs: np.ndarray) -> np.ndarray:
    """AR(1) power spectral density ``sigma^2 / |1 - phi exp(-2 pi i f)|^2`` at ``freqs`` (cycles per step);
    ``[F]`` for scalar phi/sigma, ``[S, F]`` for arrays ``[S]``."""
    p = np.asarray(phi, dtype=np.float64)[..., None]
    s = np.asarray(sigma, dtype=np.float64)[..., None]
    # AR(1) spectrum (e.g. Mann & Lees 1996, eq. 2): sigma^2 / (1 - 2 phi cos(2 pi f) + phi^2)
    return s ** 2 / (1.0 - 2.0 * p * np.cos(2.0 * np.pi * freqs) + p ** 2)


def _band_mask(n: int, band: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    freqs = np.fft.rfftfreq(n)
    lo, hi = band
    mask = (freqs >= lo) & (freqs <= hi) & (freqs > 0)
    if not mask.any():
        raise ValueError(f"band {band} holds no Fourier frequency of a series of {n} points "
                         f"(resolution 1/{n} cycles/step)")
    return freqs, mask


def spectral_statistic(x: Any, band: tuple[float, float] = (0.0, 0.5), order: int = 1) -> np.ndarray:
    """Max over ``band`` of periodogram / fitted AR(1) spectrum of the detrended series (``[n]`` -> 0-d,
    ``[S, n]`` -> ``[S]``). Unitless; ~ chi^2_2 / 2 per frequency under the AR(1) null."""
    a = detrend(np.atleast_2d(np.asarray(x, dtype=np.float64)), order)
    n = a.shape[1]
    freqs, mask = _band_mask(n, band)
    phi, sigma = fit_ar1(a)
    phi, sigma = np.atleast_1d(phi), np.atleast_1d(sigma)
    # periodogram I(f) = |sum_t x_t exp(-2 pi i f t)|^2 / n (same normalisation as the spectral density)
    per = np.abs(np.fft.rfft(a, axis=1)) ** 2 / n
    ratio = per[:, mask] / np.maximum(ar1_spectrum(phi, sigma, freqs[mask]), 1e-300)
    out = ratio.max(axis=1)
    return out[0] if np.asarray(x).ndim == 1 else out


def ar1_spectral_test(x: Any, n_surrogates: int = 999, seed: int = 0, band: tuple[float, float] = (0.0, 0.5),
                      order: int = 1) -> SurrogateTest:
    """Is there more periodic power in ``band`` than red noise gives? (module docstring)

    Args:
        x: ``[n]`` series (n >= 8), e.g. a cosine over training steps.
        n_surrogates: AR(1) surrogates (parametric bootstrap; each refitted like the data).
        seed: RNG seed of the surrogates.
        band: ``(f_lo, f_hi)`` in cycles per point (0 .. 0.5); the statistic's maximum is taken over it.
        order: polynomial detrending degree (1 = linear).
    """
    a = _series(x)
    _check_surrogates(n_surrogates, seed)
    if len(band) != 2 or not 0.0 <= band[0] < band[1] <= 0.5:
        raise ValueError(f"band must be (f_lo, f_hi) with 0 <= f_lo < f_hi <= 0.5, got {band!r}")
    obs = float(spectral_statistic(a, band, order))
    phi, sigma = fit_ar1(detrend(a, order))
    null = spectral_statistic(ar1_surrogates(phi, sigma, a.size, n_surrogates, seed), band, order)
    p = (1.0 + float(np.sum(null >= obs))) / (1.0 + n_surrogates)  # Monte Carlo p with +1 correction
    return SurrogateTest(obs, p, float(np.mean(null)), phi, sigma, int(n_surrogates), int(seed),
                         {"statistic": "max periodogram / AR(1) spectrum", "band": list(band),
                          "detrend_order": order, "n": int(a.size)})


def significant_sign_changes(mean: Any, se: Any, z: float = 2.0) -> np.ndarray | int:
    """Sign changes between consecutive *significant* points (``|mean| > z se``); others are skipped.

    ``mean``, ``se``: ``[n]`` (-> int) or ``[S, n]`` (-> ``[S]`` ints); se >= 0, same shape or ``[n]``.
    """
    m = np.atleast_2d(np.asarray(mean, dtype=np.float64))
    s = np.broadcast_to(np.asarray(se, dtype=np.float64), m.shape)
    sig = np.abs(m) > z * s
    signs = np.where(sig, np.sign(m), 0.0)
    counts = np.zeros(m.shape[0], dtype=np.int64)
    for i in range(m.shape[0]):
        seq = signs[i][signs[i] != 0]
        counts[i] = int(np.sum(seq[1:] != seq[:-1])) if seq.size > 1 else 0
    return int(counts[0]) if np.asarray(mean).ndim == 1 else counts


def sign_change_test(mean: Any, se: Any, z: float = 2.0, n_surrogates: int = 999,
                     seed: int = 0) -> SurrogateTest:
    """Significant sign changes (:func:`significant_sign_changes`) against AR(1) red noise around the series'
    own mean level, with the same per-point standard errors.

    Args:
        mean: ``[n]`` per-point means (e.g. over K >= 4 fixed probe batches).
        se: ``[n]`` their standard errors (>= 0).
        z: significance multiple (2 -> |mean| > 2 SE on both sides of a counted change).
    """
    m = _series(mean, "mean")
    s = _series(se, "se")
    if s.shape != m.shape:
        raise ValueError(f"se must have the shape of mean {m.shape}, got {s.shape}")
    if np.any(s < 0):
        raise ValueError("se must be >= 0")
    if not (np.isfinite(z) and z >= 0):
        raise ValueError(f"z must be a finite number >= 0, got {z!r}")
    _check_surrogates(n_surrogates, seed)
    obs = int(significant_sign_changes(m, s, z))
    phi, sigma = fit_ar1(m)
    sur = ar1_surrogates(phi, sigma, m.size, n_surrogates, seed, mean=float(m.mean()))
    null = significant_sign_changes(sur, s, z)
    p = (1.0 + float(np.sum(null >= obs))) / (1.0 + n_surrogates)  # Monte Carlo p with +1 correction
    return SurrogateTest(float(obs), p, float(np.mean(null)), phi, sigma, int(n_surrogates), int(seed),
                         {"statistic": f"sign changes with |mean| > {z} SE on both sides", "z": float(z),
                          "n": int(m.size)})
