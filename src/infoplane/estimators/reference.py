"""Seeded reference points ("bins") on the unit sphere.

The points are drawn on the CPU in float64 from numpy's PCG64 generator,
``np.random.default_rng(seed).standard_normal((m, d))``, and each row is L2-normalised, so they are
uniform on S^{d-1} and bit-identical on every machine and device (the soft-entropy
reference implementation draws them from a device-dependent torch generator instead). Shared by all
batches, layers and models: the key to comparability across runs.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

from .validation import check_dim, check_n_bins

__all__ = ["reference_points", "reference_hash"]


@lru_cache(maxsize=64)
def _reference_array(n_bins: int, dim: int, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).standard_normal((n_bins, dim))  # numpy PCG64, float64
    w /= np.linalg.norm(w, axis=1, keepdims=True)  # rows uniform on S^{d-1}
    w.setflags(write=False)
    return w


def reference_points(n_bins: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Reference points ``W: [n_bins, dim]`` float64 on CPU with unit-norm rows.

    Args:
        n_bins: number of points ``m`` (>= 2).
        dim: dimension ``d`` (>= 2).
        seed: non-negative integer seed of ``np.random.default_rng``.
    """
    n_bins = check_n_bins(n_bins)
    dim = check_dim(dim)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.from_numpy(_reference_array(n_bins, dim, int(seed)).copy())


def reference_hash(w: torch.Tensor | np.ndarray) -> str:
    """Short content hash (16 hex chars of SHA-256) of reference points, over shape + float64 bytes."""
    arr = w.detach().to("cpu", torch.float64).numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    arr = np.ascontiguousarray(arr, dtype="<f8")
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]
