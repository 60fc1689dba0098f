"""Parity with the reference implementation soft-entropy 0.1.5 (same W, same temperature)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infoplane.estimators import (
    SoftEntropyAccumulator,
    calibrate_temperature,
    reference_points,
    soft_entropy,
    soft_mutual_information,
)

se = pytest.importorskip("soft_entropy")
from soft_entropy import pytorch as se_torch  # noqa: E402
from soft_entropy.temp_calibration import find_eps  # noqa: E402

TOL = 1e-6


def _their_torch_w(n_bins: int, d: int, seed: int = 0) -> torch.Tensor:
    """The reference's torch W: CPU torch generator, float32 randn, F.normalize."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return F.normalize(torch.randn(n_bins, d, generator=g), dim=-1)


def _batches(seed: int, n_batches: int, n: int, d: int):
    r = np.random.default_rng(seed)
    centers = r.standard_normal((6, d)).astype(np.float32)
    out = []
    for _ in range(n_batches):
        tok = r.integers(0, 6, n)
        z = centers[tok] + 0.7 * r.standard_normal((n, d)).astype(np.float32)
        labels = {"tok": tok, "pair": tok * 10 + r.integers(0, 3, n), "noise": r.integers(0, 40, n)}
        out.append((torch.from_numpy(z), labels))
    return out


@pytest.mark.parametrize("d", [8, 64, 576])
def test_bounds_calibration_equals_find_eps(d):
    assert calibrate_temperature(100, d, "bounds") == pytest.approx(find_eps(100, d), rel=1e-9)


@pytest.mark.parametrize("d", [16, 64])
def test_functional_entropy_and_mi(d):
    ((z, labels),) = _batches(0, 1, 300, d)
    w = _their_torch_w(100, d)
    h_ref = float(se_torch.soft_entropy(z, n_bins=100, seed=0))
    assert float(soft_entropy(z, reference_points=w, calibration="bounds")) == pytest.approx(h_ref, abs=TOL)
    assert float(soft_entropy(z, reference_points=w, temperature=find_eps(100, d))) == pytest.approx(
        h_ref, abs=TOL
    )
    for name, lab in labels.items():
        mi_ref = float(se_torch.soft_mutual_information(z, torch.from_numpy(lab), n_bins=100))
        mi = float(soft_mutual_information(z, lab, reference_points=w, calibration="bounds"))
        assert mi == pytest.approx(mi_ref, abs=TOL), name


def test_accumulator_their_w_in_ours_multiple_batches_and_sets():
    d = 32
    ref = se.SoftEntropyAccumulator(d=d, n_bins=100, seed=0, backend="torch")
    ours = SoftEntropyAccumulator(d, reference_points=ref.w, temperature=ref.temp)
    for z, labels in _batches(1, 4, 250, d):
        ref.update(z, labels=labels)
        ours.update(z, labels)
    want = ref.results()
    got = ours.compute()
    assert got.entropy[0] == pytest.approx(want["H(Z)"], abs=TOL)
    for name in ("tok", "pair", "noise"):
        assert got.mi[name][0] == pytest.approx(want[f"I(X;Z)/{name}"], abs=TOL)
        assert got.regularity[name][0] == pytest.approx(want[f"regularity/{name}"], abs=TOL)
    cond = ref.conditional_entropy()["tok"]
    n = {k: v for k, v in ref._label_n_samples["tok"].items()}
    total = sum(n.values())
    assert got.conditional_entropy["tok"][0] == pytest.approx(
        sum(n[k] / total * h for k, h in cond.items()), abs=TOL
    )


def test_accumulator_our_w_in_theirs_exact_calibration_multilayer():
    d, n_layers = 24, 3
    w = reference_points(100, d, seed=7)
    eps = calibrate_temperature(100, d)  # exact: theirs only accepts it through .temp
    refs = []
    for _ in range(n_layers):  # one reference accumulator per layer, as their LLMInferrer does
        r = se.SoftEntropyAccumulator(d=d, n_bins=100, seed=0, backend="torch")
        r.w, r.temp = w.float(), eps
        refs.append(r)
    ours = SoftEntropyAccumulator(d, seed=7, n_layers=n_layers)
    g = torch.Generator().manual_seed(3)
    for z, labels in _batches(2, 3, 200, d):
        zl = torch.stack([z * (1 + layer) + torch.randn(z.shape, generator=g) for layer in range(n_layers)])
        pl = ours.prepare_labels(labels)
        for layer in range(n_layers):
            refs[layer].update(zl[layer], labels=labels)
            ours.update(zl[layer], pl, layer=layer)
    got = ours.compute()
    for layer, r in enumerate(refs):
        want = r.results()
        assert got.entropy[layer] == pytest.approx(want["H(Z)"], abs=TOL)
        for name in ("tok", "pair", "noise"):
            assert got.mi[name][layer] == pytest.approx(want[f"I(X;Z)/{name}"], abs=TOL)


def test_numpy_backend_uses_our_reference_recipe():
    # their numpy backend draws W = default_rng(seed).standard_normal in float32: our recipe, float64
    d = 48
    ref = se.SoftEntropyAccumulator(d=d, n_bins=100, seed=0, backend="numpy")
    np.testing.assert_allclose(ref.w, reference_points(100, d).numpy(), atol=1e-6)
    ours = SoftEntropyAccumulator(d, calibration="bounds")
    for z, labels in _batches(4, 2, 300, d):
        ref.update(z.numpy(), labels=labels)
        ours.update(z, labels)
    want, got = ref.results(), ours.compute()
    assert got.entropy[0] == pytest.approx(want["H(Z)"], abs=TOL)
    for name in ("tok", "pair", "noise"):
        assert got.mi[name][0] == pytest.approx(want[f"I(X;Z)/{name}"], abs=TOL)
