"""Claims: measurements recorded by experiments become verdicts through the verdict engine."""

from __future__ import annotations

import pytest

from infoplane.experiments.claims import CLAIMS, MIN_SEEDS, evaluate_claims
from infoplane.stats import VERDICTS


def _meas(t, b=None, **kw):
    return {"treatment": t, "baseline": b, "seeds": list(range(len(t))), **kw}


def test_every_claim_gets_a_row_and_missing_experiments_are_not_run():
    summaries = {"pretrained": {"skipped_reason": "package absent", "claims": {}}}
    rows = {r["id"]: r for r in evaluate_claims(summaries, tier="demo")}
    assert set(rows) == {c.id for c in CLAIMS}
    assert rows["pretrained_optimality"]["verdict"] == "not run"
    assert rows["pretrained_optimality"]["reason"] == "package absent"
    assert rows["gapt_mbe"]["reason"] == "experiment not run"


def test_three_identical_seeds_are_inconclusive_not_holds():
    s = {"forgetting": {"claims": {"forget_separation": _meas([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])}}}
    r = {x["id"]: x for x in evaluate_claims(s, tier="demo")}["forget_separation"]
    assert r["verdict"] == "inconclusive" and r["p_raw"] == 0.125 and r["min_p"] == 0.125
    assert r["effect"] == 1.0 and r["n"] == 3


def test_eight_seeds_hold_with_holm_across_the_report():
    base = [1.0, 1.1, 0.9, 1.2, 1.0, 0.95, 1.05, 1.1]
    s = {"forgetting": {"claims": {
        "forget_separation": _meas([b + 1.0 for b in base], base),
        "forget_old_loss": _meas([b + 0.01 * (-1) ** i for i, b in enumerate(base)], base)}},
         "lm_gapt": {"claims": {"gapt_ce": _meas([b + 0.5 for b in base], base)}}}
    rows = {x["id"]: x for x in evaluate_claims(s, tier="full")}
    assert rows["forget_separation"]["verdict"] == "holds"
    assert rows["forget_separation"]["p_raw"] == pytest.approx(1 / 256)
    assert rows["forget_separation"]["p_holm"] == pytest.approx(3 / 256)  # three claims tested
    assert rows["gapt_ce"]["verdict"] == "does not hold"  # CE rose: significant against the claim
    assert rows["forget_old_loss"]["verdict"] == "inconclusive"
    assert all(r["verdict"] in (*VERDICTS, "not run") for r in rows.values())


def test_failed_precondition_and_too_few_seeds_are_not_testable_and_named():
    pre = [{"name": "id_exact_match_floor", "passed": False, "detail": "ID exact match 0.13 < 0.5"}]
    s = {"arithmetic": {"claims": {"arith_ood": _meas([1.0] * 8, [2.0] * 8, preconditions=pre)}},
         "forgetting": {"claims": {"forget_separation": _meas([2.0] * 3, [1.0] * 3)}}}
    rows = {x["id"]: x for x in evaluate_claims(s, tier="full")}
    assert rows["arith_ood"]["verdict"] == "not testable at this scale"
    assert "id_exact_match_floor" in rows["arith_ood"]["reason"] and rows["arith_ood"]["failed"] == [
        "id_exact_match_floor"]
    assert rows["forget_separation"]["failed"] == ["min_seeds"] and MIN_SEEDS["full"] == 8
    assert rows["arith_ood"]["p_holm"] is None and rows["arith_ood"]["p_raw"] is None  # not tested


def test_bad_tier():
    with pytest.raises(ValueError, match="tier"):
        evaluate_claims({}, tier="huge")
