"""Multiplicity correction across the claims of one report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._checks import NAN, as_1d

__all__ = ["holm"]


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order.

    Sorted ascending ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
    (Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6:65).
    NaN entries (claims not tested) are left out of the family and stay NaN. Rejecting where
    ``adj < alpha`` controls the family-wise error rate at ``alpha``.
    """
    p = as_1d(p_values, "p_values")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0.0) | (p[ok] > 1.0)):
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN), got {p.tolist()!r}")
    out = np.full(p.shape, NAN)
    idx = np.flatnonzero(ok)
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    # Holm 1979: multiplier m - j + 1 for the j-th smallest, monotone by running maximum, cap at 1
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out
