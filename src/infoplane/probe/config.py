"""``ProbeConfig``: every setting of the probe, declared once.

Used by :func:`~infoplane.probe.analyze.analyze`, :func:`~infoplane.probe.sweep.sweep`,
:func:`~infoplane.probe.distributed.analyze_distributed`, the ``infoplane analyze | sweep`` flags (their
defaults are read from this dataclass) and every experiment that probes (it embeds a ``probe: ProbeConfig``).
A setting changes what is measured; inputs (model, corpus, tokenizer) and run-time choices (device, progress
bar, output directory) are arguments of the functions, not fields here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infoplane.estimators.accumulator import ZERO_POLICIES
from infoplane.estimators.calibration import CALIBRATION_METHODS
from infoplane.probe.labels import check_orders, parse_label_set

__all__ = ["ProbeConfig", "parse_bytes"]


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:
        raise ValueError(f"ProbeConfig.{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"ProbeConfig.{name} must be True or False, got {value!r}")
    return bool(value)


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_bytes(value: Any, what: str = "memory budget") -> int:
    """A positive number of bytes from an int or a string such as ``"12GiB"``, ``"500MB"``, ``"1e9"``."""
    if _is_int(value) and int(value) >= 1:
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        num = text.rstrip("kmgtib")
        unit = text[len(num):]
        try:
            n = float(num) * _UNITS[unit]
        except (ValueError, KeyError):
            n = float("nan")
        if math.isfinite(n) and n >= 1:
            return int(n)
    raise ValueError(f"{what} must be a positive number of bytes (an int or a string like '12GiB', "
                     f"'500MB'), got {value!r}")


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of one probe run (validated on construction; frozen, hashable, JSON-serialisable).

    Attributes:
        orders: n-gram orders of the input/output label sets X_n / Y_n (Conklin et al. 2026, sec. 2; reference
            implementation soft-entropy, soft_entropy/llm.py ``_encode_ngram``); stored sorted and
            de-duplicated. All orders share the valid positions of the largest.
        max_tokens: analysed positions per hidden state (N samples); None = every text of the corpus.
        seq_len: truncation length in tokens per text (capped at the model's context length by ``analyze``).
        batch_size: texts per forward pass.
        n_bins: number of reference points m of the soft assignment (soft-entropy, accumulator.py).
        seed: fixes the text sample (numpy PCG64 permutation), the reference points and the null permutation.
        null: also compute the permutation-null MI of every label set (finite-sample bias estimate).
        min_count: n-gram labels seen fewer times in the sample are pooled into one rare label per set
            (1 = no pooling: labels seen once are handled exactly as singletons); pooling can only lower MI.
        calibration: temperature calibration for (m, d): ``"exact"`` | ``"bounds"`` | ``"leading_order"``
            (ignored when ``temperature`` is given).
        temperature: soft-assignment temperature (dimensionless, > 0); None = calibrated.
        padding_side: ``"right"`` or ``"left"`` (statistics do not depend on it).
        all_layers_update: buffer the batch's L hidden states (analysed positions only) and update all
            layers at once: less accumulator time, memory for L hidden states of a batch.
        sequence_labels: per-text label fields of the corpus documents (e.g. ``("book",)``) whose MI with
            every hidden state is also measured (broadcast to every position of the text).
        memory_budget: bytes the accumulator state and its scratch may use (an int, or a string such as
            ``"12GiB"``/``"500MB"``); None = half of the memory available when the probe starts (free GPU
            memory on CUDA). ``analyze`` plans layer groups in separate passes to stay within it and refuses
            with a ValueError when one layer alone does not fit (:mod:`infoplane.estimators.memory`). It
            never changes the results, so it is not part of a sweep's resume guard.
        zero_policy: an analysed position whose hidden state is exactly the zero vector (its direction, and
            so its soft assignment, is undefined; e.g. a tokenizer mapping unknown characters to a padding
            id whose embedding row is zero): ``"error"`` stops with a ValueError naming the hidden state,
            the text and the token; ``"skip"`` leaves the position out of that hidden state's statistics,
            counts it in the metadata (``n_skipped_zero``) and warns.
    """

    orders: tuple[int, ...] = (1, 2, 3)
    max_tokens: int | None = 4096
    seq_len: int = 128
    batch_size: int = 8
    n_bins: int = 100
    seed: int = 0
    null: bool = True
    min_count: int = 1
    calibration: str = "exact"
    temperature: float | None = None
    padding_side: str = "right"
    all_layers_update: bool = False
    sequence_labels: tuple[str, ...] = ()
    memory_budget: int | None = None
    zero_policy: str = "error"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)  # frozen: normalise once, here

        try:
            orders = check_orders(self.orders)
        except ValueError as exc:
            raise ValueError(f"ProbeConfig.orders: {exc}") from None
        put("orders", orders)
        if self.max_tokens is not None:
            put("max_tokens", _check_int("max_tokens", self.max_tokens, 1))
        put("seq_len", _check_int("seq_len", self.seq_len, 1))
        if self.seq_len < 2 * max(orders):  # an n-gram input and the next n tokens: 2n positions
            raise ValueError(f"ProbeConfig.seq_len={self.seq_len} leaves no valid position for order "
                             f"{max(orders)}: need seq_len >= 2 * max(orders) = {2 * max(orders)}")
        put("batch_size", _check_int("batch_size", self.batch_size, 1))
        put("n_bins", _check_int("n_bins", self.n_bins, 2))
        put("seed", _check_int("seed", self.seed, 0))
        put("null", _check_bool("null", self.null))
        put("min_count", _check_int("min_count", self.min_count, 1))
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"ProbeConfig.calibration must be one of {CALIBRATION_METHODS}, "
                             f"got {self.calibration!r}")
        if self.temperature is not None:
            t = self.temperature
            if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(float(t)) or float(t) <= 0:
                raise ValueError(f"ProbeConfig.temperature must be None or a finite float > 0, got {t!r}")
            put("temperature", float(t))
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"ProbeConfig.padding_side must be 'left' or 'right', got {self.padding_side!r}")
        put("all_layers_update", _check_bool("all_layers_update", self.all_layers_update))
        names = self.sequence_labels
        if isinstance(names, str):
            names = (names,)
        if not isinstance(names, Sequence) or not all(isinstance(n, str) and n for n in names):
            raise ValueError("ProbeConfig.sequence_labels must be a sequence of non-empty field names, "
                             f"got {self.sequence_labels!r}")
        for name in names:
            if parse_label_set(name)[0] != "sequence":
                raise ValueError(f"sequence label name {name!r} clashes with n-gram label sets "
                                 "(input_<n>/output_<n>); rename it")
        if len(set(names)) != len(names):
            raise ValueError(f"ProbeConfig.sequence_labels has duplicates: {list(names)}")
        put("sequence_labels", tuple(names))
        if self.memory_budget is not None:
            put("memory_budget", parse_bytes(self.memory_budget, "ProbeConfig.memory_budget"))
        if self.zero_policy not in ZERO_POLICIES:
            raise ValueError(f"ProbeConfig.zero_policy must be one of {ZERO_POLICIES}, "
                             f"got {self.zero_policy!r}")

    @classmethod
    def resolve(cls, config: ProbeConfig | None) -> ProbeConfig:
        """``config`` itself, the defaults for None; anything else is a ValueError (entry-point check)."""
        if config is None:
            return cls()
        if not isinstance(config, cls):
            raise ValueError(f"config must be a ProbeConfig (or None for the defaults), got "
                             f"{type(config).__name__}; build one with ProbeConfig(...) or "
                             "ProbeConfig.from_dict(...)")
        return config

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all settings, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeConfig:
        """Strict inverse of :meth:`to_dict`: an unknown key is a ValueError naming it and the valid keys."""
        if not isinstance(d, Mapping):
            raise ValueError(f"ProbeConfig.from_dict expects a mapping, got {type(d).__name__}")
        valid = cls.field_names()
        unknown = sorted(k for k in d if k not in valid)
        if unknown:
            raise ValueError(f"unknown ProbeConfig key(s) {unknown}; valid keys: {list(valid)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists); ``ProbeConfig.from_dict(c.to_dict()) == c``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> ProbeConfig:
        """A copy with ``changes`` applied (validated; an unknown name is a ValueError)."""
        return ProbeConfig.from_dict({**dataclasses.asdict(self), **changes})
