"""Registry of the reproduction experiments: number, name, config class and run function.

Modules are imported lazily so that one experiment's missing optional dependency never blocks the others.
Each module exposes ``NAME``, a frozen config dataclass with ``quick()`` / ``full()`` class methods and
``run(cfg, paths, log) -> summary``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["ExperimentSpec", "EXPERIMENTS", "get", "resolve", "make_config"]


@dataclass(frozen=True)
class ExperimentSpec:
    number: int
    name: str
    module: str
    config_class: str
    title: str

    def load(self) -> Any:
        return importlib.import_module(self.module)

    def config_type(self) -> type:
        return getattr(self.load(), self.config_class)

    def run_fn(self):
        return self.load().run


EXPERIMENTS: tuple[ExperimentSpec, ...] = (
    ExperimentSpec(1, "cycles", "infoplane.experiments.cycles", "CyclesConfig",
                   "Emergent memorization-compression cycles (CE-only training)"),
    ExperimentSpec(2, "lm_gapt", "infoplane.experiments.lm_gapt", "LMGaptConfig",
                   "GAPT vs baseline language model"),
    ExperimentSpec(3, "arithmetic", "infoplane.experiments.arithmetic", "ArithmeticConfig",
                   "Arithmetic multiplication: in- vs out-of-distribution"),
    ExperimentSpec(4, "forgetting", "infoplane.experiments.forgetting", "ForgettingConfig",
                   "Catastrophic forgetting and representation separation"),
    ExperimentSpec(5, "plane_over_training", "infoplane.experiments.plane_over_training", "PlaneConfig",
                   "Information plane over training (checkpoints of experiment 2)"),
    ExperimentSpec(6, "pretrained", "infoplane.experiments.pretrained", "PretrainedConfig",
                   "A real pretrained model: SmolLM2-135M on the KJV corpus"),
)


def get(key: int | str) -> ExperimentSpec:
    """Spec by number (1-6) or name; ValueError otherwise."""
    for spec in EXPERIMENTS:
        if key == spec.number or key == spec.name or (isinstance(key, str) and key == str(spec.number)):
            return spec
    raise ValueError(f"unknown experiment {key!r}; expected one of "
                     f"{[s.number for s in EXPERIMENTS]} or {[s.name for s in EXPERIMENTS]}")


def resolve(only: list[int | str] | None) -> list[ExperimentSpec]:
    """The experiments to run, in registry order (all when ``only`` is empty/None)."""
    if not only:
        return list(EXPERIMENTS)
    wanted = {get(k).name for k in only}
    return [s for s in EXPERIMENTS if s.name in wanted]


def make_config(spec: ExperimentSpec, size: str, overrides: dict[str, Any] | None = None) -> Any:
    """``quick`` / ``full`` config of ``spec`` with optional field overrides (e.g. from a test)."""
    if size not in ("quick", "full", "tiny"):
        raise ValueError(f"size must be 'quick', 'full' or 'tiny', got {size!r}")
    cls = spec.config_type()
    factory = getattr(cls, size, None)
    if factory is None:  # 'tiny' falls back to quick
        factory = cls.quick
    cfg = factory()
    if overrides:
        import dataclasses

        known = {f.name for f in dataclasses.fields(cfg)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{spec.name}: unknown config field(s) {unknown}; "
                             f"expected some of {sorted(known)}")
        cfg = dataclasses.replace(cfg, **overrides)
    return cfg
