"""Sharded probing over ``torch.distributed`` processes (gloo on CPU, nccl on GPU).

Every rank builds the same plan (same seeded text sample, same label ids from the same no-model pre-pass, so
singletons are global), forwards only its share of the batches (batch ``i`` goes to rank ``i % world``), and
the accumulators' additive statistics are summed across ranks (``acc.compute(sync=True)``). The merged
result therefore equals the single-process one (up to float64 summation order).

Composition: :func:`~infoplane.probe.analyze.prepare` -> :func:`~infoplane.probe.run.run_plan` (this rank's
batches) -> ``compute(sync=True)`` -> :func:`~infoplane.probe.analyze.finish`.

``shard_rows=True`` divides the label-row state by the world size instead of replicating it: every rank keeps
only the rows of the label ids it owns (:class:`~infoplane.estimators.sharded.ShardedRowsAccumulator`), and
each round of batches (batch ``k * world + r`` on rank ``r``) is one collective update in which the
per-position assignments reach the owning rank. The memory plan is made from the largest per-rank share, so
every rank runs the same passes.

:func:`sweep_distributed` spreads the checkpoints of a sweep over the ranks instead (each checkpoint analysed
whole by one rank), resumable per checkpoint; rank 0 writes the merged table.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from infoplane.estimators.memory import MemoryPlan, plan_passes
from infoplane.probe.analyze import PreparedProbe, finish, prepare, run_planned
from infoplane.probe.capture import HiddenStateCapture, find_hidden_sites, forward_batch, hidden_dims
from infoplane.probe.config import ProbeConfig
from infoplane.probe.memory import batch_positions
from infoplane.probe.result import ProbeResult
from infoplane.probe.run import ProbeRun
from infoplane.probe.sweep import SweepResult, analyse_one, assemble, open_sweep, screen, unique_checkpoints

__all__ = ["shard_indices", "analyze_distributed", "sweep_distributed"]


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
    shard_rows: bool = False,
) -> ProbeResult:
    """:func:`~infoplane.probe.analyze.analyze` on the current process group; every rank gets the full result.

    Requires ``torch.distributed`` to be initialised (e.g. ``init_process_group("gloo")`` or torchrun).
    Arguments as in :func:`~infoplane.probe.analyze.analyze`, plus ``group`` (default: the world) and
    ``shard_rows``: False (default) replicates every label row on every rank and sums the statistics at the
    end (data parallel); True keeps each label row on one rank only (label id modulo the world size), so the
    label-row state per rank is about ``1 / world`` of the single-process state (CPU tensors on gloo;
    ``zero_policy="skip"`` is not supported there). Only rank 0 shows a progress bar and writes ``out``.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("torch.distributed is not initialised: call init_process_group first "
                         "(or use analyze() for a single process)")
    if not isinstance(shard_rows, bool):
        raise ValueError(f"shard_rows must be True or False, got {shard_rows!r}")
    if shard_rows and dist.get_backend(group) != "gloo":
        raise ValueError(f"shard_rows=True exchanges CPU tensors and needs a gloo process group, got "
                         f"backend {dist.get_backend(group)!r}: pass "
                         "group=torch.distributed.new_group(backend='gloo')")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    prepared = prepare(model, corpus, config, tokenizer=tokenizer, sequence_values=sequence_values,
                       model_name=model_name, step=step, device=device, gguf_file=gguf_file,
                       trust_remote_code=trust_remote_code)
    indices = shard_indices(len(prepared.plan.batches), rank, world)
    budget = _agreed_budget(prepared.config.memory_budget, device, group)
    if shard_rows:
        run, res, mplan = _run_sharded_rows(prepared, rank, world, group, budget, progress and rank == 0)
        result = finish(prepared, run, res, shard=(rank, world))
        result.metadata.update(world_size=world, shard_rows=True, memory_plan=mplan.to_dict(),
                               label_rows_local=run.accumulator.local_rows())
        if out is not None and rank == 0:
            result.save(out)
        return result
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


