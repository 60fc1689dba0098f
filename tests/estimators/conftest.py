"""Shared helpers for the soft-entropy tests: an independent numpy float64 oracle."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch


def np_assign(z: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """p [N, m] = softmax(zbar W^T / eps), float64 numpy, written independently of the package."""
    zb = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = zb @ w.T / eps
    s -= s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def np_h(p: np.ndarray) -> float:
    """Shannon entropy (nats) of a probability vector (normalised here)."""
    p = p / p.sum()
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def np_mi(p: np.ndarray, labels: np.ndarray) -> float:
    """I(X;Z)/log m by a plain per-label loop; negative labels are singletons."""
    n, m = p.shape
    cond = 0.0
    for i in np.flatnonzero(labels < 0):
        cond += np_h(p[i]) / n
    for x in np.unique(labels[labels >= 0]):
        rows = p[labels == x]
        cond += len(rows) / n * np_h(rows.sum(0))
    return (np_h(p.sum(0)) - cond) / np.log(m)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def oracle():
    """The numpy oracle as a fixture (test modules do not import conftest by name)."""
    return SimpleNamespace(assign=np_assign, h=np_h, mi=np_mi)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool stalls on a shared machine (restored after)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
