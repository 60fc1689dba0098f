"""Seeded reference points: recipe, determinism, hash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoplane.estimators import reference_hash, reference_points


def test_recipe_and_unit_rows():
    w = reference_points(100, 64, seed=3)
    assert w.dtype == torch.float64 and w.device.type == "cpu" and w.shape == (100, 64)
    raw = np.random.default_rng(3).standard_normal((100, 64))  # documented recipe: numpy PCG64
    np.testing.assert_array_equal(w.numpy(), raw / np.linalg.norm(raw, axis=1, keepdims=True))
    np.testing.assert_allclose(torch.linalg.vector_norm(w, dim=1).numpy(), 1.0, atol=1e-15)


def test_deterministic_and_independent_copies():
    a, b = reference_points(10, 5), reference_points(10, 5)
    assert torch.equal(a, b)
    a.zero_()  # callers get their own copy; the cache is untouched
    assert torch.equal(reference_points(10, 5), b)


def test_hash():
    w = reference_points(100, 32)
    h = reference_hash(w)
    assert isinstance(h, str) and len(h) == 16
    assert h == reference_hash(w.numpy()) == reference_hash(reference_points(100, 32))
    assert h != reference_hash(reference_points(100, 32, seed=1))
    assert h != reference_hash(w.reshape(50, 64))  # shape is part of the hash


@pytest.mark.parametrize("args", [(1, 4), (4, 1), (4, 4, -1), (4, 4, 1.5)])
def test_bad_input(args):
    with pytest.raises(ValueError):
        reference_points(*args)
