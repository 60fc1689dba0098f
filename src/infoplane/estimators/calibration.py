"""Temperature calibration for the soft (von Mises-Fisher) bin assignment.

The soft estimator assigns a unit vector ``z`` to reference point ``w_j`` with weight
``softmax_j(<z, w_j> / eps)``. The temperature ``eps`` is chosen so that the von Mises-Fisher
kernel ``vMF(mu, kappa = 1/eps)`` carries ``log m`` nats of information relative to the uniform
distribution on the sphere S^{d-1}:

    KL(vMF(mu, 1/eps) || Uniform(S^{d-1})) = log m            (soft-entropy, temp_calibration.py)

Three methods are offered (``method=``):

``"exact"`` (default)
    Solves the exact equation for every ``d >= 2``. With ``nu = d/2 - 1`` and ``kappa = 1/eps``
    ``KL = kappa * A_nu(kappa) - log Z_d``, ``A_nu = I_{nu+1}/I_nu`` (Amos ratio) and
    ``log Z_d = nu * log(2/kappa) + lnGamma(d/2) + log I_nu(kappa)``. ``log I_nu`` is evaluated with
    the exponentially scaled ``scipy.special.ive`` for ``nu < 50`` and with Debye's uniform asymptotic
    expansion (12 terms, error far below 1e-15 for ``nu >= 50``) otherwise, so it neither under- nor
    overflows at ``d`` in the thousands (where plain Bessel evaluation does).
``"bounds"``
    The reference implementation's ``find_eps`` (soft-entropy 0.1.5): Brent's method on the Amos lower
    envelope of the KL. It is conservative (eps smaller than exact) and badly so for ``d < 64``; kept for
    parity. Needs ``d > 2``.
``"leading_order"``
    ``eps = 1 / sqrt(2 d log m)``, the large-``d`` limit where ``KL ~ kappa^2 / (2 d)``.

All results are cached per ``(n_bins, dim, method)``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaln, ive

from .validation import check_dim, check_n_bins

__all__ = [
    "calibrate_temperature",
    "kl_vmf_uniform",
    "kl_vmf_uniform_lower_bound",
    "log_bessel_iv",
    "CALIBRATION_METHODS",
]

CALIBRATION_METHODS = ("exact", "bounds", "leading_order")

# Orders at or above this use the Debye expansion; below it scipy's ive is accurate and in range.
_NU_DEBYE = 50.0
_N_DEBYE_TERMS = 12
_N_HANKEL_TERMS = 12


def _debye_polynomials(n_terms: int) -> list[np.ndarray]:
    """Coefficients (ascending powers of p) of Debye's polynomials u_0..u_{n-1}.

    Recurrence (Abramowitz & Stegun 9.3.10):
    u_{k+1}(p) = p^2 (1 - p^2) u_k'(p) / 2 + (1/8) int_0^p (1 - 5 t^2) u_k(t) dt.
    Exact rational arithmetic, converted to float at the end.
    """
    polys: list[list[Fraction]] = [[Fraction(1)]]
    for _ in range(n_terms - 1):
        u = polys[-1]
        nxt = [Fraction(0)] * (len(u) + 3)
        # p^2 (1 - p^2) u'(p) / 2
        for i in range(1, len(u)):
            c = u[i] * i / 2
            nxt[i + 1] += c
            nxt[i + 3] -= c
        # (1/8) int_0^p (1 - 5 t^2) u(t) dt
        for i, c in enumerate(u):
            nxt[i + 1] += c / 8 / (i + 1)
            nxt[i + 3] -= 5 * c / 8 / (i + 3)
        while len(nxt) > 1 and nxt[-1] == 0:
            nxt.pop()
        polys.append(nxt)
    return [np.array([float(c) for c in u]) for u in polys]


_DEBYE_U = _debye_polynomials(_N_DEBYE_TERMS)


def _log_ive_debye(nu: float, x: float) -> float:
    """log(I_nu(x) e^{-x}) by Debye's uniform asymptotic expansion (A&S 9.7.7), for large nu.

    With z = x/nu: I_nu(nu z) ~ e^{nu eta} / sqrt(2 pi nu) / (1+z^2)^{1/4} * sum_k u_k(p) / nu^k,
    p = (1+z^2)^{-1/2}, eta = sqrt(1+z^2) + log(z / (1 + sqrt(1+z^2))). The exponent minus x is written
    as nu / (sqrt(1+z^2) + z) + nu log(z / (1 + sqrt(1+z^2))) to avoid cancellation.
    """
    z = x / nu
    sq = math.sqrt(1.0 + z * z)
    p = 1.0 / sq
    series = 0.0
    for k, u in enumerate(_DEBYE_U):
        series += float(np.polynomial.polynomial.polyval(p, u)) / nu**k
    expo = nu / (sq + z) + nu * (math.log(z) - math.log1p(sq))
    return expo - 0.5 * math.log(2.0 * math.pi * nu) - 0.5 * math.log(sq) + math.log(series)


def _hankel_terms(nu: float, x: float) -> list[float]:
    """Terms of the large-x Hankel expansion I_nu(x) ~ e^x / sqrt(2 pi x) sum_k t_k (A&S 9.7.1)."""
    mu = 4.0 * nu * nu
    terms = [1.0]
    for k in range(1, _N_HANKEL_TERMS):
        terms.append(-terms[-1] * (mu - (2 * k - 1) ** 2) / (8.0 * k * x))
    return terms


def _use_hankel(nu: float, x: float) -> bool:
    return x >= 1000.0 * (1.0 + nu * nu)


def _log_ive(nu: float, x: float) -> float:
    """log(I_nu(x) e^{-x}) for nu >= 0, x > 0, without under/overflow."""
    if _use_hankel(nu, x):
        return -0.5 * math.log(2.0 * math.pi * x) + math.log(sum(_hankel_terms(nu, x)))
    if nu < _NU_DEBYE:
        v = float(ive(nu, x))
        if v > 0.0 and math.isfinite(v):
            return math.log(v)
        # ive underflows only for x << nu: leading term of the power series (A&S 9.6.10)
        return nu * math.log(x / 2.0) - float(gammaln(nu + 1.0)) - x
    return _log_ive_debye(nu, x)


def log_bessel_iv(nu: float, x: float) -> float:
    """Natural log of the modified Bessel function I_nu(x), ``nu >= 0``, ``x > 0``, stable for any size.

    scipy's ``ive`` for ``nu < 50``, Debye's uniform expansion for ``nu >= 50``, Hankel's large-argument
    expansion for ``x >= 1000 (1 + nu^2)``.
    """
    if not x > 0:
        raise ValueError(f"log_bessel_iv needs x > 0, got {x}")
    if nu < 0:
        raise ValueError(f"log_bessel_iv needs nu >= 0, got {nu}")
    return _log_ive(nu, x) + x


def _x_times_amos_minus_one(nu: float, x: float) -> float:
    """x * (A_nu(x) - 1) with A_nu = I_{nu+1}/I_nu, free of cancellation (large x: Hankel differences)."""
    if _use_hankel(nu, x):
        t0, t1 = _hankel_terms(nu, x), _hankel_terms(nu + 1.0, x)
        diff = sum(b - a for a, b in zip(t0[1:], t1[1:]))  # S_{nu+1} - S_nu, the k >= 1 terms only
        return x * diff / sum(t0)
    return x * math.expm1(_log_ive(nu + 1.0, x) - _log_ive(nu, x))


def kl_vmf_uniform(kappa: float, dim: int) -> float:
    """KL(vMF(mu, kappa) || Uniform(S^{dim-1})) in nats (uniform *probability* measure).

    KL = kappa A_nu(kappa) - [nu log(2/kappa) + lnGamma(d/2) + log I_nu(kappa)]
    (soft-entropy, temp_calibration.py, KL_exact),
    evaluated as kappa (A_nu - 1) - nu log(2/kappa) - lnGamma(d/2) - log(I_nu(kappa) e^{-kappa}).
    """
    nu = dim / 2.0 - 1.0
    return (
        _x_times_amos_minus_one(nu, kappa)
        - nu * math.log(2.0 / kappa)
        - float(gammaln(dim / 2.0))
        - _log_ive(nu, kappa)
    )


def kl_vmf_uniform_lower_bound(eps: float, dim: int) -> float:
    """Amos-bound lower envelope of the KL used by soft-entropy's ``find_eps`` (needs dim > 2).

    KL_lower = G_{d/2,d/2}(kappa)/eps - Phi^+(eps)   (soft-entropy, temp_calibration.py;
    G_{a,b}(k) = k/(a + sqrt(k^2+b^2)), Phi^+ = sqrt(k^2+nu^2) - nu + nu log((d-2)/(nu + sqrt(k^2+nu^2)))).
    """
    kappa = 1.0 / eps
    half = dim / 2.0
    nu = half - 1.0
    g = kappa / (half + math.sqrt(kappa * kappa + half * half))
    root = math.sqrt(kappa * kappa + nu * nu)
    phi_plus = root - nu + nu * math.log((dim - 2.0) / (nu + root))
    return g / eps - phi_plus


def _solve_increasing(fn, target: float, u0: float) -> float:
    """Root of fn(u) = target for fn increasing in u; bracket grown geometrically around u0."""
    lo, hi = u0 - 1.0, u0 + 1.0
    for _ in range(200):
        if fn(lo) < target:
            break
        lo -= 2.0
    else:  # pragma: no cover - KL -> 0 as kappa -> 0, so this cannot happen for target > 0
        raise RuntimeError("could not bracket the temperature from below")
    for _ in range(200):
        if fn(hi) > target:
            break
        hi += 2.0
    else:  # pragma: no cover
        raise RuntimeError("could not bracket the temperature from above")
    return brentq(lambda u: fn(u) - target, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=500)


@lru_cache(maxsize=256)
def calibrate_temperature(n_bins: int, dim: int, method: str = "exact") -> float:
    """Temperature ``eps`` such that ``KL(vMF(1/eps) || U(S^{dim-1})) = log(n_bins)``.

    Args:
        n_bins: number of reference points ``m`` (>= 2).
        dim: ambient dimension ``d`` of the representations (>= 2; ``method="bounds"`` needs > 2).
        method: ``"exact"`` | ``"bounds"`` | ``"leading_order"`` (see module docstring).

    Returns:
        eps (dimensionless; logits are cosine / eps).
    """
    n_bins = check_n_bins(n_bins)
    dim = check_dim(dim)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    target = math.log(n_bins)
    if method == "leading_order":
        return 1.0 / math.sqrt(2.0 * dim * target)  # KL ~ kappa^2 / (2 d) at large d (leading order)
    u0 = 0.5 * math.log(2.0 * dim * target)  # log kappa at leading order
    if method == "exact":
        log_kappa = _solve_increasing(lambda u: kl_vmf_uniform(math.exp(u), dim), target, u0)
        return math.exp(-log_kappa)
    if dim <= 2:
        raise ValueError(f"calibration 'bounds' needs dim > 2 (Phi^+ is singular at d = 2), got dim={dim}")
    log_kappa = _solve_increasing(
        lambda u: kl_vmf_uniform_lower_bound(math.exp(-u), dim), target, u0
    )
    return math.exp(-log_kappa)
