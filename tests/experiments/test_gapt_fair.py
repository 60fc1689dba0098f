"""Experiment 7 (GAPT tested fairly): the paper-era arm alternates CE / MBE, the half-CE baseline sees half
the CE tokens, and the experiment runs at a test-sized config and records its claims."""

from __future__ import annotations

import dataclasses

import pytest

from infoplane.experiments import registry
from infoplane.experiments.claims import CLAIMS
from infoplane.experiments.common import ExperimentPaths, Progress
from infoplane.experiments.gapt_fair import GaptFairConfig, run, train_run
from infoplane.experiments.gapt_fair_arms import regime_data

TINY = dict(seeds=(0, 1), sweep_seeds=(0, 1), lambdas=(1.0,), n_layer=3, n_head=2, d_model=16, block_size=16,
            batch_size=4, steps=6, warmup_steps=1, overfit_tokens=512, eval_batches=1, tokenizer="byte",
            controller={"rule": "windowed", "patience_mem": 1, "patience_comp": 1, "tau_ce": 0.01,
                        "tau_mbe": 0.01, "spike_tol": 0.1, "ema": None, "start": "compress"})


@pytest.fixture(scope="module")
def tiny_data():
    cfg = GaptFairConfig(**TINY)
    return cfg, regime_data(cfg, "undertrained")


def test_paper_era_micro_batches_alternate_ce_and_mbe(tiny_data, tmp_path):
    cfg, (tok, sp, sets) = tiny_data
    cfg = dataclasses.replace(cfg, controller={**cfg.controller, "patience_mem": 50, "patience_comp": 50})
    row, tr = train_run(cfg, "paper_era", None, 0, sp, tok, tmp_path / "p", sets, record=True)
    trace = tr.objective.trace
    assert len(trace) == 2 * cfg.steps
    assert tr.controller.phase == "compress" and row["n_switches"] == 0
    for step, micro, with_base, penalised in trace:
        assert (with_base, penalised) == ((True, False) if micro == 0 else (False, True)), (step, micro)
    # one CE micro-batch per step: half the rows of each batch carry CE
    assert row["ce_tokens"] == cfg.steps * (cfg.batch_size // 2) * cfg.block_size


def test_half_ce_baseline_sees_half_the_ce_tokens(tiny_data, tmp_path):
    cfg, (tok, sp, sets) = tiny_data
    full, _ = train_run(cfg, "baseline", None, 0, sp, tok, tmp_path / "b", sets)
    half, tr = train_run(cfg, "half_ce", None, 0, sp, tok, tmp_path / "h", sets, record=True)
    assert half["ce_tokens"] * 2 == full["ce_tokens"] == cfg.steps * cfg.batch_size * cfg.block_size
    pattern = [(m, wb) for _, m, wb, _ in tr.objective.trace[:4]]
    assert pattern == [(0, True), (1, False), (0, True), (1, False)]
    assert half["test_ce"] != full["test_ce"]  # a different training signal


def test_half_ce_zeroes_the_gradient_of_the_second_micro_batch():
    import torch

    from infoplane.experiments.gapt_fair import CountingObjective
    from infoplane.train.objective import ObjectiveConfig

    obj = CountingObjective(ObjectiveConfig(kind="ce", log_mbe=False), half_ce=True)
    w = torch.ones(3, requires_grad=True)
    base = (w * 2.0).sum()
    t0 = obj(base, [torch.zeros(1, 8, 2)], micro=0)
    t1 = obj(base, [torch.zeros(1, 8, 2)], micro=1)
    (g1,) = torch.autograd.grad(t1.loss, w, retain_graph=True)
    (g0,) = torch.autograd.grad(t0.loss, w)
    assert torch.all(g1 == 0) and torch.all(g0 == 2) and obj.ce_micro == 1


def test_experiment_runs_and_records_claims(tmp_path):
    cfg = GaptFairConfig(**{**TINY, "controller": {**TINY["controller"], "start": "memorize"}})
    summary = run(cfg, ExperimentPaths(tmp_path, "gapt_fair"), Progress("gapt_fair", enabled=False))
    assert set(summary["selection"]) == {"undertrained", "overfit"}
    mine = {c.id for c in CLAIMS if c.experiment == "gapt_fair"}
    assert mine == set(summary["claims"]) and len(mine) == 4
    for meas in summary["claims"].values():
        assert len(meas["treatment"]) == len(meas["baseline"]) == len(cfg.seeds)
        assert {"unit", "scale", "seeds", "preconditions", "replicates"} <= set(meas)
    names = {p["name"] for p in summary["claims"]["fair_gapt_ce_overfit"]["preconditions"]}
    assert names == {"equal_ce_tokens", "mbe_target_reached", "baseline_overfits"}
    st = summary["stats"]["undertrained"]
    assert {"baseline", "half_ce", "paper_era", "gapt@1", "static@1"} <= set(st)
    assert (tmp_path / "results" / "gapt_fair_runs.csv").is_file()
    spec = registry.get("gapt_fair")
    assert spec.number == 7 and spec.depends_on == ()
    assert isinstance(spec.describe(summary), list) and spec.describe(summary)


def test_config_validation():
    with pytest.raises(ValueError, match="subset of seeds"):
        GaptFairConfig(seeds=(0,), sweep_seeds=(1,))
    with pytest.raises(ValueError, match="regimes"):
        GaptFairConfig(regimes=("nope",))
