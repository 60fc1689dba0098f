"""Training configuration (:class:`TrainConfig`), composed of typed parts, loadable from YAML / TOML / JSON.

A config file has the run's flat fields (data, optimisation, monitoring, run) and one table per part,
e.g. TOML::

    corpus = "kjv"
    tokenizer = "bpe:2048"
    steps = 1500
    [model]            # GPTConfig (vocab_size comes from the tokenizer, the init seed from `seed`)
    n_layer = 4
    d_model = 128
    [objective]        # ObjectiveConfig
    kind = "gapt"
    mbe_weight = 1.0
    layers = "rotate"
    [controller]       # PhaseControllerConfig
    rule = "relative"
    patience_mem = 50

Every table is strict: an unknown key is a ValueError naming it, raised when the file is loaded.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from infoplane.data.lm_data import shard_pattern
from infoplane.io import strict_from_dict
from infoplane.train.device import PRECISIONS, check_device_spec
from infoplane.train.model import GPTConfig
from infoplane.train.objective import KINDS, ObjectiveConfig
from infoplane.train.phases import PhaseControllerConfig
from infoplane.train.regularizer import resolve_layers
from infoplane.train.schedule import check_schedule

__all__ = ["TrainConfig", "OBJECTIVES", "checkpoint_schedule", "load_config_file", "strict_from_dict"]

OBJECTIVES = KINDS
_SCHEDULES = ("cosine", "constant")
_PARTS = {"model": GPTConfig, "objective": ObjectiveConfig, "controller": PhaseControllerConfig}


def _default_controller() -> PhaseControllerConfig:
    # patience scaled to runs of ~10^3 steps (the reference's 125 steps assume ~10^4)
    return PhaseControllerConfig(rule="relative", patience_mem=50, patience_comp=30)


@dataclass
class TrainConfig:
    """Everything a training run needs; ``to_dict()`` is stored in every checkpoint.

    Data: ``corpus`` (embedded name such as ``"kjv"``, a .txt/.jsonl path, or pre-tokenized token shards
    ``"shards:PATTERN"`` in the modded-nanogpt format, memory-mapped, never loaded whole), ``tokenizer``
    (``"bpe:N"``, ``"byte"``, ``"gpt2:DIR"`` or a tokenizer JSON path; with shards only saved beside
    checkpoints, or ``"none"``), ``val_fraction`` of documents held out (text corpora), ``val_corpus`` the
    validation shards ``"shards:PATTERN"`` (shards only; None = no validation).
    Model: ``model`` (:class:`~infoplane.train.model.GPTConfig`; its ``vocab_size`` is replaced by the
    tokenizer's and its ``seed`` by the run's ``seed``).
    Objective: ``objective`` (:class:`~infoplane.train.objective.ObjectiveConfig`: kind ce / ce+mbe / gapt,
    lambda, patch size, layer schedule, scheme) and ``controller``
    (:class:`~infoplane.train.phases.PhaseControllerConfig`, used by GAPT).
    Optimisation: ``steps`` optimiser steps of ``batch_size`` sequences (global, split over ``grad_accum``
    micro-batches and DDP ranks), AdamW(``lr``, ``betas``, ``weight_decay``), ``schedule`` "cosine" (linear
    warm-up over ``warmup_steps`` then cosine to ``min_lr_ratio * lr``) or "constant" (warm-up then flat),
    ``grad_clip`` (global L2 norm; 0 = off).
    Monitoring: ``eval_every`` steps (0 = only at the end) on ``eval_batches`` held-out batches;
    ``align_every`` steps (0 = off) the CE/MBE gradient cosines on the training batch.
    Checkpoints: ``checkpoint_steps`` = list of steps, or ``"log:N"`` (N log-spaced steps), or ``"every:K"``;
    the final step is always saved.
    Robustness: ``max_nonfinite`` consecutive non-finite losses abort the run (each one is skipped).
    Hardware: ``device`` "cpu" (default), "cuda" / "cuda:N" (under torchrun: the rank's GPU) or "auto";
    ``precision`` "fp32" (default), "bf16" (autocast) or "fp16" (autocast with loss scaling, CUDA only).
    """

    # data
    corpus: str = "kjv"
    tokenizer: str = "bpe:2048"
    val_fraction: float = 0.05
    val_corpus: str | None = None
    # parts
    model: GPTConfig = field(default_factory=GPTConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    controller: PhaseControllerConfig = field(default_factory=_default_controller)
    # optimisation
    steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    # monitoring
    eval_every: int = 100
    eval_batches: int = 8
    align_every: int = 0
    checkpoint_steps: Any = "log:8"
    # run
    seed: int = 0
    out_dir: str = "runs/train"
    max_nonfinite: int = 5
    progress: bool = True
    tensorboard: bool = False
    num_threads: int | None = None
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for name, cls in _PARTS.items():
            v = getattr(self, name)
            if isinstance(v, dict):
                setattr(self, name, strict_from_dict(cls, v))
            elif not isinstance(v, cls):
                raise ValueError(f"TrainConfig.{name} must be a {cls.__name__} or a dict of its fields, "
                                 f"got {type(v).__name__}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.validate()

    @property
    def block_size(self) -> int:
        """Context length T of the training sequences (= ``model.block_size``)."""
        return self.model.block_size

    def validate(self) -> None:
        """Raise ValueError naming the first field with an invalid value."""
        def pos_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if allow_zero else v >= 1)
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be an int >= {0 if allow_zero else 1}, got {v!r}")

        for n in ("steps", "batch_size", "grad_accum", "eval_batches", "max_nonfinite"):
            pos_int(n)
        for n in ("warmup_steps", "eval_every", "align_every", "seed"):
            pos_int(n, allow_zero=True)
        try:
            check_schedule(self.schedule)
        except ValueError as exc:
            raise ValueError(f"TrainConfig.{exc}") from None
        if self.batch_size % self.grad_accum:
            raise ValueError(f"TrainConfig.batch_size ({self.batch_size}) must be divisible by grad_accum "
                             f"({self.grad_accum})")
        for n in ("lr", "weight_decay", "grad_clip", "min_lr_ratio", "val_fraction"):
            v = getattr(self, n)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"TrainConfig.{n} must be a finite number >= 0, got {v!r}")
        if not self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be < 1, got {self.val_fraction}")
        if self.objective.scheme == "alternating" and self.grad_accum % 2:
            raise ValueError(f"TrainConfig: objective.scheme='alternating' puts CE and MBE on alternating "
                             f"micro-batches and needs an even grad_accum, got {self.grad_accum}")
        if self.objective.uses_mbe:  # the layer choice only has to fit the model when MBE is penalised
            o = self.objective
            base = "middle" if o.layers == "rotate" else o.layers
            try:
                resolve_layers(self.model.n_layer, list(base) if isinstance(base, tuple) else base,
                               o.skip_first, o.skip_last)
            except ValueError as exc:
                raise ValueError(f"TrainConfig.objective.layers={o.layers!r} does not fit "
                                 f"model.n_layer={self.model.n_layer}: {exc}") from None
        checkpoint_schedule(self.checkpoint_steps, self.steps)  # validates the spec
        self._validate_data_and_device()

    def _validate_data_and_device(self) -> None:
        check_device_spec(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("TrainConfig.precision 'fp16' (autocast with loss scaling) needs device 'cuda' "
                             "or 'auto'; on CPU use 'bf16' or 'fp32'")
        shards = shard_pattern(self.corpus) is not None
        if self.val_corpus is not None and (not shards or not isinstance(self.val_corpus, str)):
            raise ValueError(f"TrainConfig.val_corpus names validation token shards ('shards:PATTERN') and "
                             f"needs a shard corpus, got val_corpus={self.val_corpus!r} with "
                             f"corpus={self.corpus!r}")
        if shards and isinstance(self.tokenizer, str) and self.tokenizer.startswith("bpe:"):
            raise ValueError(f"TrainConfig.tokenizer {self.tokenizer!r} would train a BPE, but corpus "
                             f"{self.corpus!r} is already tokenized: give the shards' tokenizer ('gpt2:DIR' "
                             "or a tokenizer.json, saved with checkpoints) or 'none'")
        if self.tokenizer == "none" and not shards:
            raise ValueError(f"TrainConfig.tokenizer 'none' is only for token shards; corpus {self.corpus!r} "
                             "needs a tokenizer")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _PARTS}
        d["betas"] = list(self.betas)
        for name in _PARTS:
            part = getattr(self, name)
            d[name] = part.to_dict() if hasattr(part, "to_dict") else asdict(part)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a (possibly partial) dict with nested part tables; unknown keys raise ValueError."""
        return strict_from_dict(cls, d)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Load a YAML (.yaml/.yml), TOML (.toml) or JSON (.json) config; ``overrides`` win (a dict override
        of a part is merged into that part's table)."""
        d = load_config_file(path)
        for k, v in overrides.items():
            if v is None:
                continue
            if k in _PARTS and isinstance(v, dict):
                d[k] = {**d.get(k, {}), **v}
            else:
                d[k] = v
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (parts may be given as objects or dicts of fields to change)."""
        for name in _PARTS:
            if isinstance(changes.get(name), dict):
                changes[name] = replace(getattr(self, name), **changes[name])
        return replace(self, **changes)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a YAML / TOML / JSON config file into a dict (a ``train:`` top-level table is unwrapped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found")
    suffix = p.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        with open(p, "rb") as fh:
            d = tomllib.load(fh)
    elif suffix in (".yaml", ".yml"):
        import yaml

        with open(p, encoding="utf-8") as fh:
            d = yaml.safe_load(fh) or {}
    elif suffix == ".json":
        d = json.loads(p.read_text(encoding="utf-8"))
    else:
        raise ValueError(f"config file {str(p)!r}: expected a .yaml, .yml, .toml or .json file")
    if not isinstance(d, dict):
        raise ValueError(f"config file {str(p)!r}: expected a table/mapping at top level")
    if set(d) == {"train"} and isinstance(d["train"], dict):
        d = d["train"]
    return d


def checkpoint_schedule(spec: Any, steps: int) -> list[int]:
    """Sorted unique steps (1..steps) at which to checkpoint; the final step is always included.

    spec: list of ints, ``"log:N"`` (N steps log-spaced between 1 and ``steps``, rounded), ``"every:K"``,
    ``"final"``/None/``[]`` (final only).
    """
    out: set[int] = {steps}
    if spec is None or spec == "final":
        return sorted(out)
    if isinstance(spec, str):
        kind, _, num = spec.partition(":")
        try:
            n = int(num)
        except ValueError:
            n = -1
        if kind not in ("log", "every") or n < 1:
            raise ValueError(f"checkpoint_steps {spec!r}: expected a list of steps, 'log:N', 'every:K' "
                             "or 'final'")
        if kind == "every":
            out.update(range(n, steps + 1, n))
        else:
            # log-spaced: round(steps ** (i / (N - 1))), i = 0..N-1
            out.update(int(round(steps ** (i / max(n - 1, 1)))) for i in range(n))
        return sorted(s for s in out if 1 <= s <= steps)
    try:
        vals = [int(s) for s in spec]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint_steps must be a list of ints or a spec string, got {spec!r}") from exc
    bad = [s for s in vals if not 1 <= s <= steps]
    if bad:
        raise ValueError(f"checkpoint_steps {bad} outside 1..{steps}")
    out.update(vals)
    return sorted(out)
