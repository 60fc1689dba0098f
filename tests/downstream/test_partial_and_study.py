"""Partial correlations, clustered bootstrap intervals, the per-text null and `infoplane correlate`."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from infoplane.downstream.correlate import cluster_bootstrap_ci, correlate, partial_correlation
from infoplane.downstream.preference import text_label_information


def test_partial_correlation_known_answer():
    rng = np.random.default_rng(0)
    z = rng.normal(size=30)
    x = z + 0.5 * rng.normal(size=30)
    y = z + 0.5 * rng.normal(size=30)
    rxy, rxz, ryz = (stats.pearsonr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    # first-order partial correlation (Fisher 1924)
    want = (rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2))
    r, p, df = partial_correlation(x, y, [z])
    assert r == pytest.approx(want, abs=1e-12) and df == 27
    t = want * math.sqrt(27 / (1 - want**2))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), 27))
    r0, p0, _ = partial_correlation(x, y, [])  # no covariate: Pearson
    assert r0 == pytest.approx(rxy) and p0 == pytest.approx(stats.pearsonr(x, y).pvalue)
    with pytest.raises(ValueError, match="degrees of freedom"):
        partial_correlation(x[:3], y[:3], [z[:3]])


def _rows(ms, opt):
    return [{"model": m, "step": 1, "layer": "mean", "n": 1, "optimality": o, "complexity": 1 - o,
             "expressivity": 0.5} for m, o in zip(ms, opt)]


def test_correlate_intervals_and_partials():
    rng = np.random.default_rng(1)
    ms = [f"m{i}" for i in range(12)]
    ce = rng.normal(size=12)
    opt = -ce + 0.3 * rng.normal(size=12)
    score = -ce + 0.3 * rng.normal(size=12)
    scores = dict(zip(ms, score))
    out = {r["measure"]: r for r in correlate(_rows(ms, opt), scores, measures=["optimality", "complexity"],
                                              covariates={"ce": dict(zip(ms, ce))}, n_resamples=500, seed=0)}
    r = out["optimality"]
    assert r["pearson_r"] == pytest.approx(stats.pearsonr(opt, score).statistic)
    assert r["spearman_r"] == pytest.approx(stats.spearmanr(opt, score).statistic)
    assert r["pearson_ci_low"] < r["pearson_r"] < r["pearson_ci_high"]
    assert r["partial_r"] == pytest.approx(partial_correlation(opt, score, [ce])[0])
    assert abs(r["partial_r"]) < r["pearson_r"]  # the shared cause explains most of it
    assert math.isnan(out["complexity"]["partial_r"]) is False and r["controls"] == "ce"


def test_cluster_bootstrap_resamples_configurations():
    x = np.array([0.0, 0.2, 1.0, 1.3, 2.0, 2.4, 3.0, 3.1, 4.0, 4.3])
    y = np.array([0.1, 0.0, 1.2, 1.1, 1.9, 2.1, 3.0, 3.2, 3.9, 4.5])
    cl = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"]
    lo_c, hi_c, _ = cluster_bootstrap_ci(x, y, clusters=cl, n_resamples=300, seed=0)
    lo_m, hi_m, _ = cluster_bootstrap_ci(x, y, n_resamples=300, seed=0)
    assert lo_c <= stats.pearsonr(x, y).statistic <= hi_c
    assert (lo_c, hi_c) != (lo_m, hi_m)
    with pytest.raises(ValueError, match=">= 3"):
        cluster_bootstrap_ci(x, y, clusters=["a"] * 5 + ["b"] * 5)


def test_text_null_differs_from_position_null():
    # 16 texts whose positions cluster around a text-specific centre; the label is random per text, so
    # I(Z; label) only reflects which texts happen to share a label. The position shuffle breaks the
    # clustering (null near 0: the MI looks real); the text-level null keeps it (null ~ observed).
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(16, 8)) * 3
    z = np.concatenate([c + 0.3 * rng.normal(size=(40, 8)) for c in centres])
    groups = np.repeat(np.arange(16), 40)
    text_label = rng.permutation([0, 1] * 8)
    res = text_label_information(torch.tensor(z, dtype=torch.float32), text_label[groups], groups,
                                 n_permutations=19, seed=0, n_bins=32)
    assert res.mi_null_text.shape == (19, 1)
    assert res.mi[0] > 10 * res.mi_null_position[0]  # the position null calls it significant
    assert res.mi_null_text[:, 0].mean() > 10 * res.mi_null_position[0]
    assert res.p_text[0] > 0.1  # the text null does not
    with pytest.raises(ValueError, match="constant within a text"):
        text_label_information(torch.tensor(z, dtype=torch.float32), rng.integers(0, 2, groups.size), groups)


def test_correlate_command(tmp_path):
    from infoplane.cli import main

    rng = np.random.default_rng(2)
    plane = tmp_path / "plane.csv"
    rows = _rows([f"m{i}" for i in range(8)], rng.uniform(0.2, 0.9, 8))
    with plane.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:  # lm-eval's own results file layout
        d = tmp_path / "evals" / r["model"]
        d.mkdir(parents=True)
        acc = 0.3 + 0.5 * r["optimality"] + 0.05 * rng.normal()
        (d / "results_2026-01-01T00-00-00.json").write_text(json.dumps({
            "results": {"infoplane_brown_pairs": {"alias": "x", "acc,none": acc, "acc_stderr,none": 0.01}},
            "config": {"model": "hf", "model_args": f"pretrained={r['model']}"}}))
    models = tmp_path / "models.csv"
    models.write_text("model,config,n_params,ce\n" + "".join(
        f"m{i},c{i // 2},{1000 * (i + 1)},{3 + 0.1 * i}\n" for i in range(8)))
    out = tmp_path / "study"
    assert main(["correlate", "--plane", str(plane), "--lm-eval", str(tmp_path / "evals"), "--models",
                 str(models), "--out", str(out), "--bootstrap", "200"]) == 0
    table = {r["measure"]: r for r in csv.DictReader((out / "correlations.csv").open())}
    x = [r["optimality"] for r in rows]
    y = [json.loads(next((tmp_path / "evals" / r["model"]).glob("*.json")).read_text())["results"][
        "infoplane_brown_pairs"]["acc,none"] for r in rows]
    assert float(table["optimality"]["pearson_r"]) == pytest.approx(stats.pearsonr(x, y).statistic)
    assert table["optimality"]["controls"] == "log_params,ce" and table["optimality"]["n_clusters"] == "4"
    assert (out / "plane_by_score.png").is_file() and (out / "measures_vs_score.svg").is_file()
