"""Forgetting experiment: the separation's parts (known answers), the softplus floor, a tiny run's claims."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from infoplane.experiments.common import run_experiment
from infoplane.experiments.forgetting import ForgettingConfig
from infoplane.experiments.forgetting_metrics import floored_penalty, sample_mbe, separation_parts


def _cloud(mu: torch.Tensor, s: float) -> torch.Tensor:
    """All sign patterns mu + s * v, v in {-1, +1}^D: per-coordinate mean mu, population variance s^2."""
    d = mu.shape[0]
    v = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=d)), dtype=torch.float64)
    return mu + s * v


def test_separation_parts_known_answer():
    d = 4
    mu_p = torch.tensor([3.0, 0.0, 0.0, 4.0], dtype=torch.float64)
    mu_n = torch.zeros(d, dtype=torch.float64)
    hp, hn = _cloud(mu_p, 0.5), _cloud(mu_n, 1.5)
    n = hp.shape[0]
    parts = separation_parts(hp, hn)
    # unbiased trace variance: D s^2 n/(n-1); spread = sqrt of the mean over the two tasks
    spread = math.sqrt(0.5 * d * (0.5**2 + 1.5**2) * n / (n - 1))
    assert parts["between"] == pytest.approx(5.0, rel=1e-12)
    assert parts["spread"] == pytest.approx(spread, rel=1e-12)
    assert parts["separation"] == pytest.approx(5.0 / spread, rel=1e-12)
    assert parts["norm_pos"] == pytest.approx(5.0) and parts["norm_neg"] == pytest.approx(0.0, abs=1e-12)


def test_separation_parts_move_independently():
    hp, hn = _cloud(torch.ones(3, dtype=torch.float64), 1.0), _cloud(torch.zeros(3, dtype=torch.float64), 1.0)
    base = separation_parts(hp, hn)
    # pushing the new task's mean away doubles the distance, leaves the spread alone
    far = separation_parts(hp + torch.ones(3, dtype=torch.float64), hn)
    assert far["between"] == pytest.approx(2 * base["between"])
    assert far["spread"] == pytest.approx(base["spread"])
    # tightening both clouds around their means leaves the distance alone, shrinks the spread
    tight = separation_parts(1 + 0.5 * (hp - 1), 0.5 * hn)
    assert tight["between"] == pytest.approx(base["between"])
    assert tight["spread"] == pytest.approx(0.5 * base["spread"])
    # a shift shared by both tasks (centering) changes neither part, only the mean norms
    shifted = separation_parts(hp + 7, hn + 7)
    assert shifted["between"] == pytest.approx(base["between"]) and shifted["spread"] == pytest.approx(
        base["spread"])
    assert shifted["norm_pos"] > base["norm_pos"] + 10


def test_uncentered_mbe_sees_a_common_mean_centered_does_not():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(64, 20, generator=g)
    assert sample_mbe(h + 5.0, 8).item() < 0.5 * sample_mbe(h, 8).item()
    centered = sample_mbe(h, 8, centered=True).item()
    assert sample_mbe(h + 5.0, 8, centered=True).item() == pytest.approx(centered, rel=1e-4)


def test_softplus_floor_known_values():
    t = torch.tensor([20.0, 1e-5, 0.0], requires_grad=True)
    assert torch.equal(floored_penalty(t, "none"), t)
    out = floored_penalty(t, "softplus")
    assert out[0].item() == pytest.approx(20.0, abs=1e-6)  # far above the floor: unchanged
    assert out[1].item() == pytest.approx(1e-5 + 0.1 * math.log(2), rel=1e-6)
    out[1].backward()
    assert t.grad[1].item() == pytest.approx(0.5, rel=1e-6)  # sigmoid(0): half the gradient at the floor
    assert (floored_penalty(torch.linspace(0, 3, 50), "softplus") > 0).all()
    with pytest.raises(ValueError, match="floor must be one of"):
        floored_penalty(t, "hinge")
    with pytest.raises(ValueError, match="mbe_floor"):
        ForgettingConfig(mbe_floor="hinge")


def test_separation_parts_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same width"):
        separation_parts(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\[N, H\]"):
        separation_parts(torch.zeros(4), torch.zeros(4, 2))


@pytest.mark.parametrize("floor", ["softplus", "none"])
def test_quick_run_writes_decomposition_and_claims(tmp_path, floor, one_thread):
    from infoplane.experiments import forgetting
    from infoplane.io import read_csv

    cfg = dataclasses.replace(ForgettingConfig.quick(), seeds=(0, 1), pretrain_steps=30, finetune_steps=40,
                              n_train=256, n_eval=128, patience_mem=5, patience_comp=5, mbe_floor=floor)
    s = run_experiment("forgetting", cfg, tmp_path, forgetting.run, progress=False)
    assert {"forget_separation", "forget_old_loss", "forget_within_spread"} <= set(s["claims"])
    runs = read_csv(tmp_path / "results" / "forgetting_runs.csv")
    spread = s["claims"]["forget_within_spread"]
    assert spread["treatment"] == pytest.approx([float(r["spread"]) for r in runs if r["arm"] == "gapt"])
    assert spread["baseline"] == pytest.approx([float(r["spread"]) for r in runs if r["arm"] == "baseline"])
    for r in runs:  # the ratio is the two parts' quotient
        assert float(r["separation"]) == pytest.approx(float(r["between"]) / float(r["spread"]), rel=1e-6)
        assert 0 <= float(r["mbe_new"]) <= math.log(8) + 1e-6
    dec = read_csv(tmp_path / "results" / "forgetting_decomposition.csv")
    assert [r["arm"] for r in dec] == ["pretrained", "baseline", "static", "gapt"]
    assert all(int(r["n"]) == 2 for r in dec)
    assert any("between-task distance" in line for line in forgetting.describe(s))


def test_forgetting_figure(tmp_path, one_thread):
    from infoplane.experiments import forgetting

    cfg = dataclasses.replace(ForgettingConfig.quick(), seeds=(0, 1), pretrain_steps=10, finetune_steps=10,
                              n_train=128, n_eval=64)
    run_experiment("forgetting", cfg, tmp_path, forgetting.run, progress=False)
    figs = forgetting.figures(tmp_path / "results", tmp_path / "figs")
    assert [p.name for p, _ in figs] == ["forgetting.png"] and figs[0][0].stat().st_size > 1000
