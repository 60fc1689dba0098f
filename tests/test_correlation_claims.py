"""Cross-model (correlation) claims in the verdict engine: known answers against scipy and the partial
correlation formula, the permutation test's calibration, and verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from infoplane.experiments.claims import ClaimSpec, evaluate_claims
from infoplane.stats import Claim, Precondition, evaluate
from infoplane.stats.correlation import correlation_test


def _data(n: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=n)
    return x, y


def test_r_and_interval_match_scipy_pearson() -> None:
    x, y = _data(40, 0.5, 0)
    ct = correlation_test(x, y, n_resamples=2000, seed=0)
    ref = sps.pearsonr(x, y)
    assert ct.r == pytest.approx(ref.statistic, abs=1e-12)
    ci = ref.confidence_interval(0.95)  # scipy's Fisher-z interval
    assert (ct.ci_low, ct.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    # permutation p (one-sided) agrees with the t-based p to Monte Carlo accuracy
    t_one_sided = sps.pearsonr(x, y, alternative="greater").pvalue
    assert ct.p_greater == pytest.approx(t_one_sided, abs=0.01)


def test_partial_r_matches_the_closed_form_with_one_covariate() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=60)
    x = z + rng.normal(size=60)
    y = 0.8 * z + 0.3 * x + rng.normal(size=60)
    rxy, rxz, ryz = (sps.pearsonr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    expected = (rxy - rxz * ryz) / math.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
    ct = correlation_test(x, y, [z], n_resamples=100, seed=0)
    assert ct.r == pytest.approx(expected, abs=1e-12)
    assert ct.k == 1


def test_permutation_p_is_roughly_uniform_under_independence() -> None:
    ps = [correlation_test(*_data(20, 0.0, s), n_resamples=400, seed=s).p_greater for s in range(200)]
    frac = np.mean(np.asarray(ps) < 0.1)
    assert 0.04 < frac < 0.18  # binomial(200, 0.1): mean 0.10, sd 0.021


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="one value per replicate"):
        correlation_test([1, 2, 3, 4, 5], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="constant"):
        correlation_test([1, 2, 3, 4, 5], [2, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="non-finite"):
        correlation_test([1, 2, 3, 4, float("nan")], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="needs >= 5 pairs"):
        correlation_test([1, 2, 3, 4], [1, 3, 2, 4], [[1, 2, 3, 5]])


def _claim(x, y, direction: str = "increase", **kw) -> Claim:
    return Claim(id=kw.pop("id", "c"), description="d", paper_value="r = 0.5", direction=direction,
                 treatment=x, baseline=y, kind="correlation", min_seeds=kw.pop("min_seeds", 8), **kw)


def test_verdicts_of_correlation_claims() -> None:
    x, y = _data(40, 0.7, 2)
    xn, yn = _data(40, 0.0, 3)
    res = {r.id: r for r in evaluate([_claim(x, y, id="pos"), _claim(x, y, "decrease", id="neg"),
                                      _claim(xn, yn, id="noise")], n_resamples=5000)}
    assert res["pos"].verdict == "holds" and res["pos"].effect == pytest.approx(sps.pearsonr(x, y).statistic)
    assert res["neg"].verdict == "does not hold"
    assert res["noise"].verdict == "inconclusive"
    assert res["pos"].kind == "correlation" and "permutation" in res["pos"].test
    assert res["pos"].min_p == pytest.approx(1 / 5001)


def test_correlation_claim_preconditions() -> None:
    x, y = _data(6, 0.9, 4)
    few = evaluate([_claim(x, y, min_seeds=40)])[0]
    assert few.verdict == "not testable at this scale" and "min_seeds" in few.failed
    flat = evaluate([_claim(x, np.ones(6), min_seeds=3)])[0]
    assert flat.verdict == "not testable at this scale" and "correlation_defined" in flat.failed
    declared = evaluate([_claim(x, y, min_seeds=3, preconditions=[Precondition("spread", False, "x")])])[0]
    assert declared.verdict == "not testable at this scale" and math.isfinite(declared.effect)
    with pytest.raises(ValueError, match="needs baseline"):
        Claim(id="c", description="d", paper_value="", direction="increase", treatment=[1, 2],
              kind="correlation")
    with pytest.raises(ValueError, match="kind must be"):
        Claim(id="c", description="d", paper_value="", direction="increase", treatment=[1, 2], kind="x")


def test_evaluate_claims_passes_declared_covariates() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=30)
    x = z + 0.1 * rng.normal(size=30)
    y = z + 0.1 * rng.normal(size=30)  # x and y agree only through z
    spec = ClaimSpec("p", "exp", "paper", "s", "m", "increase", "-", kind="correlation", covariates=("z",))
    raw = ClaimSpec("r", "exp", "paper", "s", "m", "increase", "-", kind="correlation")
    summ = {"exp": {"claims": {"p": {"treatment": list(x), "baseline": list(y), "covariates": {"z": list(z)}},
                               "r": {"treatment": list(x), "baseline": list(y)}}}}
    rows = {r["id"]: r for r in evaluate_claims(summ, [spec, raw], tier="demo")}
    assert rows["r"]["effect"] > 0.9 and rows["r"]["verdict"] == "holds"
    assert abs(rows["p"]["effect"]) < 0.5  # partialling z out removes the shared part
    summ["exp"]["claims"]["p"].pop("covariates")
    with pytest.raises(ValueError, match="declared covariate"):
        evaluate_claims(summ, [spec], tier="demo")


def test_inconclusive_reason_states_when_the_family_is_too_large_for_the_replicates() -> None:
    # 20 unanimous 8-seed claims: raw p = 2^-8 each, Holm multiplies by up to 20 -> 0.078 > 0.05
    claims = [Claim(id=f"c{i}", description="d", paper_value="", direction="increase",
                    treatment=[1.0 + 0.01 * k for k in range(8)], baseline=[0.0] * 8, min_seeds=8)
              for i in range(20)]
    res = evaluate(claims)
    assert all(r.verdict == "inconclusive" for r in res)
    assert all("cannot reach 0.05 in this family" in r.reason for r in res)
    few = evaluate(claims[:5])  # 5 x 2^-8 = 0.02: the same effects hold in a small family
    assert all(r.verdict == "holds" for r in few) and all("cannot reach" not in r.reason for r in few)
