"""Temperature calibration: exact KL root checked against an independent mpmath evaluation."""

from __future__ import annotations

import math

import mpmath as mp  # noqa: E402  (dev extra: an ImportError must fail, not skip)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.estimators import calibrate_temperature
from infoplane.estimators.calibration import kl_vmf_uniform, kl_vmf_uniform_lower_bound, log_bessel_iv


def _kl_mpmath(eps: float, d: int, dps: int = 50) -> float:
    """Independent oracle: KL(vMF(1/eps) || U(S^{d-1})) with mpmath Bessel functions at 50 digits."""
    with mp.workdps(dps):
        k = 1 / mp.mpf(eps)
        nu = mp.mpf(d) / 2 - 1
        i_nu = mp.besseli(nu, k)
        a = mp.besseli(nu + 1, k) / i_nu
        log_z = nu * mp.log(2 / k) + mp.loggamma(mp.mpf(d) / 2) + mp.log(i_nu)
        return float(k * a - log_z)


@pytest.mark.parametrize("d", [2, 3, 8, 16, 64, 256, 768, 4096])
def test_exact_root_matches_mpmath(d):
    eps = calibrate_temperature(100, d)
    assert abs(_kl_mpmath(eps, d) - math.log(100)) < 1e-8


@pytest.mark.parametrize("m,d", [(2, 2), (2, 768), (1000, 3), (1000, 64), (10**6, 2), (10**6, 4096)])
def test_exact_root_other_bin_counts(m, d):
    eps = calibrate_temperature(m, d)
    assert abs(_kl_mpmath(eps, d) - math.log(m)) < 1e-8 * math.log(m)


def test_known_values_from_reference_doc():
    # exact values via mpmath (m = 100): d=3 7.36e-3, d=8 0.0481, d=16 0.0540, d=64 0.0370
    for d, eps in [(3, 7.36e-3), (8, 0.0481), (16, 0.0540), (64, 0.0370)]:
        assert calibrate_temperature(100, d) == pytest.approx(eps, rel=2e-3)


@pytest.mark.parametrize("nu", [0.0, 0.5, 3.0, 49.5, 50.0, 99.0, 383.0, 2047.0])
@pytest.mark.parametrize("x", [0.5, 7.0, 85.0, 1500.0, 3e5])
def test_log_bessel_against_mpmath(nu, x):
    with mp.workdps(40):
        ref = float(mp.log(mp.besseli(nu, x)))
    assert abs(log_bessel_iv(nu, x) - ref) <= 1e-12 * max(1.0, abs(ref))


@pytest.mark.parametrize("d", [2, 3, 8, 64, 768, 4096])
def test_kl_strictly_increasing_in_kappa(d):
    kappas = [math.exp(0.05 * i) for i in range(-40, 160)]
    kls = [kl_vmf_uniform(k, d) for k in kappas]
    assert all(b > a for a, b in zip(kls, kls[1:]))
    assert kls[0] > 0


@pytest.mark.parametrize("d", [3, 8, 16, 64, 768, 4096])
def test_bounds_is_conservative(d):
    exact = calibrate_temperature(100, d)
    bounds = calibrate_temperature(100, d, "bounds")
    assert bounds <= exact
    assert abs(kl_vmf_uniform_lower_bound(bounds, d) - math.log(100)) < 1e-9


@pytest.mark.parametrize("d", [768, 1024, 4096, 5120])
def test_leading_order_converges(d):
    ratio = calibrate_temperature(100, d, "leading_order") / calibrate_temperature(100, d)
    assert 1.0 < ratio < 1.01


def test_leading_order_formula():
    assert calibrate_temperature(50, 300, "leading_order") == pytest.approx(1 / math.sqrt(600 * math.log(50)))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 5000), d=st.integers(2, 3000))
def test_exact_solves_equation_property(m, d):
    eps = calibrate_temperature(m, d)
    assert eps > 0
    assert abs(kl_vmf_uniform(1 / eps, d) - math.log(m)) < 1e-9 * max(1.0, math.log(m))


def test_cached():
    calibrate_temperature.cache_clear()
    calibrate_temperature(100, 77)
    calibrate_temperature(100, 77)
    assert calibrate_temperature.cache_info().hits >= 1


@pytest.mark.parametrize(
    "args,match",
    [
        ((1, 10), "n_bins"),
        ((100, 1), "dim"),
        ((100, 10, "nope"), "method"),
        ((100, 2, "bounds"), "dim > 2"),
        ((100.0, 10), "n_bins"),
        ((100, 10.5), "dim"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        calibrate_temperature(*args)
