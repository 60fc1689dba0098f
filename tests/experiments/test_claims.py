"""Verdict rule: synthetic per-seed numbers -> the documented verdicts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.experiments.claims import CLAIMS, VERDICTS, evaluate_claims, verdict


def test_clear_decrease_holds_and_relative_change():
    v = verdict([0.5, 0.52, 0.48], [1.0, 1.02, 0.98], "decrease", paired=True)
    assert v["verdict"] == "holds"
    assert math.isclose(v["effect"], -0.5)
    assert math.isclose(v["relative_change"], -0.5)
    assert v["se"] == pytest.approx(0.0, abs=1e-12)


def test_opposite_direction_does_not_hold():
    v = verdict([1.5, 1.6, 1.55], [1.0, 1.05, 0.98], "decrease", paired=False)
    assert v["verdict"] == "does not hold"
    assert v["signed_effect"] < -2 * v["se"]


def test_within_noise_inconclusive():
    v = verdict([1.0, 2.0, 0.0], [1.1, 0.9, 1.0], "increase", paired=True)
    assert v["verdict"] == "inconclusive"
    assert abs(v["signed_effect"]) <= 2 * v["se"]


def test_single_seed_is_inconclusive_even_with_large_effect():
    v = verdict([10.0], [1.0], "increase", paired=True)
    assert v["verdict"] == "inconclusive" and "spread unknown" in v["reason"]


def test_nonfinite_values_inconclusive():
    assert verdict([1.0, float("nan")], [0.0, 0.0], "increase")["verdict"] == "inconclusive"
    assert verdict([], [0.0, 0.0], "increase")["verdict"] == "inconclusive"


def test_one_sample_against_null():
    assert verdict([0.1, 0.12, 0.11, 0.09], None, "increase")["verdict"] == "holds"
    assert verdict([-0.1, -0.12, -0.11], None, "increase")["verdict"] == "does not hold"
    v = verdict([0.3, 0.31], None, "increase", null=0.5)
    assert v["verdict"] == "does not hold" and math.isclose(v["effect"], -0.195)


def test_unpaired_welch_se():
    t, b = [1.0, 3.0], [0.0, 0.0]
    v = verdict(t, b, "increase", paired=False)
    assert math.isclose(v["se"], math.sqrt(2.0 / 2))  # var(t)=2, var(b)=0
    assert v["verdict"] == "inconclusive"  # d = 2 = 2 SE, not beyond


def test_bad_input():
    with pytest.raises(ValueError, match="direction"):
        verdict([1.0], [1.0], "up")
    with pytest.raises(ValueError, match="equal seed counts"):
        verdict([1.0, 2.0], [1.0], "increase", paired=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=8), st.floats(-3, 3), st.sampled_from(["increase",
                                                                                                "decrease"]))
def test_verdict_consistent_with_numbers(base, shift, direction):
    treat = [b + shift + 0.01 * i for i, b in enumerate(base)]
    v = verdict(treat, base, direction, paired=True)
    assert v["verdict"] in VERDICTS
    s, se = v["signed_effect"], v["se"]
    if v["verdict"] == "holds":
        assert s > 2 * se
    elif v["verdict"] == "does not hold":
        assert s < -2 * se
    elif math.isfinite(se):
        assert -2 * se <= s <= 2 * se
    # flipping the claimed direction swaps holds <-> does not hold
    w = verdict(treat, base, "decrease" if direction == "increase" else "increase", paired=True)
    swap = {"holds": "does not hold", "does not hold": "holds", "inconclusive": "inconclusive"}
    assert w["verdict"] == swap[v["verdict"]]


def test_evaluate_claims_from_summaries():
    summaries = {
        "forgetting": {"claims": {
            "forget_separation": {"treatment": [2.0, 2.1, 2.2], "baseline": [1.0, 1.1, 1.0], "paired": True},
            "forget_old_loss": {"treatment": [1.0, 1.0, 1.0], "baseline": [1.0, 1.0, 1.0], "paired": True}}},
        "pretrained": {"skipped_reason": "package absent", "claims": {}},
    }
    rows = {r["id"]: r for r in evaluate_claims(summaries)}
    assert set(rows) == {c.id for c in CLAIMS}
    assert rows["forget_separation"]["verdict"] == "holds"
    assert rows["forget_old_loss"]["verdict"] == "inconclusive"
    assert rows["pretrained_optimality"]["verdict"] == "not run"
    assert rows["pretrained_optimality"]["reason"] == "package absent"
    assert rows["gapt_mbe"]["verdict"] == "not run"
