"""correlate(): Pearson/Spearman of plane measures with downstream scores across models."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from infoplane.downstream.correlate import correlate


def plane_rows():
    rows = []
    for i, (compl, expr) in enumerate([(0.5, 0.2), (0.4, 0.25), (0.45, 0.3), (0.3, 0.28), (0.35, 0.33)]):
        for step, scale in ((1, 2.0), (2, 1.0)):  # the last step of each model is used
            rows.append({"model": f"m{i}", "step": step, "layer": "mean", "n": 1, "complexity": compl * scale,
                         "expressivity": expr, "optimality": expr / (compl * scale), "entropy": 0.8,
                         "distance": compl * scale - expr, "seq_mi_pref": 0.01 * i})
        rows.append({"model": f"m{i}", "step": 2, "layer": 3, "n": 1, "complexity": 9.0})
    return rows


def test_known_answers_against_scipy():
    scores = {"m0": 10.0, "m1": 12.0, "m2": 15.0, "m3": 13.0, "m4": 20.0}
    out = {r["measure"]: r for r in correlate(plane_rows(), scores)}
    assert set(out) == {"entropy", "complexity", "expressivity", "optimality", "distance", "seq_mi_pref"}
    xs = [0.5, 0.4, 0.45, 0.3, 0.35]
    ys = [10.0, 12.0, 15.0, 13.0, 20.0]
    pr, sr = stats.pearsonr(xs, ys), stats.spearmanr(xs, ys)
    assert out["complexity"]["pearson_r"] == pytest.approx(pr.statistic)
    assert out["complexity"]["pearson_p"] == pytest.approx(pr.pvalue)
    assert out["complexity"]["spearman_r"] == pytest.approx(sr.statistic)
    assert out["seq_mi_pref"]["spearman_r"] == pytest.approx(0.9)  # ranks 0..4 vs 1,2,4,3,5
    assert out["complexity"]["n_models"] == 5
    assert math.isnan(out["entropy"]["pearson_r"])  # constant across models: undefined, not an error


def test_score_rows_with_several_scores_and_errors():
    scores = [{"model": f"m{i}", "mmlu": 0.1 * i, "ifeval": 1.0 - 0.1 * i, "family": "x"} for i in range(5)]
    out = correlate(plane_rows(), scores, measures=["expressivity"])
    assert {r["score"] for r in out} == {"mmlu", "ifeval"}
    r = {r["score"]: r for r in out}
    assert r["mmlu"]["pearson_r"] == pytest.approx(-r["ifeval"]["pearson_r"])
    with pytest.raises(ValueError, match="need >= 3"):
        correlate(plane_rows(), {"m0": 1.0, "m1": 2.0})
    with pytest.raises(ValueError, match="no plane rows"):
        correlate(plane_rows(), {"m0": 1.0}, n=4)
    with pytest.raises(ValueError, match="model"):
        correlate(plane_rows(), [{"name": "m0", "s": 1.0}])
