"""Experiment 9 (model population): known answers of its measures and criteria, and a test-sized run that
records the five correlation claims and writes files that ``infoplane correlate`` reads back to the same r."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

pytest.importorskip("lm_eval", reason="lm-eval is the optional 'downstream' extra (make setup installs it)")

from infoplane.experiments import population, registry  # noqa: E402
from infoplane.experiments.common import run_experiment  # noqa: E402
from infoplane.experiments.population_claims import score_spread  # noqa: E402
from infoplane.experiments.population_config import PopulationConfig  # noqa: E402
from infoplane.experiments.population_models import (  # noqa: E402
    effective_rank,
    hidden_state_measures,
    preference_set,
)

CLAIM_IDS = {"pop_optimality", "pop_complexity", "pop_expressivity", "pop_preference",
             "pop_optimality_beyond_ce"}


def tiny() -> PopulationConfig:
    return dataclasses.replace(PopulationConfig.quick(), tokenizer="byte", steps=(4, 8), eval_limit=12,
                               pref_texts=16, pref_permutations=3, probe_seqs=8, bootstrap=50)


def test_registered_as_number_nine():
    spec = registry.get("population")
    assert spec.number == 9 and spec.config_type() is PopulationConfig
    assert len(PopulationConfig.full().models()) >= 40 and len(PopulationConfig.quick().models()) == 4
    assert 8 <= len(PopulationConfig.demo().models()) <= 12


def test_effective_rank_known_answers():
    square = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]])  # centred, two equal singular values
    assert effective_rank(square) == pytest.approx(2.0, abs=1e-12)
    line = torch.arange(6.0)[:, None] * torch.tensor([[1.0, 2.0, 3.0]])  # rank one after centring
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-9)
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert effective_rank(3.0 * z + 5.0) == pytest.approx(effective_rank(z), rel=1e-9)  # scale and shift
    assert 1.0 < effective_rank(z) <= 8.0
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        effective_rank(torch.zeros(3))


def test_hidden_state_measures_skip_texts_shorter_than_a_patch_and_exclude_the_embedding():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 20, 6, generator=g)
    groups = np.array([0] * 16 + [1] * 4)  # the second text (4 tokens) holds no patch of 8
    out = hidden_state_measures(z, groups, patch_size=8)
    from infoplane.estimators import patch_matrix_entropy

    want = [float(patch_matrix_entropy(z[k, :16][None], patch_size=8)) for k in range(3)]
    assert out["mbe_layers"] == pytest.approx(want, rel=1e-9)
    assert out["mbe"] == pytest.approx(np.mean(want[1:]), rel=1e-12)  # embedding (index 0) excluded
    assert out["erank"] == pytest.approx(np.mean(out["erank_layers"][1:]), rel=1e-12)


def test_score_spread_criterion():
    def rows(values):
        return [{"infoplane_brown_pairs": v} for v in values]

    at_chance = score_spread(rows([0.5] * 8), ["infoplane_brown_pairs"], 300, 2.0)
    assert not at_chance["passed"] and "0.0 SE" in at_chance["detail"]
    spread = score_spread(rows(np.linspace(0.6, 0.8, 8)), ["infoplane_brown_pairs"], 300, 2.0)
    assert spread["passed"]
    flat = score_spread(rows([0.7] * 8), ["infoplane_brown_pairs"], 300, 2.0)  # above chance, no spread
    assert not flat["passed"]


def test_preference_subset_keeps_whole_pairs():
    texts, labels = preference_set(dataclasses.replace(tiny(), pref_texts=10))
    assert len(texts) == 10 and sorted(labels) == [0] * 5 + [1] * 5


def test_config_is_validated():
    with pytest.raises(ValueError, match="objectives"):
        PopulationConfig(objectives=("adam",))
    with pytest.raises(ValueError, match="token back-off"):
        PopulationConfig(probe=PopulationConfig().probe.replace(orders=(1, 2)))
    with pytest.raises(ValueError, match="infoplane_brown_pairs"):
        PopulationConfig(tasks=("infoplane_brown_cloze",))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("population")
    cfg = tiny()
    summary = run_experiment("population", cfg, out, population.run, progress=False)
    return cfg, out, summary


def test_quick_run_records_the_correlation_claims(quick_run):
    cfg, _, summary = quick_run
    claims = summary["claims"]
    assert set(claims) == CLAIM_IDS
    names = sorted(s.name for s in cfg.models())
    for cid, c in claims.items():
        assert c["kind"] == "correlation" and c["unit"] == "r" and c["models"] == names
        assert len(c["treatment"]) == len(c["baseline"]) == len(names)
        assert all(math.isfinite(v) for v in c["treatment"] + c["baseline"])
        assert {p["name"] for p in c["preconditions"]} == {"n_models", "score_spread", "mi_above_null"}
        assert ("covariates" in c) == (cid == "pop_optimality_beyond_ce")
    cov = claims["pop_optimality_beyond_ce"]["covariates"]
    assert set(cov) == {"log_params", "ce"} and len(cov["ce"]) == len(names)
    # the preference claim's baseline is the minimal-pairs task, the others' the aggregate
    assert claims["pop_preference"]["baseline"] != claims["pop_optimality"]["baseline"]


def test_written_files_are_what_infoplane_correlate_reads(quick_run, tmp_path):
    from scipy import stats

    from infoplane.downstream.evaluate import aggregate_score, read_results
    from infoplane.downstream.study import correlate_study

    _, out, summary = quick_run
    res = out / "results"
    evals = aggregate_score(read_results([res / "population_lm_eval"]))
    claim = summary["claims"]["pop_optimality"]
    assert [evals[m]["aggregate"] for m in claim["models"]] == pytest.approx(claim["baseline"], rel=1e-12)
    written = correlate_study([res / "population_plane.csv"], [res / "population_lm_eval"], tmp_path,
                              models=res / "population_models.csv", measures=["optimality", "ce"],
                              n_resamples=0)
    from infoplane.io import read_csv

    row = next(r for r in read_csv(written["correlations.csv"]) if r["measure"] == "optimality")
    assert row["n_models"] == len(claim["models"])
    assert row["pearson_r"] == pytest.approx(stats.pearsonr(claim["treatment"], claim["baseline"]).statistic,
                                             rel=1e-9)
    assert (res / "population_study" / "correlations.csv").is_file()
    assert row["controls"] == "log_params,ce"


def test_rerun_reuses_every_measured_model(quick_run, monkeypatch):
    cfg, out, summary = quick_run

    def no_training(*a, **k):
        raise AssertionError("a measured model was trained again")

    monkeypatch.setattr(population, "train_model", no_training)
    again = run_experiment("population", cfg, out, population.run, force=True, progress=False)
    assert again["claims"]["pop_optimality"]["treatment"] == summary["claims"]["pop_optimality"]["treatment"]


def test_describe_and_figures(quick_run, tmp_path):
    _, out, summary = quick_run
    lines = population.describe(summary)
    assert any(line.startswith("optimality vs aggregate: Pearson r =") for line in lines)
    figs = population.figures(out / "results", tmp_path)
    assert figs and all(p.is_file() and p.suffix == ".png" for p, _ in figs)
