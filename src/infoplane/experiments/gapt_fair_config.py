"""Settings of experiment 7, GAPT tested fairly (:mod:`infoplane.experiments.gapt_fair`): the regimes, the
fixed arms, the windowed phase controller and :class:`GaptFairConfig` with its quick / demo / full tiers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REGIMES = ("undertrained", "overfit")
FIXED_ARMS = ("baseline", "half_ce", "paper_era")

__all__ = ["REGIMES", "FIXED_ARMS", "GaptFairConfig"]


def _windowed(w: int) -> dict[str, Any]:
    return {
        "rule": "windowed",
        "patience_mem": w,
        "patience_comp": w,
        "tau_ce": 0.01,
        "tau_mbe": 0.01,
        "spike_tol": 0.1,
        "ema": None,
    }


@dataclass(frozen=True)
class GaptFairConfig:
    """Settings of experiment 7 (module docstring). ``sweep_seeds`` must be a subset of ``seeds``."""

    seeds: tuple[int, ...] = tuple(range(8))
    sweep_seeds: tuple[int, ...] = (0, 1, 2)  # budget: the sweep at 3 seeds, the chosen lambda at all 8
    lambdas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    static_sweep: bool = True
    regimes: tuple[str, ...] = REGIMES
    tokenizer: str = "bpe:512"
    val_fraction: float = 0.1
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 64
    block_size: int = 64
    batch_size: int = 16
    steps: int = 300
    lr: float = 3e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    patch_size: int = 8
    overfit_tokens: int = 20480
    paper_lambda: float = 1.0
    controller: dict[str, Any] = field(default_factory=lambda: _windowed(15))
    target_mbe_change: float = -0.50
    target_tolerance: float = 0.20
    overfit_gap_min: float = 0.10
    eval_batches: int = 4
    checkpoint: str = "final"
    num_threads: int | None = 1  # tiny models: one torch thread is fastest on a shared CPU

    def __hash__(self) -> int:  # dict field: hash by repr
        return hash(repr(self))

    def __post_init__(self) -> None:
        if not set(self.sweep_seeds) <= set(self.seeds):
            raise ValueError(
                f"GaptFairConfig.sweep_seeds {self.sweep_seeds} must be a subset of seeds "
                f"{self.seeds} (the sweep is paired with the baseline runs)"
            )
        bad = [r for r in self.regimes if r not in REGIMES]
        if bad or not self.regimes:
            raise ValueError(
                f"GaptFairConfig.regimes must be a non-empty subset of {REGIMES}, got {self.regimes}"
            )
        if not self.lambdas or any(not (isinstance(v, (int, float)) and v > 0) for v in self.lambdas):
            raise ValueError(f"GaptFairConfig.lambdas must be positive numbers, got {self.lambdas!r}")
        if self.checkpoint != "final":
            raise ValueError(
                f"GaptFairConfig.checkpoint: only 'final' is implemented, got {self.checkpoint!r}"
            )
        if self.batch_size % 2:
            raise ValueError(
                f"GaptFairConfig.batch_size must be even (two micro-batches), got {self.batch_size}"
            )

    @classmethod
    def quick(cls) -> GaptFairConfig:
        return cls(
            seeds=(0, 1),
            sweep_seeds=(0, 1),
            lambdas=(0.1, 1.0),
            n_layer=3,
            n_head=2,
            d_model=32,
            block_size=32,
            batch_size=8,
            steps=40,
            warmup_steps=5,
            overfit_tokens=2048,
            controller=_windowed(5),
            eval_batches=2,
        )

    @classmethod
    def demo(cls) -> GaptFairConfig:
        return cls(
            seeds=(0, 1, 2),
            sweep_seeds=(0, 1, 2),
            lambdas=(0.03, 0.1, 0.3),
            batch_size=8,
            steps=150,
            warmup_steps=10,
            overfit_tokens=8192,
            controller=_windowed(10),
        )

    @classmethod
    def full(cls) -> GaptFairConfig:
        return cls()
