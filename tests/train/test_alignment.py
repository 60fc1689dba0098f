"""Known-answer tests for gradient alignment and cycle detection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infoplane.train.alignment import detect_cycles, gradient_alignment


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(seed + 1))
    loss = model(x).pow(2).mean()
    return model, loss


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


# ----------------------------------------------------------------------------- gradient_alignment


def test_parallel_and_antiparallel_losses():
    model, loss = _tiny()
    params = list(model.parameters())
    out = gradient_alignment(loss, {2: 2.0 * loss, 5: -loss, 7: 0.5 * loss + 3.0}, params)
    assert out["cos_layer"][2] == pytest.approx(1.0, abs=1e-9)
    assert out["cos_layer"][5] == pytest.approx(-1.0, abs=1e-9)
    assert out["cos_layer"][7] == pytest.approx(1.0, abs=1e-9)
    # mean over layers of (2L, -L, 0.5L) = 0.5 L -> parallel
    assert out["cos"] == pytest.approx(1.0, abs=1e-9)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params, retain_graph=True)]).double()
    assert out["ce_grad_norm"] == pytest.approx(float(g.norm()), rel=1e-6)
    assert out["mbe_grad_norm"] == pytest.approx(0.5 * float(g.norm()), rel=1e-6)
    assert out["mbe_grad_norm_layer"][5] == pytest.approx(float(g.norm()), rel=1e-6)
    only_anti = gradient_alignment(loss, {0: -3.0 * loss}, params)
    assert only_anti["cos"] == pytest.approx(-1.0, abs=1e-9)


def test_known_cosine_linear_losses():
    # CE = <w, x>, MBE_l = <w, y_l>: gradients are x and y_l exactly
    g = torch.Generator().manual_seed(5)
    x, y0, y1 = (torch.randn(7, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.zeros(7, dtype=torch.float64, requires_grad=True)
    out = gradient_alignment(w @ x, {0: w @ y0, 1: w @ y1}, [w])
    assert out["cos_layer"][0] == pytest.approx(_cos(x, y0), abs=1e-12)
    assert out["cos_layer"][1] == pytest.approx(_cos(x, y1), abs=1e-12)
    assert out["cos"] == pytest.approx(_cos(x, (y0 + y1) / 2), abs=1e-12)
    cheap = gradient_alignment(w @ x, {0: w @ y0, 1: w @ y1}, [w], per_layer=False)
    assert cheap["cos"] == pytest.approx(out["cos"], abs=1e-12)
    assert cheap["mbe_grad_norm"] == pytest.approx(out["mbe_grad_norm"], abs=1e-12)
    assert cheap["cos_layer"] == {}


def test_orthogonal_parameters_groups_and_unused():
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    unused = torch.ones(4, requires_grad=True)
    ce = (a**2).sum() + 0.0 * b.sum()
    mbe = {1: (b**2).sum()}
    out = gradient_alignment(ce, mbe, {"a": [a], "b": [b], "unused": [unused]})
    assert out["cos"] == pytest.approx(0.0, abs=1e-12)  # disjoint supports -> orthogonal
    assert math.isnan(out["cos_group"]["a"])  # MBE gradient is zero on a
    assert math.isnan(out["cos_group"]["b"])  # CE gradient is zero on b
    assert math.isnan(out["cos_group"]["unused"])
    assert out["ce_grad_norm_group"]["a"] == pytest.approx(math.sqrt(12.0))
    assert out["mbe_grad_norm_group"]["b"] == pytest.approx(math.sqrt(8.0))
    assert math.isnan(out["cos_group_layer"]["a"][1])
    # an MBE loss that does not depend on the parameters at all -> zero gradient -> NaN cosine
    const = torch.tensor(2.0, requires_grad=True) * 1.0
    out2 = gradient_alignment(ce, {0: const}, [a])
    assert math.isnan(out2["cos"]) and out2["mbe_grad_norm"] == 0.0


def test_group_cosines_match_restricted_vectors():
    g = torch.Generator().manual_seed(9)
    xa, xb, ya, yb = (torch.randn(4, generator=g, dtype=torch.float64) for _ in range(4))
    a = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    out = gradient_alignment(a @ xa + b @ xb, {3: a @ ya + b @ yb}, {"a": [a], "b": [b], "both": [a, b]})
    assert out["cos_group"]["a"] == pytest.approx(_cos(xa, ya), abs=1e-12)
    assert out["cos_group"]["b"] == pytest.approx(_cos(xb, yb), abs=1e-12)
    assert out["cos_group"]["both"] == pytest.approx(
        _cos(torch.cat([xa, xb]), torch.cat([ya, yb])), abs=1e-12
    )
    assert out["cos"] == pytest.approx(out["cos_group"]["both"], abs=1e-12)  # shared params counted once


def test_model_first_calling_convention_and_graph_retained():
    model, loss = _tiny(3)
    mbe = {0: model[0].weight.pow(3).sum() * loss, 1: loss.sqrt()}
    a = gradient_alignment(loss, mbe, list(model.parameters()))
    b = gradient_alignment(model, loss, mbe)
    c = gradient_alignment(model, loss, mbe, params=list(model.parameters()))
    d = gradient_alignment(model, loss, mbe, list(model.parameters()))
    for other in (b, c, d):
        assert other["cos"] == pytest.approx(a["cos"], abs=1e-12)
        assert other["cos_layer"] == pytest.approx(a["cos_layer"], abs=1e-12)
    assert -1.0 <= a["cos"] <= 1.0
    # .grad is not touched, and the graph is still usable by the caller
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_retain_graph_false_frees_graph():
    model, loss = _tiny(4)
    gradient_alignment(loss, {0: 2 * loss}, list(model.parameters()), retain_graph=False)
    with pytest.raises(RuntimeError):
        loss.backward()


def test_gradient_alignment_validation():
    model, loss = _tiny()
    params = list(model.parameters())
    with pytest.raises(ValueError, match="mbe_losses"):
        gradient_alignment(loss, {}, params)
    with pytest.raises(ValueError, match="params"):
        gradient_alignment(loss, {0: loss})
    with pytest.raises(ValueError, match="params"):
        gradient_alignment(loss, {0: loss}, [torch.ones(2)])
    with pytest.raises(ValueError, match="expected"):
        gradient_alignment(loss)
    with pytest.raises(ValueError, match="scalar"):
        gradient_alignment(loss, {0: torch.ones(3, requires_grad=True) * 2}, params)


def test_alignment_on_gpt_mbe_layers():
    from infoplane.estimators.matrix import patch_matrix_entropy
    from infoplane.train.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, n_layer=3, n_head=2, d_model=16, block_size=16))
    idx = torch.randint(0, 13, (2, 16), generator=torch.Generator().manual_seed(2))
    out = model(idx, targets=idx)
    mbe = {l: patch_matrix_entropy(h, 8) for l, h in enumerate(out.hidden_states)}
    groups = {f"block{i}": list(b.parameters()) for i, b in enumerate(model.blocks)}
    res = gradient_alignment(out.loss, mbe, groups)
    assert set(res["cos_layer"]) == {0, 1, 2}
    assert all(-1.0 <= v <= 1.0 for v in res["cos_layer"].values())
    # MBE of block l's output does not depend on blocks above l -> zero gradient there (NaN cosine)
    assert res["mbe_grad_norm_group"]["block2"] > 0
    assert math.isnan(res["cos_group_layer"]["block2"][0]) and math.isnan(res["cos_group_layer"]["block1"][0])
    assert not math.isnan(res["cos_group_layer"]["block0"][0])


# ----------------------------------------------------------------------------- detect_cycles


def test_sine_wave_sign_changes_and_period():
    t = np.arange(200)
    series = np.sin(2 * np.pi * t / 20 + 0.3)
    out = detect_cycles(series.tolist())
    # zeros of sin(2 pi t / 20 + 0.3) in [0, 199]: t_k = 10 k - 0.3 * 20 / (2 pi), k = 1 ... 19
    expected = [10 * k - 0.3 * 20 / (2 * np.pi) for k in range(1, 20)]
    assert out["n_sign_changes"] == 19 == out["sign_changes"]
    np.testing.assert_allclose(out["sign_change_steps"], expected, atol=0.01)
    assert out["period_zero_crossing"] == pytest.approx(20.0, abs=1e-3)
    assert out["period"] == out["period_zero_crossing"]
    assert out["period_fft"] == pytest.approx(20.0, abs=0.05)
    assert out["frac_positive"] == pytest.approx(0.5, abs=0.01)
    assert out["n_valid"] == 200


def test_sine_with_steps_non_integer_period_and_nans():
    # logged every 10 steps; period 173 steps; NaNs and exact zeros are ignored
    steps = np.arange(0, 3000, 10)
    series = np.sin(2 * np.pi * steps / 173.0)
    series[[5, 40, 41, 77]] = np.nan
    series[0] = 0.0
    out = detect_cycles(series.tolist(), steps=steps.tolist())
    n_zeros = int(np.floor(2 * 2990 / 173.0))  # zeros at k * 86.5, k = 1 ... 34
    assert out["n_sign_changes"] == n_zeros
    assert out["period_zero_crossing"] == pytest.approx(173.0, rel=0.01)
    assert out["period_fft"] == pytest.approx(173.0, rel=0.05)


def test_square_wave_and_zero_handling():
    sq = ([1.0] * 4 + [-1.0] * 4) * 10
    out = detect_cycles(sq)
    assert out["n_sign_changes"] == 19
    assert out["sign_change_steps"][:3] == pytest.approx([3.5, 7.5, 11.5])
    assert out["period_zero_crossing"] == pytest.approx(8.0)
    assert out["period_fft"] == pytest.approx(8.0, abs=0.05)
    # zeros between opposite signs do not create extra changes
    z = detect_cycles([1.0, 0.0, -1.0, 0.0, 0.0, 1.0, float("nan"), -2.0])
    assert z["n_sign_changes"] == 3 and z["n_valid"] == 4
    assert z["frac_positive"] == pytest.approx(0.5)


def test_degenerate_series():
    pos = detect_cycles([0.3, 0.5, 0.2, 0.9, 0.1])
    assert pos["n_sign_changes"] == 0 and pos["frac_positive"] == 1.0
    assert math.isnan(pos["period_zero_crossing"])
    two = detect_cycles([1.0, -1.0, 1.0])
    assert two["n_sign_changes"] == 2 and math.isnan(two["period_zero_crossing"])
    empty = detect_cycles([])
    assert empty["n_sign_changes"] == 0 and math.isnan(empty["frac_positive"]) and math.isnan(empty["period"])
    flat = detect_cycles([0.5] * 10)
    assert math.isnan(flat["period_fft"])


def test_detect_cycles_validation():
    with pytest.raises(ValueError, match="steps"):
        detect_cycles([1.0, 2.0], steps=[0])
    with pytest.raises(ValueError, match="increasing"):
        detect_cycles([1.0, 2.0, 3.0], steps=[0, 2, 2])
