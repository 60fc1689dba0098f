"""Registry of the reproduction experiments: number, name, module, config class, dependencies.

Each experiment is one module exposing

* ``NAME``, a frozen config dataclass with ``quick()`` / ``full()`` class methods,
* ``run(cfg, paths, log) -> summary`` (see :func:`infoplane.experiments.common.run_experiment`),
* optionally ``describe(summary) -> list[str]``: neutral sentences generated from its numbers, and
  ``figures(results_dir, fig_dir) -> list[(png_path, caption)]``: its figures, drawn from its results files.

and one :class:`ExperimentSpec` line here (or a :func:`register` call). The runner
(:mod:`infoplane.experiments.runner`) orders experiments by ``depends_on`` and ``priority``; the report
(:mod:`infoplane.report.build`) loops over :data:`EXPERIMENTS`. Modules are imported lazily so that one
experiment's missing optional dependency never blocks the others.
"""

from __future__ import annotations

import dataclasses
import heapq
import importlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

__all__ = ["ExperimentSpec", "EXPERIMENTS", "get", "resolve", "make_config", "register", "unregister",
           "order"]


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment.

    Attributes:
        number: its number in the report (unique, >= 1).
        name: registry key (unique), also the stem of its results files ``results/<name>*.{json,csv}``.
        module: importable module path holding ``NAME``, the config class, ``run`` and the optional hooks.
        config_class: name of the config dataclass inside ``module``.
        title: section title in the report.
        depends_on: names of experiments whose results this one reads; they run first, and a change of their
            results file makes this one's finished result stale.
        priority: among experiments ready to run, higher starts first (long ones first keeps parallel
            workers busy).
    """

    number: int
    name: str
    module: str
    config_class: str
    title: str
    depends_on: tuple[str, ...] = ()
    priority: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 1:
            raise ValueError(f"ExperimentSpec.number must be an int >= 1, got {self.number!r}")
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"ExperimentSpec.name must be a Python identifier, got {self.name!r}")
        if isinstance(self.depends_on, str):
            raise ValueError(f"{self.name}: depends_on must be a tuple of names, got the string "
                             f"{self.depends_on!r} (write ({self.depends_on!r},))")
        deps = tuple(self.depends_on)
        if not all(isinstance(d, str) for d in deps):
            raise ValueError(f"{self.name}: depends_on must hold experiment names, got {deps!r}")
        if self.name in deps:
            raise ValueError(f"{self.name}: an experiment cannot depend on itself")
        object.__setattr__(self, "depends_on", deps)

    def load(self) -> Any:
        """The experiment's module (imported on first use)."""
        return importlib.import_module(self.module)

    def config_type(self) -> type:
        return getattr(self.load(), self.config_class)

    def run_fn(self) -> Any:
        return self.load().run

    def describe(self, summary: dict[str, Any]) -> list[str]:
        """Sentences from the module's ``describe(summary)`` hook (none when it has no hook)."""
        fn = getattr(self.load(), "describe", None)
        return list(fn(summary)) if fn else []

    def figures(self, results: Path, figs: Path) -> list[tuple[Path, str]]:
        """``(png path, caption)`` pairs from the module's ``figures(results, figs)`` hook (none without)."""
        fn = getattr(self.load(), "figures", None)
        return list(fn(Path(results), Path(figs))) if fn else []


_SPECS: dict[str, ExperimentSpec] = {}


class _Registry(Sequence[ExperimentSpec]):
    """Live, read-only view of the registered experiments in number order (what :data:`EXPERIMENTS` is)."""

    def _items(self) -> list[ExperimentSpec]:
        return sorted(_SPECS.values(), key=lambda s: s.number)

    @overload
    def __getitem__(self, i: int) -> ExperimentSpec: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[ExperimentSpec]: ...

    def __getitem__(self, i: int | slice) -> ExperimentSpec | Sequence[ExperimentSpec]:
        return self._items()[i]

    def __len__(self) -> int:
        return len(_SPECS)

    def __iter__(self) -> Iterator[ExperimentSpec]:
        return iter(self._items())

    def __repr__(self) -> str:
        return "EXPERIMENTS(" + ", ".join(f"{s.number}:{s.name}" for s in self._items()) + ")"


