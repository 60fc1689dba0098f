"""The verdict engine: known answers, brute-force parity, Holm, preconditions, MI permutation nulls."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.stats import (
    RULE_TEXT,
    VERDICTS,
    Claim,
    Precondition,
    bootstrap_ci,
    compare_to_null,
    evaluate,
    holm,
    label_permutations,
    paired_effect,
    sign_flip_test,
)


def brute_force_p(d: list[float], alternative: str) -> float:
    """All 2^n sign patterns by itertools, same tie tolerance as the engine."""
    d = [x for x in d if x != 0.0]
    obs = sum(d)
    tol = 1e-12 * sum(abs(x) for x in d)
    hits = 0
    for signs in itertools.product((1.0, -1.0), repeat=len(d)):
        s = sum(si * di for si, di in zip(signs, d))
        if alternative == "greater":
            hits += s >= obs - tol
        elif alternative == "less":
            hits += s <= obs + tol
        else:
            hits += abs(s) >= abs(obs) - tol
    return hits / 2 ** len(d)


# ------------------------------------------------------------------------- the must-show known case


def test_three_identical_positive_differences_are_inconclusive_not_holds():
    # SE = 0: the old "effect beyond 2 SE" rule said "holds"; 3 seeds cannot reach p < 0.125
    res = sign_flip_test([0.7, 0.7, 0.7], alternative="greater")
    assert res.p_value == 0.125 and res.exact and res.min_p == 0.125 and res.n_nonzero == 3
    (r,) = evaluate([Claim("c", "x up", "+10%", "increase", [1.7, 1.7, 1.7], [1.0, 1.0, 1.0])])
    assert r.effect == pytest.approx(0.7) and r.ci_low == pytest.approx(r.ci_high)  # zero-width t CI
    assert r.p_raw == 0.125 and r.p_holm == 0.125 and r.verdict == "inconclusive"
    assert "smallest attainable p" in r.reason and "0.125" in r.reason


def test_five_consistent_seeds_hold_alone_but_not_after_holm_over_four_claims():
    one = Claim("a", "up", "", "increase", [2.0, 2.1, 2.2, 2.3, 2.4], [1.0] * 5)
    (r,) = evaluate([one])
    assert r.p_raw == 1 / 32 and r.verdict == "holds"
    four = [Claim(f"c{i}", "up", "", "increase", [2.0, 2.1, 2.2, 2.3, 2.4], [1.0] * 5) for i in range(4)]
    rs = evaluate(four)
    assert [x.p_holm for x in rs] == [0.125] * 4  # 4 * 1/32, monotone
    assert {x.verdict for x in rs} == {"inconclusive"}


def test_opposite_effect_does_not_hold_and_decrease_claims_flip_direction():
    t, b = [1.0, 1.1, 0.9, 1.0, 1.2, 0.8], [2.0] * 6
    (up,) = evaluate([Claim("up", "", "", "increase", t, b)])
    (down,) = evaluate([Claim("down", "", "", "decrease", t, b)])
    assert up.verdict == "does not hold" and up.p_opposite == 1 / 64 and up.p_raw == 1.0
    assert down.verdict == "holds" and down.p_raw == 1 / 64


def test_one_sample_claim_against_null():
    (r,) = evaluate([Claim("one", "", "", "increase", [0.3, 0.5, 0.2, 0.4, 0.6, 0.1], null=0.05)])
    assert r.effect == pytest.approx(0.35 - 0.05) and r.p_raw == 1 / 64 and r.verdict == "holds"
    assert math.isnan(r.relative)


# ---------------------------------------------------------------------------------------------- Holm


def test_holm_known_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.4, 0.9]) == pytest.approx([1.0, 1.0, 1.0])  # capped at 1
    assert holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])  # ties
    out = holm([0.01, float("nan"), 0.04])  # NaN = not tested: outside the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]).size == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_properties(p):
    adj = holm(p)
    raw = np.asarray(p)
    assert np.all(adj >= raw - 1e-15) and np.all(adj <= 1.0)
    assert np.all(adj <= np.minimum(1.0, raw * len(p)) + 1e-15)  # never worse than Bonferroni
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adj[order]) >= 0)  # monotone in the raw order


# ------------------------------------------------------------------------------------- preconditions


@pytest.mark.parametrize("failing", ["loss_saturated", "id_exact_match_floor", "mi_above_null"])
def test_each_declared_precondition_failing_gives_not_testable_with_its_name(failing):
    names = ["loss_saturated", "id_exact_match_floor", "mi_above_null"]
    pre = [Precondition(n, n != failing, f"detail of {n}") for n in names]
    strong = Claim("c", "", "", "increase", [5.0] * 8, [1.0] * 8, preconditions=pre)
    (r,) = evaluate([strong])
    assert r.verdict == "not testable at this scale" and r.failed == (failing,)
    assert failing in r.reason and f"detail of {failing}" in r.reason
    assert all(n not in r.reason for n in names if n != failing)
    assert math.isnan(r.p_raw) and math.isnan(r.p_holm) and r.test == "not run"


def test_min_seeds_and_finite_values_are_preconditions():
    (r,) = evaluate([Claim("few", "", "", "increase", [3.0, 3.0, 3.0], [1.0] * 3, tier="full", min_seeds=8)])
    assert r.verdict == VERDICTS[3] and r.failed == ("min_seeds",)
    assert "3 replicate(s); tier full needs >= 8" in r.reason
    (r,) = evaluate([Claim("nan", "", "", "increase", [1.0, float("nan"), 2.0], [0.0] * 3)])
    assert r.verdict == VERDICTS[3] and r.failed == ("finite_values",) and "1 of 3" in r.reason
    (r,) = evaluate([Claim("both", "", "", "increase", [float("inf")], [0.0], min_seeds=2,
                           preconditions=[Precondition("saturated", False)])])
    assert r.failed == ("min_seeds", "finite_values", "saturated")


def test_untestable_claims_stay_out_of_the_holm_family():
    ok = Claim("ok", "", "", "increase", [2.0 + 0.1 * i for i in range(6)], [1.0] * 6)
    bad = Claim("bad", "", "", "increase", [2.0] * 6, [1.0] * 6, preconditions=[Precondition("p", False)])
    r_ok, r_bad = evaluate([ok, bad])
    assert r_ok.p_holm == r_ok.p_raw == 1 / 64 and r_ok.verdict == "holds"
    assert r_bad.verdict == VERDICTS[3] and r_bad.effect == pytest.approx(1.0)  # effect still shown


# ------------------------------------------------------------------------------------- sign-flip test


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=9),
       st.sampled_from(["greater", "less", "two-sided"]))
def test_sign_flip_matches_brute_force_on_integers(d, alternative):
    d = [float(x) for x in d]
    assert sign_flip_test(d, alternative=alternative).p_value == pytest.approx(brute_force_p(d, alternative))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False, allow_subnormal=False), min_size=1, max_size=8),
       st.sampled_from(["greater", "less", "two-sided"]))
def test_sign_flip_matches_brute_force_on_floats(d, alternative):
    d = [x if abs(x) > 1e-6 else 0.0 for x in d]
    assert sign_flip_test(d, alternative=alternative).p_value == pytest.approx(brute_force_p(d, alternative))


def test_zero_differences_are_honest():
    assert sign_flip_test([0.0, 0.0, 0.0]).p_value == 1.0
    for alt in ("greater", "less", "two-sided"):
        assert sign_flip_test([1.0, 2.0, 0.0, 0.0], alternative=alt).p_value == \
            sign_flip_test([1.0, 2.0], alternative=alt).p_value
    r = sign_flip_test([1.0, 2.0, 0.0, 0.0])
    assert r.n == 4 and r.n_nonzero == 2 and r.min_p == 0.25
    (c,) = evaluate([Claim("z", "", "", "increase", [1.0] * 4, [1.0] * 4)])
    assert c.verdict == "inconclusive" and c.p_raw == 1.0 and c.p_opposite == 1.0


def test_monte_carlo_p_is_close_to_exact_at_n12_and_seeded():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, size=12)
    exact = sign_flip_test(d, alternative="greater")
    b = 200_000
    mc = sign_flip_test(d, alternative="greater", exact_max_n=0, n_resamples=b, seed=1)
    assert exact.exact and not mc.exact and mc.n_resamples == b
    assert abs(mc.p_value - exact.p_value) < 4 * math.sqrt(exact.p_value * (1 - exact.p_value) / b) + 1 / b
    again = sign_flip_test(d, alternative="greater", exact_max_n=0, n_resamples=b, seed=1)
    assert mc.p_value == again.p_value
    tiny = sign_flip_test([5.0] * 40, n_resamples=1000)  # n > 16: Monte Carlo, never 0
    assert not tiny.exact and tiny.p_value == pytest.approx(1 / 1001)
    assert tiny.min_p == pytest.approx(1 / 1001)


def test_evaluate_is_independent_of_claim_order():
    rng = np.random.default_rng(0)
    cs = [Claim(f"c{i}", "", "", "increase", rng.normal(0.3, 1, 20).tolist(), [0.0] * 20) for i in range(3)]
    a = {r.id: r.to_dict() for r in evaluate(cs, n_resamples=5000)}
    b = {r.id: r.to_dict() for r in evaluate(cs[::-1], n_resamples=5000)}
    assert a == b and all("Monte Carlo" in r["test"] for r in a.values())


# --------------------------------------------------------------------------------------- effect sizes


def test_t_interval_matches_scipy():
    t = np.array([3.1, 2.7, 3.6, 2.9, 3.3])
    b = np.array([2.5, 2.6, 2.9, 2.8, 2.4])
    e = paired_effect(t, b, confidence=0.9)
    d = t - b
    lo, hi = scipy.stats.t.interval(0.9, len(d) - 1, loc=d.mean(), scale=scipy.stats.sem(d))
    assert (e.ci_low, e.ci_high) == pytest.approx((lo, hi), rel=1e-12)
    assert e.df == 4 and e.se == pytest.approx(scipy.stats.sem(d))
    assert math.isnan(paired_effect([1.0], [0.0]).ci_low)


def test_relative_effect_delta_method():
    t = np.array([3.1, 2.7, 3.6, 2.9, 3.3, 3.0])
    b = np.array([2.5, 2.6, 2.9, 2.8, 2.4, 2.7])
    e = paired_effect(t, b)
    n, mt, mb = len(t), t.mean(), b.mean()
    c = np.cov(t, b, ddof=1)
    # first-order Taylor expansion of mean(T)/mean(B), written out with the covariance matrix
    var = (c[0, 0] / mb ** 2 - 2 * mt * c[0, 1] / mb ** 3 + mt ** 2 * c[1, 1] / mb ** 4) / n
    half = scipy.stats.t.ppf(0.975, n - 1) * math.sqrt(var)
    assert e.relative == pytest.approx(mt / mb - 1)
    assert (e.relative_ci_low, e.relative_ci_high) == pytest.approx((mt / mb - 1 - half, mt / mb - 1 + half))
    exact = paired_effect(1.1 * b, b)  # constant ratio: zero-width interval at +10%
    assert exact.relative_ci_low == pytest.approx(0.1) and exact.relative_ci_high == pytest.approx(0.1)
    assert math.isnan(paired_effect([1.0, 2.0], [1.0, -1.0]).relative)  # zero baseline mean


def test_bootstrap_ci_for_a_correlation_and_a_slope():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = 0.6 * x + rng.normal(scale=0.8, size=60)
    corr = bootstrap_ci((x, y), lambda a, b: np.corrcoef(a, b)[0, 1], n_resamples=2000, seed=4)
    assert corr.estimate == pytest.approx(np.corrcoef(x, y)[0, 1]) and corr.method == "BCa"
    assert corr.ci_low < corr.estimate < corr.ci_high and corr.ci_low > 0.2
    again = bootstrap_ci((x, y), lambda a, b: np.corrcoef(a, b)[0, 1], n_resamples=2000, seed=4)
    assert (again.ci_low, again.ci_high) == (corr.ci_low, corr.ci_high)
    slope = bootstrap_ci((x, y), lambda a, b: scipy.stats.linregress(a, b).slope, n_resamples=1000, seed=0)
    assert slope.ci_low < 0.6 < slope.ci_high


def test_bootstrap_of_a_mean_agrees_with_t_and_falls_back_when_degenerate():
    x = np.random.default_rng(1).normal(size=300)
    boot = bootstrap_ci((x,), np.mean, n_resamples=4000, seed=0)
    e = paired_effect(x)
    assert boot.ci_low == pytest.approx(e.ci_low, abs=0.03)
    assert boot.ci_high == pytest.approx(e.ci_high, abs=0.03)
    const = bootstrap_ci((np.ones(10),), np.mean, n_resamples=200)
    assert const.method == "percentile" and const.ci_low == const.ci_high == 1.0


# ---------------------------------------------------------------------------------------- validation


def test_validation_messages():
    with pytest.raises(ValueError, match="direction must be 'increase' or 'decrease', got 'up'"):
        Claim("a", "", "", "up", [1.0])
    with pytest.raises(ValueError, match="3 treatment and 2 baseline"):
        Claim("a", "", "", "increase", [1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 seeds for 3 values"):
        Claim("a", "", "", "increase", [1.0, 2.0, 3.0], seeds=[0, 1])
    with pytest.raises(ValueError, match="duplicates"):
        evaluate([Claim("a", "", "", "increase", [1.0]), Claim("a", "", "", "increase", [1.0])])
    with pytest.raises(ValueError, match="alternative must be one of"):
        sign_flip_test([1.0], alternative="bigger")
    with pytest.raises(ValueError, match="finite"):
        sign_flip_test([1.0, float("nan")])
    with pytest.raises(ValueError, match="passed must be a bool"):
        Precondition("x", "yes")  # type: ignore[arg-type]


def test_to_dict_is_strict_json_and_rule_text_names_the_verdicts():
    rs = evaluate([Claim("a", "d", "+5%", "increase", [1.0, 2.0, 3.0], [0.5, 1.0, 1.0], seeds=[0, 1, 2]),
                   Claim("b", "d", "", "decrease", [1.0], preconditions=[Precondition("p", False, "why")])])
    text = json.dumps([r.to_dict() for r in rs], allow_nan=False)
    back = json.loads(text)
    assert back[0]["seeds"] == [0, 1, 2] and back[1]["p_raw"] is None
    assert back[1]["preconditions"][-1] == {"name": "p", "passed": False, "detail": "why"}
    for word in ("holds", "does not hold", "inconclusive", "not testable at this scale", "Holm", "2^-n"):
        assert word in RULE_TEXT


# ------------------------------------------------------------------------------ MI permutation nulls


def test_label_permutations_keep_what_they_should():
    groups = np.repeat(np.arange(6), [3, 1, 4, 2, 5, 3])
    text_label = np.array([0, 1, 1, 2, 0, 2])
    labels = text_label[groups]
    for perm in label_permutations(labels, groups=groups, n_permutations=20, seed=0):
        per_text = [set(perm[groups == g].tolist()) for g in range(6)]
        assert all(len(s) == 1 for s in per_text)  # one shared label per text
        assert sorted(s.pop() for s in per_text) == sorted(text_label.tolist())
    perms = list(label_permutations(labels, n_permutations=20, seed=0))
    assert all(sorted(p.tolist()) == sorted(labels.tolist()) for p in perms)
    assert any(len(set(p[groups == 2].tolist())) > 1 for p in perms)  # position shuffle breaks texts
    with pytest.raises(ValueError, match="constant within a text; text 0"):
        next(label_permutations(np.array([0, 1, 1]), groups=np.array([0, 0, 1])))
    with pytest.raises(ValueError, match="integer"):
        next(label_permutations(np.array([0.5, 1.0])))


def test_per_text_null_is_stricter_than_per_position_null_when_states_cluster_by_text():
    import torch

    from infoplane.estimators import soft_mutual_information

    rng = np.random.default_rng(0)
    n_texts, per_text, dim = 40, 10, 16
    groups = np.repeat(np.arange(n_texts), per_text)
    centers = rng.normal(size=(n_texts, dim))
    z = torch.tensor(centers[groups] + 0.05 * rng.normal(size=(n_texts * per_text, dim)))
    # per-text labels drawn independently of the texts' content: no real dependence on Z
    labels = rng.integers(0, 4, size=n_texts)[groups]

    def mi(lab: np.ndarray) -> float:
        return float(soft_mutual_information(z, torch.as_tensor(lab), n_bins=100, seed=0))

    observed = mi(labels)
    by_pos = compare_to_null(observed, [mi(p) for p in label_permutations(labels, n_permutations=30, seed=1)])
    by_text = compare_to_null(observed, [mi(p) for p in label_permutations(labels, groups=groups,
                                                                           n_permutations=30, seed=1)])
    # the position shuffle breaks the text clustering: the null is far too low and flags a fake effect
    assert by_pos.p_value == pytest.approx(1 / 31) and by_pos.excess > 10 * by_pos.null_sd
    # the across-text shuffle keeps it: the observed MI is an ordinary draw of that null
    assert by_text.null_mean > by_pos.null_mean + 5 * by_pos.null_sd
    assert by_text.p_value > 0.05 and abs(by_text.excess) < 3 * by_text.null_sd


def test_stats_imports_nothing_else_from_infoplane():
    # architecture: stats is pure numpy/scipy math, usable from experiments and report alike
    import pathlib
    import re

    import infoplane.stats

    files = list(pathlib.Path(infoplane.stats.__file__).parent.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        text = path.read_text()
        assert not re.findall(r"^\s*(?:from|import)\s+infoplane\b", text, flags=re.M), path.name
        assert not re.search(r"^\s*from\s+\.\.", text, flags=re.M), path.name
        assert not re.search(r"^\s*import\s+torch|^\s*from\s+torch", text, flags=re.M), path.name


def test_a_claim_without_values_is_not_testable():
    (r,) = evaluate([Claim("empty", "", "", "increase", [], [])])
    assert r.verdict == VERDICTS[3] and r.failed == ("min_seeds",) and r.n == 0 and r.effect is not None
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["effect"] is None