def _owned_counts(prepared: PreparedProbe, rank: int, world: int, group: Any) -> tuple[dict[str, int], dict]:
    """(this rank's label rows per set, the largest share over the ranks per set) from the label pre-pass."""
    import torch.distributed as dist

    from infoplane.estimators.sharded import owned_row_counts

    batches = prepared.plan.batches
    names = sorted(batches[0].labels) if batches else []
    ids = {k: np.concatenate([b.labels[k].numpy() for b in batches]) for k in names}
    mine = owned_row_counts(ids, rank, world)
    t = torch.tensor([mine[k] for k in names], dtype=torch.int64)
    if dist.get_backend(group) == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return mine, dict(zip(names, (int(x) for x in t.cpu())))


def _run_sharded_rows(prepared: PreparedProbe, rank: int, world: int, group: Any, budget: int,
                      progress: bool) -> tuple[ProbeRun, Any, MemoryPlan]:
    """Every round of ``world`` batches is one collective update of a :class:`ShardedRowsAccumulator`
    (a rank without a batch in the last round contributes an empty one); one pass per layer group."""
    from tqdm.auto import tqdm

    from infoplane.estimators.result import concat_layers
    from infoplane.estimators.sharded import ShardedRowsAccumulator

    cfg, plan, model = prepared.config, prepared.plan, prepared.model
    if cfg.zero_policy != "error":
        raise ValueError(f"shard_rows=True supports zero_policy='error' only, got {cfg.zero_policy!r}")
    param = next(model.parameters(), None)
    fwd_device = param.device if param is not None else torch.device("cpu")
    all_sites = find_hidden_sites(model)
    dims = hidden_dims(model, all_sites, fwd_device)
    if len(set(dims)) != 1:
        raise ValueError(f"hidden states have different widths {sorted(set(dims))}; "
                         "one accumulator needs one d")
    d, n_all = dims[0], len(all_sites)
    mine, most = _owned_counts(prepared, rank, world, group)
    # scratch: this rank's p plus every rank's gathered p, and the [L, N, d] hidden-state buffer
    mplan = plan_passes(most, n_all, cfg.n_bins, cfg.null, batch_positions(plan) * (world + 1), budget,
                        fwd_device.type, True, d)
    if progress:
        print(mplan.describe() + f" (label rows sharded over {world} ranks)", file=sys.stderr)
    names = sorted(plan.batches[0].labels) if plan.batches else []
    n_rounds = -(-len(plan.batches) // world)
    mine_idx = [i for i in range(rank, len(plan.batches), world)]
    parts, seconds, acc = [], 0.0, None
    buf: dict[int, torch.Tensor] = {}
    for k, layers in enumerate(mplan.groups):
        sites = [all_sites[i] for i in layers]
        acc = ShardedRowsAccumulator(d, n_bins=cfg.n_bins, seed=cfg.seed, temperature=cfg.temperature,
                                     calibration=cfg.calibration, n_layers=len(sites), null=cfg.null,
                                     null_seed=cfg.seed, group=group)
        acc.reserve_rows(mine)
        cap = HiddenStateCapture(model, buf.__setitem__, sites)
        desc = prepared.name if mplan.n_passes == 1 else f"{prepared.name} [pass {k + 1}/{mplan.n_passes}]"
        t0 = time.perf_counter()
        with cap:
            for r in tqdm(range(n_rounds), desc=desc, disable=not progress, unit="round"):
                i = r * world + rank
                if i >= len(plan.batches):
                    empty = {n: torch.zeros(0, dtype=torch.int64) for n in names}
                    acc.update(torch.zeros(len(sites), 0, d), empty)
                    continue
                b = plan.batches[i]
                buf.clear()
                cap.set_positions(b.positions)
                forward_batch(model, b.input_ids.to(fwd_device), b.attention_mask.to(fwd_device),
                              None if b.position_ids is None else b.position_ids.to(fwd_device))
                if len(buf) != len(sites):
                    raise RuntimeError(f"only hidden states {sorted(buf)} of {len(sites)} fired in a forward")
                z = torch.stack([buf[j] for j in range(len(sites))])
                rows = torch.nonzero(b.positions, as_tuple=False)[:, 0] if plan.sequence_labels else None
                groups = {n: rows for n in plan.sequence_labels if n in b.labels} if cfg.null else None
                acc.update(z, b.labels, groups=groups or None)
        seconds += time.perf_counter() - t0
        parts.append(acc.compute())
    run = ProbeRun(acc, all_sites, d, mine_idx, seconds)
    return run, (parts[0] if len(parts) == 1 else concat_layers(parts)), mplan


def _agree(error: BaseException | None, group: Any) -> None:
    """Raise on every rank when any rank failed (its own exception there, a ValueError naming the failed
    ranks elsewhere), so that no rank is left waiting in a later collective."""
    import torch.distributed as dist

    msgs: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(msgs, None if error is None else f"{type(error).__name__}: {error}", group=group)
    failed = {r: m for r, m in enumerate(msgs) if m is not None}
    if not failed:
        return
    if error is not None:
        raise error
    raise ValueError(f"the distributed sweep failed on rank(s) {sorted(failed)}: {failed}")


def sweep_distributed(
    checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
    corpus: Any = "kjv",
    config: ProbeConfig | None = None,
    *,
    out: str | os.PathLike = "sweep",
    group: Any = None,
    tokenizer: Any = None,
    sequence_values: Mapping[str, Sequence[Any]] | None = None,
    resume: bool = True,
    progress: bool = True,
    device: str | Any = "cpu",
    analyze_fn: Any = None,
    strict: bool = False,
) -> SweepResult:
    """:func:`~infoplane.probe.sweep.sweep` with the checkpoints spread over the ranks of ``group``.

    Rank 0 checks the resume guard and writes it; the integrity checks and weight hashes are split over the
    ranks (checkpoint ``i`` on rank ``i % world``) and shared, so duplicates and corrupt checkpoints are
    decided once for all; the checkpoints to analyse (intact, first of their weights) are dealt round robin
    (the ``k``-th on rank ``k % world``). Every finished checkpoint is written to ``out/checkpoints`` at once,
    so a killed sweep resumes (rerun the same command) without recomputing it. The rows are gathered; rank
    0 writes ``sweep.csv``/``sweep_plane.csv``/``sweep.json`` and every rank returns the merged result. A
    failure on one rank raises on every rank. Arguments as in :func:`~infoplane.probe.sweep.sweep`.
    """
    import torch.distributed as dist

    from infoplane.probe.analyze import analyze

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("torch.distributed is not initialised: call init_process_group first "
                         "(or use sweep() for a single process)")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    fn = analyze_fn or analyze
    sw, error = None, None
    args = (checkpoints, corpus, config, out, tokenizer, sequence_values, resume, device)
    if rank == 0:  # one writer of the guard; the others open after it
        try:
            sw = open_sweep(*args, write=True)
        except (ValueError, OSError) as exc:
            error = exc
    _agree(error, group)
    if rank != 0:
        try:
            sw = open_sweep(*args, write=False)
        except (ValueError, OSError) as exc:
            error = exc
    _agree(error, group)
    assert sw is not None
    mine: dict[int, dict[str, Any]] = {}
    try:
        for i in range(rank, len(sw.ckpts), world):
            mine[i] = screen(sw, sw.ckpts[i], strict)
    except ValueError as exc:
        error = exc
    _agree(error, group)
    shared: list[Any] = [None] * world
    dist.all_gather_object(shared, (mine, sw.hashes), group=group)
    status = [{} for _ in sw.ckpts]
    for part, hashes in shared:
        for i, st in part.items():
            status[i] = st
            path = str(sw.ckpts[i].path)
            if path in hashes:
                sw.hashes[path] = hashes[path]
    todo, _ = unique_checkpoints(sw, status)
    done: dict[int, tuple[list[dict[str, Any]], dict[str, Any], bool]] = {}
    try:
        for i in todo[rank::world]:
            done[i] = analyse_one(sw, sw.ckpts[i], status[i]["sha256"], fn, resume, tokenizer=tokenizer,
                                  sequence_values=sequence_values, device=device, progress=progress)
    except Exception as exc:  # noqa: BLE001 -- re-raised on this rank by _agree, reported on the others
        error = exc
    _agree(error, group)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, done, group=group)
    parts, metas, computed = {}, {}, []
    for i in todo:
        rows, meta, now = next(g[i] for g in gathered if i in g)
        parts[i], metas[sw.ckpts[i].name] = rows, meta
        if now:
            computed.append(sw.ckpts[i].name)
    result = assemble(sw, status, parts, metas, computed, write=rank == 0)
    dist.barrier(group=group)  # the merged files exist when any rank returns
    return result