EXPERIMENTS: Sequence[ExperimentSpec] = _Registry()


def _check_graph(specs: Iterable[ExperimentSpec]) -> None:
    """ValueError for a dependency on an unknown experiment or a dependency cycle (naming the cycle)."""
    by_name = {s.name: s for s in specs}
    for s in by_name.values():
        unknown = [d for d in s.depends_on if d not in by_name]
        if unknown:
            raise ValueError(f"experiment {s.name!r} depends on unknown experiment(s) {unknown}; "
                             f"registered: {sorted(by_name)}")
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise ValueError("dependency cycle among experiments: " + " -> ".join(cycle))
        state[name] = 1
        for d in by_name[name].depends_on:
            visit(d, path + [name])
        state[name] = 2

    for name in sorted(by_name):
        visit(name, [])


def register(spec: ExperimentSpec, *, replace: bool = False) -> ExperimentSpec:
    """Add ``spec`` to the registry (the public hook for an experiment defined outside this module).

    Its dependencies must already be registered; a number or name already taken is a ValueError unless
    ``replace`` (then the spec with the same name is replaced). Returns ``spec``.
    """
    if not isinstance(spec, ExperimentSpec):
        raise ValueError(f"register expects an ExperimentSpec, got {type(spec).__name__}")
    clash = [s for s in _SPECS.values() if s.number == spec.number and s.name != spec.name]
    if clash:
        raise ValueError(f"experiment number {spec.number} is taken by {clash[0].name!r}")
    if spec.name in _SPECS and not replace:
        raise ValueError(f"experiment {spec.name!r} is already registered (pass replace=True to replace it)")
    _check_graph([*(s for s in _SPECS.values() if s.name != spec.name), spec])
    _SPECS[spec.name] = spec
    return spec


def unregister(key: int | str) -> ExperimentSpec:
    """Remove an experiment (by number or name); ValueError if another registered experiment depends on it."""
    spec = get(key)
    users = sorted(s.name for s in _SPECS.values() if spec.name in s.depends_on)
    if users:
        raise ValueError(f"cannot unregister {spec.name!r}: {users} depend on it")
    del _SPECS[spec.name]
    return spec


def get(key: int | str) -> ExperimentSpec:
    """Spec by number or name; ValueError otherwise."""
    for spec in EXPERIMENTS:
        if key == spec.number or key == spec.name or (isinstance(key, str) and key == str(spec.number)):
            return spec
    raise ValueError(f"unknown experiment {key!r}; expected one of "
                     f"{[s.number for s in EXPERIMENTS]} or {[s.name for s in EXPERIMENTS]}")


def resolve(only: Sequence[int | str] | None) -> list[ExperimentSpec]:
    """The experiments to run, in registry order (all when ``only`` is empty/None)."""
    if not only:
        return list(EXPERIMENTS)
    wanted = {get(k).name for k in only}
    return [s for s in EXPERIMENTS if s.name in wanted]


def order(specs: Sequence[ExperimentSpec]) -> list[ExperimentSpec]:
    """``specs`` in run order: every dependency that is among ``specs`` before its users; among experiments
    that are ready at the same time, higher ``priority`` first, then lower number.

    Dependencies outside ``specs`` (not selected) impose no order; they must still be known (registered or
    in ``specs``). ValueError on an unknown dependency or a cycle.
    """
    specs = list(specs)
    _check_graph({**_SPECS, **{s.name: s for s in specs}}.values())
    by_name = {s.name: s for s in specs}
    waiting = {s.name: {d for d in s.depends_on if d in by_name} for s in specs}
    ready = [(-s.priority, s.number, s.name) for s in specs if not waiting[s.name]]
    heapq.heapify(ready)
    out: list[ExperimentSpec] = []
    while ready:
        _, _, name = heapq.heappop(ready)
        out.append(by_name[name])
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    s = by_name[other]
                    heapq.heappush(ready, (-s.priority, s.number, s.name))
    return out


