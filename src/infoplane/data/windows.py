"""Fixed validation batches from a held-out token stream, shared by in-memory splits
(:mod:`infoplane.data.lm_data`) and token shards (:mod:`infoplane.data.shards`).

- :func:`epoch_windows`: the seeded random offset and window order of one training epoch, and
  :class:`WindowSampler`, the resumable state both training samplers share;
- :func:`val_batches`: consecutive windows of T+1 tokens at stride T from the start of the stream, grouped
  into [B, T] (input, target) batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["val_batches", "epoch_windows", "WindowSampler"]


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


class WindowSampler:
    """Epoch plan and resumable state shared by the in-memory and the shard sampler: subclasses set
    ``tokens`` (anything with ``len``), ``batch_size``, ``block_size``, ``seed``, ``epoch``, ``position``,
    ``_order`` and ``_offset``, and implement ``next_batch``."""

    tokens: Any
    batch_size: int
    block_size: int
    seed: int
    epoch: int
    position: int
    _order: np.ndarray | None
    _offset: int

    def _plan(self) -> None:
        self._offset, self._order = epoch_windows(self.seed, self.epoch, len(self.tokens), self.block_size)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "batch_size": self.batch_size, "block_size": self.block_size, "n_tokens": len(self.tokens)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for k in ("batch_size", "block_size", "n_tokens"):
            mine = len(self.tokens) if k == "n_tokens" else getattr(self, k)
            if k in state and int(state[k]) != mine:
                raise ValueError(f"sampler state has {k}={state[k]} but this {type(self).__name__} has "
                                 f"{mine}")
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._order = None
