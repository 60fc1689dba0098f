"""Learning-rate schedule, once for every trainer: linear warm-up, then constant or cosine decay (nanoGPT)."""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["lr_at", "ScheduleSettings", "SCHEDULES", "check_schedule", "cooldown_steps"]

SCHEDULES = ("cosine", "constant", "constant_cooldown")
DEFAULT_COOLDOWN = 0.2  # share of the run spent in the final cooldown (Hagele et al. 2024, sec. 3: 20 %)


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
    if cfg.schedule.startswith("constant_cooldown"):
        return _constant_cooldown(step, cfg)
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
    span = max(cfg.steps - cfg.warmup_steps, 1)
    frac = min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
    # cosine (Loshchilov & Hutter 2017, SGDR eq. 5): lr_min + 0.5 (lr - lr_min)(1 + cos(pi * frac))
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * frac))


def check_schedule(name: object) -> str:
    """``name`` when it is a valid schedule: ``"cosine"``, ``"constant"``, ``"constant_cooldown"`` (the last
    20 % of the steps) or ``"constant_cooldown:F"`` (the last share ``F`` in (0, 1) of the steps); else a
    ValueError saying what is accepted."""
    if isinstance(name, str) and name in SCHEDULES:
        return name
    if isinstance(name, str) and name.startswith("constant_cooldown:"):
        _cooldown_share(name)
        return name
    raise ValueError(f"schedule must be one of {SCHEDULES} or 'constant_cooldown:F' (F in (0, 1)), "
                     f"got {name!r}")


def _cooldown_share(name: str) -> float:
    _, _, tail = name.partition(":")
    if not tail:
        return DEFAULT_COOLDOWN
    try:
        share = float(tail)
    except ValueError:
        share = math.nan
    if not 0.0 < share < 1.0:
        raise ValueError(f"schedule {name!r}: the cooldown share after ':' must be a number in (0, 1), "
                         f"got {tail!r}")
    return share


def cooldown_steps(cfg: ScheduleSettings) -> int:
    """Optimiser steps of the final cooldown of a ``constant_cooldown`` schedule (0 for other schedules)."""
    if not cfg.schedule.startswith("constant_cooldown"):
        return 0
    return max(1, int(round(_cooldown_share(cfg.schedule) * cfg.steps)))


def _constant_cooldown(step: int, cfg: ScheduleSettings) -> float:
    # warmup-stable-decay (Hagele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
    # Training Durations", sec. 3): constant lr, then linear decay to min_lr_ratio * lr at the last step
    n_cool = cooldown_steps(cfg)
    start = cfg.steps - n_cool
    if step < start:
        return cfg.lr
    frac = min((step - start + 1) / n_cool, 1.0)
    lo = cfg.lr * cfg.min_lr_ratio
    return cfg.lr + (lo - cfg.lr) * frac
