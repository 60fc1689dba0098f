"""Running a plan: forward its batches (all, or a shard's indices) with hooks feeding one accumulator.

One forward per batch with hooks on every hidden state (:mod:`infoplane.probe.capture`); each hook feeds
``acc.update(z [N, d], prepared_labels, layer=l)`` and the state is dropped; the LM head is skipped. The
caller decides what happens to the accumulator next: ``compute()`` on one process,
``compute(sync=True)`` over ranks (:mod:`infoplane.probe.distributed`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from infoplane.probe.capture import (
    HiddenSite,
    HiddenStateCapture,
    find_hidden_sites,
    forward_batch,
    hidden_dims,
)
from infoplane.probe.config import ProbeConfig
from infoplane.probe.plan import ProbeBatch, ProbePlan

__all__ = ["ProbeRun", "make_accumulator", "run_plan"]

_ZERO_SHOWN = 3  # zero positions named in the error message


def _zero_vector_error(batch: ProbeBatch, z: torch.Tensor, names: Sequence[str]) -> ValueError | None:
    """The error for exact zero rows of ``z`` (``[Lz, N, d]``; ``names[k]`` describes its hidden state
    ``k``), naming the hidden state, the text (its index in the corpus), the position and the token id;
    None when no row is zero (the accumulator's error is then about something else)."""
    zero = (z == 0).all(-1).cpu()  # [Lz, N]
    if not bool(zero.any()):
        return None
    where = torch.nonzero(batch.positions, as_tuple=False).tolist()  # sample j -> (row, t), hook order
    parts = []
    for k, j in torch.nonzero(zero, as_tuple=False).tolist()[:_ZERO_SHOWN]:
        row, t = where[j]
        text = batch.text_indices[row] if batch.text_indices is not None else row
        parts.append(f"{names[k]}, text {text}, position {t}, token id {int(batch.input_ids[row, t])}")
    n = int(zero.sum())
    more = f" and {n - _ZERO_SHOWN} more" if n > _ZERO_SHOWN else ""
    return ValueError(f"got {n} zero vector(s): {'; '.join(parts)}{more}. A zero hidden state has no "
                      "direction (e.g. a tokenizer mapping unknown characters to a padding id whose "
                      "embedding row is zero); ProbeConfig(zero_policy='skip') (--zero-policy skip) leaves "
                      "such positions out and counts them")


@dataclass
class ProbeRun:
    """State after :func:`run_plan`: the accumulator (statistics of the forwarded batches), the hook sites,
    the hidden width ``d``, the batch indices forwarded and the forward time in seconds."""

    accumulator: Any
    sites: list[HiddenSite]
    hidden_dim: int
    batch_indices: list[int]
    seconds: float

    @property
    def n_hidden_states(self) -> int:
        return len(self.sites)


def make_accumulator(config: ProbeConfig, dim: int, n_layers: int) -> Any:
    """The soft-entropy accumulator for ``n_layers`` hidden states of width ``dim`` under ``config``
    (reference points and the null permutation seeded by ``config.seed``)."""
    from infoplane.estimators import SoftEntropyAccumulator

    return SoftEntropyAccumulator(dim, n_bins=config.n_bins, seed=config.seed, temperature=config.temperature,
                                  calibration=config.calibration, n_layers=n_layers, null=config.null,
                                  null_seed=config.seed, zero_policy=config.zero_policy)


def run_plan(
    plan: ProbePlan,
    model: torch.nn.Module,
    indices: Sequence[int] | None = None,
    *,
    accumulator: Any = None,
    progress: bool = True,
    desc: str = "probe",
    device: str | torch.device | None = None,
    layers: Sequence[int] | None = None,
    row_counts: dict[str, int] | None = None,
) -> ProbeRun:
    """Forward ``plan.batches`` (all, or those at ``indices``) through ``model``; hooks feed the accumulator.

    Args:
        plan: from :func:`infoplane.probe.plan.prepare_plan`; ``plan.config`` sets the accumulator and
            ``all_layers_update``.
        model: the causal LM (its LM head never runs).
        indices: batch indices to forward (e.g. one rank's shard); None = all.
        accumulator: feed this accumulator instead of a new one from :func:`make_accumulator`.
        progress, desc: progress bar and its label.
        device: where inputs go (default: the device of the model's first parameter, else CPU).
        layers: hidden-state indices (of :func:`find_hidden_sites`) to analyse, ascending; None = all. One
            pass of a :class:`~infoplane.estimators.memory.MemoryPlan`: the accumulator tracks only these
            (its layer ``j`` is hidden state ``layers[j]``) and the forward stops after the last of them.
        row_counts: label rows per label set to reserve up front (exact state, no doubling growth).

    ``plan.config.all_layers_update=False``: every hook calls ``acc.update(z [N, d], labels, layer=l)`` and
    drops ``z`` (memory: one hidden state). ``True``: hooks copy ``z`` into an ``[L, N, d]`` buffer and the
    last hook makes one ``acc.update`` for all layers (less accumulator time; memory: L hidden states of
    the batch's valid positions).
    """
    from tqdm.auto import tqdm

    param = next(model.parameters(), None)
    if device is None:
        device = param.device if param is not None else torch.device("cpu")
    sites = find_hidden_sites(model)
    sel = list(range(len(sites)))
    if layers is not None:
        sel = [int(i) for i in layers]
        if not sel or sel != sorted(set(sel)) or not all(0 <= i < len(sites) for i in sel):
            raise ValueError(f"layers must be distinct ascending hidden-state indices in [0, {len(sites)}), "
                             f"got {list(layers)}")
        sites = [sites[i] for i in sel]
    names = [f"hidden state {i} ({site.name})" for i, site in zip(sel, sites)]
    dims = hidden_dims(model, sites, device)
    if len(set(dims)) != 1:
        raise ValueError(f"hidden states have different widths {sorted(set(dims))}; "
                         "one accumulator needs one d")
    acc = accumulator if accumulator is not None else make_accumulator(plan.config, dims[0], len(dims))
    if row_counts:
        acc.reserve_rows(row_counts)
    n_hidden = len(sites)
    state: dict[str, Any] = {"prepared": None, "buf": None, "batch": None}

    def update(z: torch.Tensor, layer: int | None) -> None:
        try:
            acc.update(z, state["prepared"], layer=layer)
        except ValueError as exc:  # name the text and token of a zero vector (only on failure: no cost)
            err = _zero_vector_error(state["batch"], z.unsqueeze(0) if layer is not None else z,
                                     names[layer: layer + 1] if layer is not None else names)
            if err is None:
                raise
            raise err from exc

    def sink(layer: int, z: torch.Tensor) -> None:
        update(z, layer)

    def buffered_sink(layer: int, z: torch.Tensor) -> None:
        buf = state["buf"]
        if buf is None or buf.shape[1:] != z.shape or buf.dtype != z.dtype or buf.device != z.device:
            buf = state["buf"] = torch.empty((n_hidden, *z.shape), dtype=z.dtype, device=z.device)
        buf[layer].copy_(z)
        if layer == n_hidden - 1:
            update(buf, None)

    idx = list(range(len(plan.batches))) if indices is None else [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < len(plan.batches)]
    if bad:
        raise ValueError(f"batch indices {bad[:5]} out of range: the plan has {len(plan.batches)} batches")
    t0 = time.perf_counter()
    cap = HiddenStateCapture(model, buffered_sink if plan.config.all_layers_update else sink, sites)
    with cap:
        for i in tqdm(idx, desc=desc, disable=not progress, unit="batch"):
            b = plan.batches[i]
            # per-text labels: their null permutes labels across the batch's texts, not its positions
            rows = torch.nonzero(b.positions, as_tuple=False)[:, 0] if plan.sequence_labels else None
            groups = {name: rows for name in plan.sequence_labels if name in b.labels}
            state["prepared"], state["batch"] = acc.prepare_labels(b.labels, groups=groups or None), b
            cap.set_positions(b.positions)
            forward_batch(model, b.input_ids.to(device), b.attention_mask.to(device),
                          None if b.position_ids is None else b.position_ids.to(device))
            if len(cap.fired) != cap.n_hidden:
                raise RuntimeError(f"only hidden states {cap.fired} of {cap.n_hidden} fired in a forward")
    return ProbeRun(acc, sites, dims[0], idx, time.perf_counter() - t0)
