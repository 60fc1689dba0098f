"""Sharded probing over ``torch.distributed`` processes (gloo on CPU, nccl on GPU).

Every rank builds the same plan (same seeded text sample, same label ids from the same no-model pre-pass, so
singletons are global), forwards only its share of the batches (batch ``i`` goes to rank ``i % world``), and
the accumulators' additive statistics are summed across ranks (``acc.compute(sync=True)``). The merged
result therefore equals the single-process one (up to float64 summation order).

Composition: :func:`~infoplane.probe.analyze.prepare` -> :func:`~infoplane.probe.run.run_plan` (this rank's
batches) -> ``compute(sync=True)`` -> :func:`~infoplane.probe.analyze.finish`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from infoplane.probe.analyze import finish, prepare, run_planned
from infoplane.probe.config import ProbeConfig
from infoplane.probe.result import ProbeResult

__all__ = ["shard_indices", "analyze_distributed"]


def shard_indices(n_items: int, rank: int, world_size: int) -> list[int]:
    """Indices ``rank, rank + world, ...`` of ``n_items`` (round robin; shards are disjoint and cover all)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(range(rank, n_items, world_size))


def _agreed_budget(budget: int | None, device: Any, group: Any) -> int:
    """``budget`` or the default (half the available memory), reduced to the minimum over the ranks."""
    import torch.distributed as dist

    from infoplane.estimators.memory import available_memory

    mine = budget if budget is not None else available_memory(device)
    t = torch.tensor([mine], dtype=torch.int64)
    if dist.get_backend(group) == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group)
    return int(t.item())


def analyze_distributed(
    model: str | os.PathLike | torch.nn.Module | Any,
    corpus: Any = "kjv",
    config: ProbeConfig | None = None,
    *,
    group: Any = None,
    tokenizer: Any = None,
    sequence_values: Mapping[str, Sequence[Any]] | None = None,
    model_name: str | None = None,
    step: int | None = None,
    device: str | torch.device = "cpu",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    out: str | os.PathLike | None = None,
) -> ProbeResult:
    """:func:`~infoplane.probe.analyze.analyze` on the current process group; every rank gets the full result.

    Requires ``torch.distributed`` to be initialised (e.g. ``init_process_group("gloo")`` or torchrun).
    Arguments as in :func:`~infoplane.probe.analyze.analyze`, plus ``group`` (default: the world). Only rank
    0 shows a progress bar and writes ``out`` (if given).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("torch.distributed is not initialised: call init_process_group first "
                         "(or use analyze() for a single process)")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    prepared = prepare(model, corpus, config, tokenizer=tokenizer, sequence_values=sequence_values,
                       model_name=model_name, step=step, device=device, gguf_file=gguf_file,
                       trust_remote_code=trust_remote_code)
    indices = shard_indices(len(prepared.plan.batches), rank, world)
    budget = _agreed_budget(prepared.config.memory_budget, device, group)
    # every rank plans with the whole plan's label rows and the same budget: the same passes everywhere
    # (the syncs below are collectives), and room for the merged total each rank builds to compute
    run, res, mplan = run_planned(
        prepared, indices, progress=progress and rank == 0, device=device,
        # the sum over ranks goes into a temporary; this rank's accumulator keeps its own shard (idempotent)
        compute=lambda acc: acc.compute(sync=True, group=group),
        budget_indices=list(range(len(prepared.plan.batches))), budget=budget)
    result = finish(prepared, run, res, shard=(rank, world))
    result.metadata["world_size"] = world
    result.metadata["memory_plan"] = mplan.to_dict()
    if out is not None and rank == 0:
        result.save(out)
    return result
