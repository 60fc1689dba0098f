"""Exact state size of the soft-entropy accumulator and a pass plan that fits a memory budget.

Representation (chosen, not approximated): every label row stays float64, as in the reference
implementation (soft-entropy, accumulator.py), so results are unchanged bit for bit. What is bounded is how
many rows live at once: the hidden states (layers) are split into contiguous groups, one pass over the data
per group, each with its own accumulator. Every per-layer quantity depends only on that layer's rows, so the
passes together give exactly the one-pass result (same reference points, temperature, null permutation).

Bytes of one accumulator over ``L`` layers, ``m`` reference points and label sets with ``K_s`` rows
(labels seen at least twice; singletons have no row), with rows reserved exactly (:meth:`reserve_rows`):

* base: ``L * (m + 3) * 8`` (``c``, ``n``, ``sum H(p_i)``, skipped);
* per label set: ``R_s = max(K_s + 1, 16)`` rows (row 0 = singletons) of ``L * (m + 1) * 8`` bytes, plus
  ``L * m * 8`` more with the permutation null, plus ``3 * L * 8`` (singleton sums) and key tables
  ``(2 K_s + R_s) * 8``;
* scratch between updates (:class:`~infoplane.estimators.kernel.Workspace`), for ``N`` positions per batch:
  ``8 * N * L * m`` (the float64 assignments, or the staging buffer of layer-by-layer updates) plus
  ``8 * N * m`` per layer worker thread (logits and exp of one layer) on the CPU; ``16 * N * L * m`` for
  one ``[L, N, d]`` update on other devices (float32 logits and exp of all layers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MemoryPlan", "state_bytes", "workspace_bytes", "plan_passes", "available_memory",
           "format_bytes", "MIN_ROWS"]

MIN_ROWS = 16  # a label set's initial row capacity (labels.LabelRows)
_F64 = 8


def _rows(k: int) -> int:
    return max(int(k) + 1, MIN_ROWS)


def state_bytes(row_counts: Mapping[str, int], n_layers: int, n_bins: int, null: bool) -> int:
    """Bytes of an accumulator's statistics with ``row_counts[name] = K`` label rows reserved exactly
    (equals ``acc.state_nbytes(reserved=True)`` after :meth:`SoftEntropyAccumulator.reserve_rows`)."""
    L, m = int(n_layers), int(n_bins)
    total = L * (m + 3) * _F64  # c [L, m], n, sum H(p_i), skipped [L]
    for k in row_counts.values():
        r = _rows(k)
        per_row = L * (m + 1) * _F64 + (L * m * _F64 if null else 0)  # C_x [L, m], n_x [L] (+ null C_x)
        total += r * per_row + 3 * L * _F64 + (2 * int(k) + r) * _F64
    return total


def workspace_bytes(n_layers: int, n_bins: int, batch_positions: int, device_type: str = "cpu",
                    all_layers_update: bool = False, dim: int = 0) -> int:
    """Scratch bytes kept between updates for batches of ``batch_positions`` analysed positions (an upper
    estimate; plus the ``[L, N, d]`` float32 buffer of the probe when ``all_layers_update``)."""
    L, m, n = int(n_layers), int(n_bins), int(batch_positions)
    hidden = 4 * n * L * int(dim) if all_layers_update else 0  # the probe's [L, N, d] float32 buffer
    if all_layers_update and device_type != "cpu":
        return 16 * n * L * m + hidden
    import torch

    workers = max(1, min(L, torch.get_num_threads()))  # layer worker threads, one logits buffer each
    return _F64 * n * L * m + _F64 * n * m * workers + hidden


@dataclass(frozen=True)
class MemoryPlan:
    """Layer groups processed in separate passes and their bytes.

    ``groups``: contiguous layer indices of each pass; ``pass_bytes``: state + scratch of each pass;
    ``state_bytes_one_pass``: what a single pass over every layer would hold; ``budget``: the limit (bytes).
    """

    groups: tuple[tuple[int, ...], ...]
    pass_bytes: tuple[int, ...]
    state_bytes_one_pass: int
    budget: int
    row_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_passes(self) -> int:
        return len(self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"n_passes": self.n_passes, "groups": [list(g) for g in self.groups],
                "pass_bytes": list(self.pass_bytes), "state_bytes_one_pass": self.state_bytes_one_pass,
                "budget": self.budget, "label_rows": dict(self.row_counts)}

    def describe(self) -> str:
        first, last = self.groups[0], self.groups[-1]
        return (f"memory plan: {self.n_passes} pass(es) of <= {len(first)} layer(s) "
                f"(layers {first[0]}..{last[-1]}), <= {format_bytes(max(self.pass_bytes))} per pass, "
                f"budget {format_bytes(self.budget)}; one pass would hold "
                f"{format_bytes(self.state_bytes_one_pass)} of state")


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def plan_passes(row_counts: Mapping[str, int], n_layers: int, n_bins: int, null: bool, batch_positions: int,
                budget: int, device_type: str = "cpu", all_layers_update: bool = False,
                dim: int = 0) -> MemoryPlan:
    """The fewest passes (contiguous, balanced layer groups) whose state plus scratch fits ``budget`` bytes.

    Raises ``ValueError`` when even one layer per pass does not fit, naming the bytes needed and the budget.
    """
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"memory budget must be a positive number of bytes, got {budget!r}")
    L = int(n_layers)
    counts = {k: int(v) for k, v in row_counts.items()}

    def need(n_l: int) -> int:
        return (state_bytes(counts, n_l, n_bins, null)
                + workspace_bytes(n_l, n_bins, batch_positions, device_type, all_layers_update, dim))

    one = state_bytes(counts, L, n_bins, null)
    for n_passes in range(1, L + 1):
        size = math.ceil(L / n_passes)
        if math.ceil(L / size) != n_passes:  # the same group size as a smaller number of passes
            continue
        if need(size) <= budget:
            groups = tuple(tuple(range(a, min(a + size, L))) for a in range(0, L, size))
            return MemoryPlan(groups, tuple(need(len(g)) for g in groups), one, budget, counts)
    raise ValueError(
        f"the probe state does not fit the memory budget of {format_bytes(budget)} ({budget} bytes) even "
        f"with one layer per pass: one layer needs {format_bytes(need(1))} ({need(1)} bytes: "
        f"{sum(counts.values())} label rows over {len(counts)} label sets, m={n_bins}, null={null}, "
        f"{batch_positions} positions per batch); all {L} layers in one pass would need "
        f"{format_bytes(need(L))}. "
        "Raise memory_budget, lower max_tokens, use fewer n-gram orders or min_count > 1, or shard the label "
        "rows over ranks (infoplane.estimators.ShardedRowsAccumulator)"
    )


def available_memory(device: Any = "cpu", fraction: float = 0.5) -> int:
    """``fraction`` of the memory available now: free GPU memory for a CUDA device, else the system's
    ``MemAvailable`` (``/proc/meminfo``; total physical memory where that is unreadable) plus the idle
    huge-page mappings this process keeps for reuse (:func:`.hostmem.idle_bytes`)."""
    import torch

    from .hostmem import idle_bytes, mem_available, physical_memory

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * fraction)
    avail = mem_available()
    if avail is not None:
        return int((avail + idle_bytes()) * fraction)
    total = physical_memory()
    return int((total if total is not None else 8 << 30) * fraction)
