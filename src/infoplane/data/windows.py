"""Fixed validation batches from a held-out token stream, shared by in-memory splits
(:mod:`infoplane.data.lm_data`) and token shards (:mod:`infoplane.data.shards`).

- :func:`epoch_windows`: the seeded random offset and window order of one training epoch;
- :func:`val_batches`: consecutive windows of T+1 tokens at stride T from the start of the stream, grouped
  into [B, T] (input, target) batches.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["val_batches", "epoch_windows"]


def epoch_windows(seed: int, epoch: int, n_tokens: int, block_size: int) -> tuple[int, np.ndarray]:
    """``(offset, order)`` of one training epoch over a stream of ``n_tokens``: a random offset in
    ``[0, T)``, then a permutation of the ``(n_tokens - 1 - offset) // T`` non-overlapping windows of T+1
    tokens starting there (numpy PCG64 seeded by ``[seed, epoch]``)."""
    rng = np.random.default_rng([seed, epoch])
    offset = int(rng.integers(0, block_size))
    return offset, rng.permutation((n_tokens - 1 - offset) // block_size)


def val_batches(tokens: torch.Tensor, batch_size: int, block_size: int,
                max_batches: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Deterministic validation batches: consecutive windows of T+1 tokens (stride T) from the start of the
    held-out stream, grouped by ``batch_size`` (last partial batch kept), at most ``max_batches``.

    ``tokens``: [N] token ids (a tensor or anything indexable by a [B, T+1] index tensor); returns a list of
    (input, target) pairs, each [B, T] with B <= ``batch_size`` and T = ``block_size``."""
    T = block_size
    n = (len(tokens) - 1) // T
    if n < 1:
        return []
    starts = torch.arange(n) * T
    out = []
    for b in range(0, n, batch_size):
        if max_batches is not None and len(out) >= max_batches:
            break
        idx = starts[b:b + batch_size, None] + torch.arange(T + 1)[None, :]
        w = tokens[idx]
        out.append((w[:, :-1].contiguous(), w[:, 1:].contiguous()))
    return out
