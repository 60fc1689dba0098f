"""Sharded probing over ``torch.distributed`` processes (gloo on CPU, nccl on GPU).

Every rank builds the same plan (same seeded text sample, same label ids from the same no-model pre-pass, so
singletons are global), forwards only its share of the batches (batch ``i`` goes to rank ``i % world``), and
the accumulators' additive statistics are summed across ranks (``acc.sync``) before ``compute()``. The merged
result therefore equals the single-process one (up to float64 summation order).
"""

from __future__ import annotations

from typing import Any

__all__ = ["shard_indices", "analyze_distributed"]


def shard_indices(n_items: int, rank: int, world_size: int) -> list[int]:
    """Indices ``rank, rank + world, ...`` of ``n_items`` (round robin; shards are disjoint and cover all)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(range(rank, n_items, world_size))


def analyze_distributed(model: Any, corpus: Any = "kjv", group: Any = None, **kwargs: Any):
    """:func:`~infoplane.probe.analyze.analyze` on the current process group; each rank gets the full result.

    Requires ``torch.distributed`` to be initialised (e.g. ``init_process_group("gloo")`` or torchrun).
    Only rank 0 shows a progress bar and writes ``out_dir`` (if given).
    """
    import torch.distributed as dist

    from infoplane.probe.analyze import analyze

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("torch.distributed is not initialised: call init_process_group first "
                         "(or use analyze() for a single process)")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    out_dir = kwargs.pop("out_dir", None)
    kwargs.setdefault("progress", rank == 0)
    if rank != 0:
        kwargs["progress"] = False
    result = analyze(model, corpus, shard=(rank, world), group=group, **kwargs)
    result.metadata["world_size"] = world
    if out_dir is not None and rank == 0:
        result.save(out_dir)
    return result
