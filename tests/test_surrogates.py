"""AR(1) surrogate tests: calibrated on red noise, powerful against a sinusoid, significant sign changes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sstats

from infoplane.stats import ar1_spectral_test, sign_change_test, significant_sign_changes
from infoplane.stats.surrogates import ar1_surrogates, detrend, fit_ar1


def _ar1(phi: float, n: int, seed: int) -> np.ndarray:
    return ar1_surrogates(phi, 1.0, n, 1, seed)[0]


def test_fit_ar1_recovers_phi_and_sigma():
    x = ar1_surrogates(0.7, 0.5, 20000, 1, seed=3)[0]
    phi, sigma = fit_ar1(x)
    assert phi == pytest.approx(0.7, abs=0.02)
    assert sigma == pytest.approx(0.5, rel=0.03)


def test_detrend_removes_a_line_exactly():
    t = np.arange(50.0)
    assert np.allclose(detrend(3.0 + 0.2 * t), 0.0, atol=1e-10)
    rows = np.stack([t, -2 * t + 1])
    assert np.allclose(detrend(rows), 0.0, atol=1e-10)


def test_spectral_p_is_uniform_on_ar1_noise():
    ps = np.array([ar1_spectral_test(_ar1(0.6, 128, 1000 + i) + 0.01 * np.arange(128), n_surrogates=199,
                                     seed=i).p_value for i in range(200)])
    # calibration: the null p-values are ~ uniform (KS), and the 5 % rejection rate within a binomial bound
    assert sstats.kstest(ps, "uniform").pvalue > 0.001
    rejections = int(np.sum(ps <= 0.05))
    assert rejections <= sstats.binom.ppf(0.999, 200, 0.05)
    assert rejections >= 1  # not a test that never rejects


def test_spectral_p_is_small_with_an_added_sinusoid():
    n = 256
    t = np.arange(n)
    for seed in range(5):
        x = _ar1(0.6, n, seed) + 1.5 * np.sin(2 * np.pi * t / 16)
        res = ar1_spectral_test(x, n_surrogates=499, seed=seed)
        assert res.p_value <= 0.01, (seed, res)
    # p is bounded below by the +1 correction
    assert res.p_value >= 1 / 500


def test_significant_sign_changes_skips_insignificant_points():
    mean = np.array([1.0, 0.1, -1.0, -1.0, 0.05, 1.0, 1.0, -0.1])
    se = np.full(8, 0.2)
    # significant signs: + . - - . + + .  -> changes + -> - -> + = 2
    assert significant_sign_changes(mean, se) == 2
    assert significant_sign_changes(mean, np.full(8, 10.0)) == 0
    assert list(significant_sign_changes(np.stack([mean, -mean]), se)) == [2, 2]


def test_sign_change_test_is_calibrated_on_red_noise_and_ignores_a_negative_level():
    n = 100
    se = np.full(n, 0.1)
    ps = np.array([sign_change_test(_ar1(0.8, n, 500 + i) * 0.5, se, n_surrogates=199, seed=i).p_value
                   for i in range(100)])
    # a discrete statistic: the Monte Carlo p is at worst conservative, never liberal
    assert int(np.sum(ps <= 0.05)) <= sstats.binom.ppf(0.999, 100, 0.05)
    rng = np.random.default_rng(1)
    neg = -0.3 + 0.05 * rng.standard_normal(n)  # negative nearly all the time (the cosine)
    res = sign_change_test(neg, np.full(n, 0.05), n_surrogates=499, seed=0)
    assert res.statistic == 0 and res.p_value == 1.0


def test_sign_change_test_counts_cycles_against_a_matched_null():
    n = 120
    t = np.arange(n)
    res = sign_change_test(np.sin(2 * np.pi * t / 20), np.full(n, 0.05), n_surrogates=499, seed=0)
    assert res.statistic == 11
    assert res.phi == pytest.approx(np.cos(2 * np.pi / 20), abs=0.01)  # red noise with the same lag-1 memory
    assert 0 < res.null_mean < 20


def test_validation_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 8"):
        ar1_spectral_test(np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        ar1_spectral_test(np.r_[np.zeros(10), np.nan])
    with pytest.raises(ValueError, match="band"):
        ar1_spectral_test(np.random.default_rng(0).standard_normal(20), band=(0.3, 0.2))
    with pytest.raises(ValueError, match="shape of mean"):
        sign_change_test(np.ones(10), np.ones(9))
    with pytest.raises(ValueError, match="n_surrogates"):
        sign_change_test(np.ones(10), np.ones(10), n_surrogates=0)
