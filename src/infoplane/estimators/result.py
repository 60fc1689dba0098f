"""The result of the streaming soft-entropy estimator: arrays per layer, tidy records, a long table, text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SoftEntropyResult", "concat_layers"]

_MAX_SETS_SHOWN = 8  # label-set columns in the repr table
_MAX_LAYERS_SHOWN = 32  # more layers: the first and last 12 are shown


def _fmt(x: float) -> str:
    return "    nan" if not np.isfinite(x) else f"{x:7.4f}"


@dataclass(repr=False)
class SoftEntropyResult:
    """Results of :meth:`SoftEntropyAccumulator.compute`. All entropies/MI are divided by ``log m``
    (efficiency-normalised, in [0, 1]; soft-entropy, accumulator.py).

    Arrays are float64 with one entry per layer ``[L]``; dicts are keyed by label-set name.
    ``n_samples_per_layer`` and ``n_skipped_zero`` are int64 ``[L]`` (positions counted / skipped as exact
    zero vectors with ``zero_policy="skip"``); ``seed`` is the reference-point seed (``None`` for
    user-supplied reference points).
    """

    entropy: np.ndarray
    mean_sample_entropy: np.ndarray
    capacity: np.ndarray
    n_samples: int
    label_sets: list[str]
    mi: dict[str, np.ndarray]
    conditional_entropy: dict[str, np.ndarray]
    regularity: dict[str, np.ndarray]
    mi_null: dict[str, np.ndarray]
    n_labels: dict[str, int]
    singleton_mass: dict[str, float]
    temperature: float
    n_bins: int
    reference_hash: str
    n_samples_per_layer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_skipped_zero: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seed: int | None = None

    @property
    def n_layers(self) -> int:
        return len(self.entropy)

    def _n_at(self, layer: int) -> int:
        return int(self.n_samples_per_layer[layer]) if len(self.n_samples_per_layer) else self.n_samples

    def to_records(self) -> list[dict[str, Any]]:
        """Tidy rows: one per (layer, label_set); one per layer with ``label_set=""`` if no labels."""
        out: list[dict[str, Any]] = []
        for layer in range(len(self.entropy)):
            n = self._n_at(layer)
            base = {
                "layer": layer,
                "entropy": float(self.entropy[layer]),
                "capacity": float(self.capacity[layer]),
                "n_samples": n,
            }
            if not self.label_sets:
                out.append({"layer": layer, "label_set": "", **{k: base[k] for k in base if k != "layer"}})
                continue
            for name in self.label_sets:
                null = self.mi_null.get(name)
                out.append(
                    {
                        "layer": layer,
                        "label_set": name,
                        "entropy": base["entropy"],
                        "mi": float(self.mi[name][layer]),
                        "mi_null": float(null[layer]) if null is not None else float("nan"),
                        "conditional_entropy": float(self.conditional_entropy[name][layer]),
                        "regularity": float(self.regularity[name][layer]),
                        "capacity": base["capacity"],
                        "n_labels": self.n_labels[name],
                        "singleton_mass": self.singleton_mass[name],
                        "n_samples": n,
                    }
                )
        return out

    def long_records(self, model: str | None = None, step: int | None = None,
                     seed: int | None = None) -> list[dict[str, Any]]:
        """Long-format rows ``(model, step, layer, label_set, quantity, value, n_samples, seed)``.

        Layer quantities (``entropy``, ``mean_sample_entropy``, ``capacity``) have ``label_set=""``; label
        quantities (``mi``, ``mi_null`` when tracked, ``conditional_entropy``, ``regularity``,
        ``n_labels``, ``singleton_mass``) one row per label set. ``seed`` defaults to :attr:`seed`.
        """
        seed = self.seed if seed is None else seed
        rows: list[dict[str, Any]] = []

        def add(layer: int, label_set: str, quantity: str, value: float) -> None:
            rows.append({"model": model, "step": step, "layer": layer, "label_set": label_set,
                         "quantity": quantity, "value": float(value), "n_samples": self._n_at(layer),
                         "seed": seed})

        for layer in range(self.n_layers):
            for q in ("entropy", "mean_sample_entropy", "capacity"):
                add(layer, "", q, getattr(self, q)[layer])
            for name in self.label_sets:
                add(layer, name, "mi", self.mi[name][layer])
                if name in self.mi_null:
                    add(layer, name, "mi_null", self.mi_null[name][layer])
                add(layer, name, "conditional_entropy", self.conditional_entropy[name][layer])
                add(layer, name, "regularity", self.regularity[name][layer])
                add(layer, name, "n_labels", self.n_labels[name])
                add(layer, name, "singleton_mass", self.singleton_mass[name])
        return rows

    def to_frame(self, model: str | None = None, step: int | None = None, seed: int | None = None) -> Any:
        """Long-format ``pandas.DataFrame`` with columns ``model, step, layer, label_set, quantity, value,
        n_samples, seed`` (see :meth:`long_records`). Needs pandas (imported here, not at module import)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a dependency; kept for slim installs
            raise ImportError(
                "SoftEntropyResult.to_frame() needs pandas; install it (pip install pandas) or use "
                "long_records() / to_records() for plain dicts"
            ) from exc
        cols = ["model", "step", "layer", "label_set", "quantity", "value", "n_samples", "seed"]
        return pd.DataFrame(self.long_records(model, step, seed), columns=cols)

    def _header(self) -> str:
        skipped = int(np.sum(self.n_skipped_zero)) if len(self.n_skipped_zero) else 0
        extra = f", skipped zero vectors={skipped}" if skipped else ""
        return (f"SoftEntropyResult(layers={self.n_layers}, n_samples={self.n_samples}, m={self.n_bins}, "
                f"temperature={self.temperature:.4g}, reference={self.reference_hash}{extra})")

    def __repr__(self) -> str:
        """A compact table: one line per layer with H, capacity and the MI of each label set."""
        shown = self.label_sets[:_MAX_SETS_SHOWN]
        width = max([7, *(len(s) for s in shown)])
        lines = [self._header()]
        more = len(self.label_sets) - len(shown)
        note = f" (first {len(shown)}; {more} more in to_frame())" if more else ""
        lines.append("MI per label set" + note)
        lines.append("layer       H    cap  " + "  ".join(f"{s:>{width}}" for s in shown))
        layers = list(range(self.n_layers))
        if len(layers) > _MAX_LAYERS_SHOWN:
            layers = [*layers[:12], -1, *layers[-12:]]
        for layer in layers:
            if layer < 0:
                lines.append("  ...")
                continue
            cells = "  ".join(f"{_fmt(self.mi[s][layer]):>{width}}" for s in shown)
            lines.append(f"{layer:5d} {_fmt(self.entropy[layer])} {_fmt(self.capacity[layer])}  {cells}")
        return "\n".join(lines)

    def summary(self) -> str:
        """A short text table: per label set the MI range over layers, the layer of the maximum, the mean
        null MI and the label statistics; H and capacity ranges first."""
        lines = [self._header()]
        if self.n_layers == 0:
            return "\n".join(lines)

        def rng(a: np.ndarray) -> str:
            return f"{np.nanmin(a):.4f}..{np.nanmax(a):.4f}" if np.isfinite(a).any() else "nan"

        lines.append(f"  entropy H   {rng(self.entropy)}   capacity {rng(self.capacity)}")
        if self.label_sets:
            width = max(9, *(len(s) for s in self.label_sets))
            lines.append(f"  {'label set':<{width}}  {'MI min..max':>15}  {'argmax':>6}  {'null mean':>9}  "
                         f"{'labels':>8}  {'singleton':>9}")
            for s in self.label_sets:
                mi = self.mi[s]
                arg = str(int(np.nanargmax(mi))) if np.isfinite(mi).any() else "-"
                has_null = s in self.mi_null and bool(np.isfinite(self.mi_null[s]).any())
                null = f"{float(np.nanmean(self.mi_null[s])):9.4f}" if has_null else f"{'-':>9}"
                lines.append(f"  {s:<{width}}  {rng(mi):>15}  {arg:>6}  {null}  {self.n_labels[s]:>8d}  "
                             f"{self.singleton_mass[s]:9.3f}")
        return "\n".join(lines)


