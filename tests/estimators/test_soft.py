"""Functional, differentiable soft entropy / mutual information."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.estimators import (
    calibrate_temperature,
    reference_points,
    soft_assign,
    soft_entropy,
    soft_mutual_information,
)


def test_soft_assign_matches_oracle(rng, oracle):
    z = rng.standard_normal((50, 12))
    w = reference_points(30, 12)
    eps = calibrate_temperature(30, 12)
    p = soft_assign(torch.from_numpy(z), w, eps)
    assert p.dtype == torch.float64 and p.shape == (50, 30)
    np.testing.assert_allclose(p.numpy(), oracle.assign(z, w.numpy(), eps), rtol=1e-12, atol=1e-15)
    p32 = soft_assign(torch.from_numpy(z).float(), w, eps)
    assert p32.dtype == torch.float32
    np.testing.assert_allclose(p32.sum(-1).numpy(), 1.0, atol=1e-6)
    pb = soft_assign(torch.from_numpy(z).to(torch.bfloat16), w, eps)
    assert pb.dtype == torch.float32  # softmax never below float32


def test_uniform_sphere_entropy_near_one():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 64, generator=g, dtype=torch.float64)
    h = soft_entropy(z)
    assert 0.999 < float(h) <= 1.0


def test_point_mass(oracle):
    z = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64).repeat(200, 1)
    w = reference_points(100, 4)
    eps = calibrate_temperature(100, 4)
    h = soft_entropy(z)
    p = oracle.assign(z[:1].numpy(), w.numpy(), eps)[0]
    assert float(h) == pytest.approx(oracle.h(p) / math.log(100), abs=1e-12)
    labels = torch.arange(200) % 7
    assert abs(float(soft_mutual_information(z, labels))) < 1e-12


def test_mi_matches_oracle_with_singletons(rng, oracle):
    z = rng.standard_normal((300, 8))
    labels = rng.integers(-1, 25, size=300)  # negatives are singletons
    w = reference_points(100, 8)
    eps = calibrate_temperature(100, 8)
    mi = soft_mutual_information(torch.from_numpy(z), labels)
    assert float(mi) == pytest.approx(oracle.mi(oracle.assign(z, w.numpy(), eps), labels), abs=1e-12)


def test_negative_labels_equal_unique_ids(rng):
    z = torch.from_numpy(rng.standard_normal((100, 6)))
    a = soft_mutual_information(z, -np.ones(100, dtype=np.int64))
    b = soft_mutual_information(z, np.arange(100))
    assert float(a) == pytest.approx(float(b), abs=1e-13)


def test_gradients_flow_and_loss_works():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 16, generator=g)
    z = (base + 0.05 * torch.randn(64, 16, generator=g)).requires_grad_(True)
    labels = torch.arange(64) % 4
    h0 = soft_entropy(z)
    h0.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    z.grad = None
    mi = soft_mutual_information(z, labels)
    mi.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # a few ascent steps on H raise it (usable as a loss)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        (-soft_entropy(z)).backward()
        opt.step()
    assert float(soft_entropy(z.detach())) > float(h0.detach()) + 0.05


def test_batched_leading_dims(rng):
    z = torch.from_numpy(rng.standard_normal((3, 40, 5)))
    h = soft_entropy(z)
    assert h.shape == (3,)
    for i in range(3):
        assert float(h[i]) == pytest.approx(float(soft_entropy(z[i])), abs=1e-14)


def test_invariances(rng):
    z = torch.from_numpy(rng.standard_normal((120, 6)))
    labels = torch.from_numpy(rng.integers(0, 9, 120))
    w = reference_points(100, 6)
    h, mi = soft_entropy(z), soft_mutual_information(z, labels)
    scale = torch.from_numpy(rng.uniform(0.1, 10.0, (120, 1)))
    assert float(soft_entropy(z * scale)) == pytest.approx(float(h), abs=1e-12)
    q, _ = torch.linalg.qr(torch.from_numpy(rng.standard_normal((6, 6))))
    assert float(soft_entropy(z @ q, reference_points=w @ q)) == pytest.approx(float(h), abs=1e-12)
    relabel = torch.from_numpy(rng.permutation(1000)[:9])[labels] * 7919 + 10**12
    assert float(soft_mutual_information(z, relabel)) == pytest.approx(float(mi), abs=1e-12)
    perm = torch.from_numpy(rng.permutation(120))
    assert float(soft_mutual_information(z[perm], labels[perm])) == pytest.approx(float(mi), abs=1e-12)


def test_custom_reference_points_and_temperature(rng, oracle):
    z = torch.from_numpy(rng.standard_normal((80, 5)))
    w = torch.from_numpy(rng.standard_normal((20, 5)))
    h = soft_entropy(z, reference_points=w, temperature=0.2)
    wn = w.numpy() / np.linalg.norm(w.numpy(), axis=1, keepdims=True)
    assert float(h) == pytest.approx(
        oracle.h(oracle.assign(z.numpy(), wn, 0.2).sum(0)) / math.log(20), abs=1e-12
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 60), k=st.integers(1, 12), d=st.integers(2, 9))
def test_mi_bounds_property(seed, n, k, d, oracle):
    r = np.random.default_rng(seed)
    z = torch.from_numpy(r.standard_normal((n, d)))
    labels = r.integers(0, k, n)
    h = float(soft_entropy(z, n_bins=16))
    mi = float(soft_mutual_information(z, labels, n_bins=16))
    w = reference_points(16, d)
    p = oracle.assign(z.numpy(), w.numpy(), calibrate_temperature(16, d))
    capacity = h - np.mean([oracle.h(row) for row in p]) / math.log(16)
    n_distinct = len(np.unique(labels))
    assert -1e-12 <= mi <= min(h, capacity, math.log(n_distinct) / math.log(16)) + 1e-12


@pytest.mark.parametrize(
    "z,match",
    [
        (torch.zeros(3, 4), "nonzero norm"),
        (torch.tensor([[1.0, float("nan")], [1.0, 2.0]]), "finite"),
        (torch.tensor([[1.0, float("inf")], [1.0, 2.0]]), "finite"),
        (torch.zeros(0, 4), "N >= 1"),
        (torch.ones(4, 1), "dim"),
        (torch.ones(4), r"\[N, d\]"),
        (torch.ones(4, 3, dtype=torch.int64), "floating"),
    ],
)
def test_bad_z(z, match):
    with pytest.raises(ValueError, match=match):
        soft_entropy(z)


def test_bad_labels():
    z = torch.randn(5, 3)
    with pytest.raises(ValueError, match="integer"):
        soft_mutual_information(z, torch.zeros(5))
    with pytest.raises(ValueError, match="length N=5"):
        soft_mutual_information(z, np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="1-D"):
        soft_mutual_information(z, np.zeros((5, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="temperature"):
        soft_entropy(z, temperature=-1.0)
    with pytest.raises(ValueError, match="n_bins"):
        soft_entropy(z, n_bins=1)
