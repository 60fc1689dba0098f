"""Learning-rate schedule, once for every trainer: linear warm-up, then constant or cosine decay (nanoGPT)."""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["lr_at", "ScheduleSettings"]


class ScheduleSettings(Protocol):
    """Any config with these fields (``TrainConfig``, the experiments' configs)."""

    lr: float
    steps: int
    warmup_steps: int
    schedule: str
    min_lr_ratio: float


def lr_at(step: int, cfg: ScheduleSettings) -> float:
    """Learning rate of 0-based optimiser step ``step``: linear warm-up over ``warmup_steps``, then constant
    (``schedule="constant"``) or cosine decay to ``min_lr_ratio * lr`` at the last step (``"cosine"``)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
    span = max(cfg.steps - cfg.warmup_steps, 1)
    frac = min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
    # cosine (Loshchilov & Hutter 2017, SGDR eq. 5): lr_min + 0.5 (lr - lr_min)(1 + cos(pi * frac))
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * frac))
