"""Training configuration (:class:`TrainConfig`), loadable from YAML / TOML / JSON files.

A config file is flat (keys = the field names below) with an optional ``controller`` table, e.g. TOML::

    corpus = "kjv"
    tokenizer = "bpe:2048"
    steps = 1500
    objective = "gapt"
    [controller]
    rule = "relative"
    patience_mem = 50
    patience_comp = 30
    ema = 0.9
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig", "OBJECTIVES", "checkpoint_schedule", "load_config_file"]

OBJECTIVES = ("ce", "ce+mbe", "gapt")
_SCHEDULES = ("cosine", "constant")


def strict_from_dict(cls: Any, d: dict[str, Any]) -> Any:
    """``cls(**d)`` for a dataclass, raising ValueError on unknown keys (so typos do not pass silently)."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; "
                         f"expected a subset of {sorted(known)}")
    return cls(**d)


@dataclass
class TrainConfig:
    """Everything a training run needs; ``to_dict()`` is stored in every checkpoint.

    Data: ``corpus`` (embedded name such as ``"kjv"`` or a .txt/.jsonl path), ``tokenizer`` (``"bpe:N"``,
    ``"byte"``, ``"gpt2:DIR"`` or a tokenizer JSON path), ``val_fraction`` of documents held out.
    Model: ``n_layer``, ``n_head``, ``d_model``, ``block_size`` (context T), ``pos_encoding``, ``dropout``,
    ``tie_weights`` (vocab size comes from the tokenizer).
    Optimisation: ``steps`` optimiser steps of ``batch_size`` sequences (global, split over ``grad_accum``
    micro-batches and DDP ranks), AdamW(``lr``, ``betas``, ``weight_decay``), ``schedule`` "cosine" (linear
    warm-up over ``warmup_steps`` then cosine to ``min_lr_ratio * lr``) or "constant" (warm-up then flat),
    ``grad_clip`` (global L2 norm; 0 = off).
    Objective: ``"ce"`` (cross-entropy only), ``"ce+mbe"`` (CE + ``mbe_weight`` * MBE every step), ``"gapt"``
    (CE, plus ``mbe_weight`` * MBE only in compression phases chosen by the PhaseController configured by
    ``controller``: keyword arguments of :class:`infoplane.train.phases.PhaseController`).
    MBE: patch size ``patch_size`` tokens, layers ``mbe_layers`` ("middle", "rotate", "all" or a list of block
    indices), ``log_mbe`` computes (no-grad) MBE for the log and the controller when it is not penalised.
    Monitoring: ``eval_every`` steps (0 = only at the end) on ``eval_batches`` held-out batches;
    ``align_every`` steps (0 = off) the CE/MBE gradient cosines on the training batch.
    Checkpoints: ``checkpoint_steps`` = list of steps, or ``"log:N"`` (N log-spaced steps), or ``"every:K"``;
    the final step is always saved.
    Robustness: ``max_nonfinite`` consecutive non-finite losses abort the run (each one is skipped).
    """

    # data
    corpus: str = "kjv"
    tokenizer: str = "bpe:2048"
    val_fraction: float = 0.05
    # model
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    block_size: int = 128
    pos_encoding: str = "learned"
    dropout: float = 0.0
    tie_weights: bool = True
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
    # objective
    objective: str = "ce"
    mbe_weight: float = 1.0
    patch_size: int = 8
    mbe_layers: Any = "middle"
    log_mbe: bool = True
    controller: dict[str, Any] = field(default_factory=lambda: {"rule": "relative", "patience_mem": 50,
                                                                 "patience_comp": 30})
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

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if isinstance(self.mbe_layers, (list, tuple)):
            self.mbe_layers = [int(i) for i in self.mbe_layers]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field with an invalid value."""
        def pos_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if allow_zero else v >= 1)
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be an int >= {0 if allow_zero else 1}, got {v!r}")

        for n in ("n_layer", "n_head", "d_model", "block_size", "steps", "batch_size", "grad_accum",
                  "patch_size", "eval_batches", "max_nonfinite"):
            pos_int(n)
        for n in ("warmup_steps", "eval_every", "align_every", "seed"):
            pos_int(n, allow_zero=True)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"TrainConfig.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {_SCHEDULES}, got {self.schedule!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"TrainConfig.batch_size ({self.batch_size}) must be divisible by grad_accum "
                             f"({self.grad_accum})")
        for n in ("lr", "mbe_weight", "weight_decay", "grad_clip", "min_lr_ratio", "val_fraction"):
            v = getattr(self, n)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"TrainConfig.{n} must be a finite number >= 0, got {v!r}")
        if not self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be < 1, got {self.val_fraction}")
        if not isinstance(self.controller, dict):
            raise ValueError(f"TrainConfig.controller must be a dict of PhaseController arguments, "
                             f"got {self.controller!r}")
        if self.block_size % self.patch_size and self.objective != "ce":
            pass  # remainder tokens are dropped from the start (reference convention); allowed
        checkpoint_schedule(self.checkpoint_steps, self.steps)  # validates the spec

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a (possibly partial) dict; unknown keys raise ValueError."""
        return strict_from_dict(cls, d)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Load a YAML (.yaml/.yml), TOML (.toml) or JSON (.json) config; ``overrides`` win."""
        d = load_config_file(path)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> TrainConfig:
        d = self.to_dict()
        d.update(changes)
        return TrainConfig.from_dict(d)


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
