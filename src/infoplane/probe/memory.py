"""The probe's memory plan: exact label-row counts from the label pre-pass -> layer groups per pass.

The pre-pass (:func:`infoplane.probe.plan.prepare_plan`) has already labelled every analysed position, so
the number of label rows of every label set (distinct non-negative ids; singletons have none) and hence the
accumulator's state are known exactly before any forward pass (:mod:`infoplane.estimators.memory`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from infoplane.estimators.memory import MemoryPlan, available_memory, plan_passes
from infoplane.probe.plan import ProbePlan

__all__ = ["label_row_counts", "plan_memory", "batch_positions"]


def label_row_counts(plan: ProbePlan, indices: list[int] | None = None) -> dict[str, int]:
    """Distinct non-negative label ids per label set over the plan's batches (all, or those at ``indices``):
    the label rows an accumulator fed with them holds."""
    batches = plan.batches if indices is None else [plan.batches[i] for i in indices]
    if not batches:
        return {}
    out: dict[str, int] = {}
    for name in batches[0].labels:
        ids = np.concatenate([b.labels[name].numpy() for b in batches]) if batches else np.zeros(0)
        out[name] = int(len(np.unique(ids[ids >= 0])))
    return out


def batch_positions(plan: ProbePlan) -> int:
    """The most analysed positions of one batch (sets the scratch buffers' size)."""
    return max((int(b.positions.sum()) for b in plan.batches if b.positions is not None), default=0)


def plan_memory(plan: ProbePlan, n_layers: int, dim: int, device: str | torch.device = "cpu",
                indices: list[int] | None = None, budget: int | None = None) -> MemoryPlan:
    """Layer groups per pass so that the accumulator of one pass fits ``budget`` bytes (default:
    ``plan.config.memory_budget``, else half the available RAM, or free GPU memory on CUDA).
    Raises ``ValueError`` (never an out-of-memory kill) when one layer per pass does not fit."""
    cfg = plan.config
    if budget is None:
        budget = cfg.memory_budget if cfg.memory_budget is not None else available_memory(device)
    dev: Any = torch.device(device)
    return plan_passes(label_row_counts(plan, indices), n_layers, cfg.n_bins, cfg.null, batch_positions(plan),
                       int(budget), dev.type, cfg.all_layers_update, dim)