SIZES = ("quick", "demo", "full", "tiny")


def make_config(spec: ExperimentSpec, size: str, overrides: dict[str, Any] | None = None) -> Any:
    """The ``quick`` / ``demo`` / ``full`` tier config of ``spec`` with optional field overrides (e.g. from a
    test or ``--set``). Tiers: ``quick`` (CI, minutes), ``demo`` (``make demo``, <= 20 min on 2 cores),
    ``full`` (every experiment within about 3 h on 2 cores, >= 8 independent seeds per headline claim);
    ``tiny`` falls back to ``quick`` where a module defines none.

    A field of a nested config dataclass is reached with a dotted key (``{"probe.max_tokens": 256}``) or a
    dict value (``{"probe": {"max_tokens": 256}}``). An unknown field is a ValueError naming the valid ones.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    cls = spec.config_type()
    factory = getattr(cls, size, None)
    if factory is None:  # 'tiny' falls back to quick
        factory = cls.quick
    cfg = factory()
    return _replace(cfg, overrides, spec.name) if overrides else cfg


def _replace(cfg: Any, overrides: dict[str, Any], where: str) -> Any:
    """``dataclasses.replace`` of ``cfg`` with ``overrides``, descending into nested config dataclasses."""
    known = {f.name for f in dataclasses.fields(cfg)}
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif isinstance(value, dict) and dataclasses.is_dataclass(getattr(cfg, key, None)):
            nested.setdefault(head, {}).update(value)
        else:
            flat[key] = value
    unknown = sorted((set(flat) | set(nested)) - known)
    if unknown:
        raise ValueError(f"{where}: unknown config field(s) {unknown}; expected some of {sorted(known)}")
    for head, sub in nested.items():
        inner = getattr(cfg, head)
        if not dataclasses.is_dataclass(inner):
            raise ValueError(f"{where}.{head} is not a nested config, so {sorted(sub)} cannot be set in it")
        flat[head] = _replace(inner, sub, f"{where}.{head}")
    return dataclasses.replace(cfg, **flat)


# The built-in experiments, one line each (priority: the longest start first, keeping parallel workers busy).
for _spec in (
    ExperimentSpec(1, "cycles", "infoplane.experiments.cycles", "CyclesConfig",
                   "Emergent memorization-compression cycles (CE-only training)", priority=3),
    ExperimentSpec(2, "lm_gapt", "infoplane.experiments.lm_gapt", "LMGaptConfig",
                   "GAPT vs baseline language model", priority=5),
    ExperimentSpec(3, "arithmetic", "infoplane.experiments.arithmetic", "ArithmeticConfig",
                   "Arithmetic multiplication: in- vs out-of-distribution", priority=4),
    ExperimentSpec(4, "forgetting", "infoplane.experiments.forgetting", "ForgettingConfig",
                   "Catastrophic forgetting and representation separation", priority=1),
    ExperimentSpec(5, "plane_over_training", "infoplane.experiments.plane_over_training", "PlaneConfig",
                   "Information plane over training (checkpoints of experiment 2)", depends_on=("lm_gapt",)),
    ExperimentSpec(6, "pretrained", "infoplane.experiments.pretrained", "PretrainedConfig",
                   "A real pretrained model: SmolLM2-135M on the KJV corpus", priority=2),
    ExperimentSpec(7, "gapt_fair", "infoplane.experiments.gapt_fair", "GaptFairConfig", "GAPT tested fairly"),
    ExperimentSpec(8, "trajectory", "infoplane.experiments.trajectory", "TrajectoryConfig",
                   "The information plane during training: saturation, then compression?", priority=6),
    ExperimentSpec(9, "population", "infoplane.experiments.population", "PopulationConfig",
                   "Does the information plane predict downstream scores across models?"),
):
    register(_spec)
del _spec
