"""Settings of experiment 9, the model population (:mod:`infoplane.experiments.population`): the grid of
locally trained GPTs, the probe, the scoring and :class:`PopulationConfig` with its quick / demo / full
tiers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from infoplane.probe.config import ProbeConfig

__all__ = ["OBJECTIVES", "SCORE_TASKS", "OUT_OF_FAMILY", "ModelSpec", "PopulationConfig"]

OBJECTIVES = ("ce", "static", "gapt")
# the local suite's Brown tasks (downstream/suite); arithmetic is left out: KJV models never learn products
SCORE_TASKS = ("infoplane_brown_ppl", "infoplane_brown_cloze", "infoplane_brown_pairs")
OUT_OF_FAMILY = ("smollm2", "gemma3")
PAIRS_TASK = "infoplane_brown_pairs"


def _windowed(w: int) -> dict[str, Any]:
    return {"rule": "windowed", "patience_mem": w, "patience_comp": w, "tau_ce": 0.01, "tau_mbe": 0.01,
            "spike_tol": 0.1, "ema": None}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the population: depth x width x training steps x objective x seed."""

    n_layer: int
    d_model: int
    steps: int
    objective: str
    seed: int

    @property
    def config_name(self) -> str:
        """The configuration (everything but the seed): the cluster of the bootstrap."""
        return f"L{self.n_layer}_d{self.d_model}_s{self.steps}_{self.objective}"

    @property
    def name(self) -> str:
        return f"{self.config_name}_seed{self.seed}"


@dataclass(frozen=True)
class PopulationConfig:
    """Settings of experiment 9 (module docstring of :mod:`infoplane.experiments.population`).

    Grid: ``depths x widths x steps x objectives x seeds`` GPTs on KJV with one tokenizer. ``objectives``:
    ``"ce"`` (CE only), ``"static"`` (CE + ``mbe_weight`` * MBE every step), ``"gapt"`` (the MBE term in the
    compression phases of the windowed controller). Probe: ``probe_seqs`` held-out windows of
    ``block_size`` tokens at token back-off (n = 1) with the permutation null. Scoring: ``tasks`` of the local
    suite through lm-eval (``eval_limit`` items per task; None = all). Preference information: the suite's
    ``preference.jsonl`` (``pref_texts`` texts; None = all), ``pref_permutations`` text-level permutations.
    ``out_of_family``: pretrained models probed and scored the same way but never pooled
    (``oof_eval_limit`` items per task, ``oof_pref_texts`` preference texts: a 262k-token vocabulary makes
    every forward of Gemma-3-270M slow on a CPU). Preconditions: ``min_models`` in the pool,
    ``mi_above_null_share`` of the models with MI above the null, ``spread_z`` (the mean score's distance from
    chance in binomial standard errors; see :func:`~infoplane.experiments.population_claims.score_spread`).
    """

    depths: tuple[int, ...] = (2, 4)
    widths: tuple[int, ...] = (32, 64)
    steps: tuple[int, ...] = (100, 300)
    objectives: tuple[str, ...] = OBJECTIVES
    seeds: tuple[int, ...] = (0, 1)
    tokenizer: str = "bpe:512"
    val_fraction: float = 0.05
    n_head: int = 2
    block_size: int = 64
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 10
    mbe_weight: float = 0.1
    patch_size: int = 8
    controller: dict[str, Any] = field(default_factory=lambda: _windowed(10))
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(orders=(1,), max_tokens=None, seq_len=64,
                                                                   batch_size=16))
    probe_seqs: int = 64
    ce_batches: int = 8
    tasks: tuple[str, ...] = SCORE_TASKS
    eval_limit: int | None = None
    pref_texts: int | None = None
    pref_permutations: int = 20
    pref_max_tokens: int = 64
    out_of_family: tuple[str, ...] = ()
    oof_eval_limit: int | None = 100
    oof_pref_texts: int | None = 200
    min_models: int = 40
    mi_above_null_share: float = 0.9
    spread_z: float = 2.0
    bootstrap: int = 2000
    num_threads: int | None = 1  # tiny models: one torch thread is fastest on a shared CPU

    def __hash__(self) -> int:  # dict field: hash by repr
        return hash(repr(self))

    def __post_init__(self) -> None:
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise ValueError(f"PopulationConfig.objectives must be a non-empty subset of {OBJECTIVES}, "
                             f"got {self.objectives}")
        for name in ("depths", "widths", "steps", "seeds"):
            v = getattr(self, name)
            if not v or any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in v):
                raise ValueError(f"PopulationConfig.{name} must be a non-empty tuple of ints >= 0, got {v!r}")
        if any(d % self.n_head for d in self.widths):
            raise ValueError(f"PopulationConfig.widths {self.widths} must be multiples of "
                             f"n_head={self.n_head}")
        if PAIRS_TASK not in self.tasks:
            raise ValueError(f"PopulationConfig.tasks must include {PAIRS_TASK!r} (the two-choice task of "
                             f"the preference claim), got {self.tasks}")
        unknown = [m for m in self.out_of_family if m not in OUT_OF_FAMILY]
        if unknown:
            raise ValueError(f"PopulationConfig.out_of_family: unknown model(s) {unknown}; expected some of "
                             f"{OUT_OF_FAMILY}")
        if self.probe.orders != (1,) or not self.probe.null:
            raise ValueError(f"PopulationConfig.probe must be token back-off (orders=(1,)) with null=True "
                             f"(the paper's benchmark correlations), got orders={self.probe.orders}, "
                             f"null={self.probe.null}")
        if self.probe.seq_len != self.block_size:
            raise ValueError(f"PopulationConfig.probe.seq_len ({self.probe.seq_len}) must equal block_size "
                             f"({self.block_size}): the probe reads held-out windows of the training length")
        if len(self.models()) < 3:
            raise ValueError(f"PopulationConfig: the grid has {len(self.models())} models, correlations "
                             "need >= 3")

    def models(self) -> list[ModelSpec]:
        """Every model of the grid, in a fixed order."""
        return [ModelSpec(n, d, s, o, seed) for n, d, s, o, seed in
                itertools.product(self.depths, self.widths, self.steps, self.objectives, self.seeds)]

    @classmethod
    def quick(cls) -> PopulationConfig:
        return cls(depths=(2,), widths=(16, 32), steps=(8, 16), objectives=("ce",), seeds=(0,), block_size=32,
                   batch_size=8, warmup_steps=2, controller=_windowed(3),
                   probe=ProbeConfig(orders=(1,), max_tokens=None, seq_len=32, batch_size=16), probe_seqs=16,
                   ce_batches=2, eval_limit=24, pref_texts=40, pref_permutations=4, pref_max_tokens=24,
                   min_models=4, bootstrap=200)

    @classmethod
    def demo(cls) -> PopulationConfig:
        return cls(depths=(2, 4), widths=(32,), steps=(60, 180), objectives=("ce", "gapt"), seeds=(0,),
                   eval_limit=150, pref_texts=300, pref_permutations=10, probe_seqs=48, min_models=8,
                   bootstrap=1000)

    @classmethod
    def full(cls) -> PopulationConfig:
        return cls(pref_permutations=10, out_of_family=OUT_OF_FAMILY, oof_eval_limit=40, oof_pref_texts=100)