def concat_layers(parts: list[SoftEntropyResult]) -> SoftEntropyResult:
    """One result from results over consecutive layer groups (e.g. the passes of a
    :class:`~infoplane.estimators.memory.MemoryPlan`), in the given order.

    Every per-layer array is a function of that layer's statistics only, so the concatenation equals the
    result of one accumulator over all layers. Raises ``ValueError`` when the parts disagree on the label
    sets, reference points or temperature."""
    if not parts:
        raise ValueError("concat_layers needs at least one result")
    first = parts[0]
    for p in parts[1:]:
        for attr in ("label_sets", "reference_hash", "temperature", "n_bins", "seed"):
            if getattr(p, attr) != getattr(first, attr):
                raise ValueError(f"cannot concatenate layer groups: {attr} differs "
                                 f"({getattr(first, attr)!r} vs {getattr(p, attr)!r})")

    def cat(get: Any) -> np.ndarray:
        return np.concatenate([np.asarray(get(p)) for p in parts])

    def per_set(attr: str) -> dict[str, np.ndarray]:
        names = getattr(first, attr).keys()
        return {k: cat(lambda p, k=k: getattr(p, attr)[k]) for k in names}

    best = max(parts, key=lambda p: p.n_samples)  # n_labels / singleton mass: the most-counted layer
    return SoftEntropyResult(
        entropy=cat(lambda p: p.entropy), mean_sample_entropy=cat(lambda p: p.mean_sample_entropy),
        capacity=cat(lambda p: p.capacity), n_samples=best.n_samples, label_sets=list(first.label_sets),
        mi=per_set("mi"), conditional_entropy=per_set("conditional_entropy"),
        regularity=per_set("regularity"),
        mi_null=per_set("mi_null"), n_labels=dict(best.n_labels), singleton_mass=dict(best.singleton_mass),
        temperature=first.temperature, n_bins=first.n_bins, reference_hash=first.reference_hash,
        n_samples_per_layer=cat(lambda p: p.n_samples_per_layer),
        n_skipped_zero=cat(lambda p: p.n_skipped_zero), seed=first.seed,
    )
