"""``ProbeResult``: the tidy rows, information-plane rows and metadata of one probe run.

Rows are one per (hidden state, label set) with values normalised by log m (soft-entropy, accumulator.py);
plane rows are the measures of :func:`infoplane.plane.plane_table` per (hidden state, n) plus layer means.
``to_frame()`` gives the long format (one row per quantity), ``summary()`` the layer means, ``repr`` a
layers x label sets table of MI. Plane rows carry their validity (``valid``, ``invalid_reason``:
:func:`infoplane.plane.row_validity`); ``to_frame("plane")`` and ``summary()`` show it.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infoplane.io import atomic_write_bytes, atomic_write_csv, atomic_write_json
from infoplane.plane import PLANE_COLUMNS
from infoplane.probe.labels import parse_label_set

__all__ = ["ProbeResult", "RESULT_COLUMNS", "FRAME_COLUMNS", "PLANE_FRAME_COLUMNS", "ordered_columns",
           "result_rows"]

RESULT_COLUMNS = [
    "model", "step", "layer", "label_set", "kind", "n", "entropy", "mi", "mi_null", "singleton_mass",
    "n_labels", "capacity", "conditional_entropy", "regularity", "n_samples",
]
FRAME_COLUMNS = ["model", "step", "layer", "label_set", "quantity", "value", "n_samples", "seed"]
PLANE_FRAME_COLUMNS = FRAME_COLUMNS + ["valid", "invalid_reason"]  # the plane row's validity, per quantity
_ROW_KEYS = ("model", "step", "layer", "label_set", "kind", "n", "n_samples")
_PLANE_KEYS = ("model", "step", "aggregate", "layer", "n", "valid", "invalid_reason")
_REPR_MAX_LAYERS = 40  # more hidden states than this: the repr shows the first and last 16


def ordered_columns(rows: list[dict[str, Any]], preferred: list[str]) -> list[str]:
    """Column order for a CSV: ``preferred`` columns present in ``rows`` first, then the rest as seen."""
    cols = [c for c in preferred if any(c in r for r in rows)]
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def result_rows(result: Any, model_name: str, step: int | None) -> list[dict[str, Any]]:
    """Tidy rows (:data:`RESULT_COLUMNS`) from a ``SoftEntropyResult``: one per (layer, label set)."""
    rows = []
    for rec in result.to_records():
        kind, n = parse_label_set(str(rec.get("label_set", "")))
        row = {"model": model_name, "step": step, "layer": int(rec["layer"]), "label_set": rec["label_set"],
               "kind": kind if rec.get("label_set") else "", "n": n}
        for k, v in rec.items():
            if k not in row:
                row[k] = v.item() if hasattr(v, "item") else v
        rows.append(row)
    return rows


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, (str, bool)):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _fmt(v: Any, width: int = 8) -> str:
    """``v`` with 4 decimals; ``-`` when missing, ``nan``/``inf`` as such (an undefined value is shown)."""
    x = _num(v)
    if x is None:
        return f"{'-':>{width}}"
    return f"{x:{width}.4f}" if np.isfinite(x) else f"{str(x):>{width}}"


def _flag(v: Any) -> bool | None:
    """A ``valid`` cell as a bool (it is the text ``"True"``/``"False"`` after a CSV round trip)."""
    if v is None or v == "":
        return None
    return v if isinstance(v, bool) else str(v) == "True"


def _short(label_set: str) -> str:
    """Column title of a label set's MI: ``I(X2;Z)`` (input_2), ``I(Z;Y2)`` (output_2), ``I(book)``."""
    kind, n = parse_label_set(label_set)
    if kind == "input":
        return f"I(X{n};Z)"
    if kind == "output":
        return f"I(Z;Y{n})"
    return f"I({label_set[:6]})"


@dataclass
class ProbeResult:
    """Tidy results of :func:`~infoplane.probe.analyze.analyze`.

    Attributes:
        rows: one dict per (layer, label set) with :data:`RESULT_COLUMNS` (entropies and MI normalised by
            log m, dimensionless in [0, 1]).
        plane: information-plane rows (:func:`infoplane.plane.plane_table`), incl. layer means.
        metadata: model id/hash, corpus fingerprint, sample sizes, seed, m, temperature, reference hash,
            versions.
    """

    rows: list[dict[str, Any]]
    plane: list[dict[str, Any]]
    metadata: dict[str, Any]

    @property
    def label_sets(self) -> list[str]:
        """Label set names in row order (``input_1``, ``output_1``, ..., then sequence labels)."""
        return list(dict.fromkeys(str(r["label_set"]) for r in self.rows))

    def layer_values(self, column: str, label_set: str | None = None) -> np.ndarray:
        """Per-layer values ``[L]`` of ``column`` of ``label_set`` (None: first set)."""
        sets = [r for r in self.rows if label_set is None or r["label_set"] == label_set]
        if not sets:
            raise ValueError(f"no rows for label set {label_set!r}; available: {self.label_sets}")
        name = sets[0]["label_set"]
        by_layer = {int(r["layer"]): r[column] for r in sets if r["label_set"] == name}
        return np.array([by_layer[k] for k in sorted(by_layer)], dtype=float)

    def to_frame(self, table: str = "rows") -> Any:
        """Long-format ``pandas.DataFrame`` with :data:`FRAME_COLUMNS`: one row per quantity.

        ``table="rows"``: quantities of every (layer, label set) row (``entropy``, ``mi``, ``mi_null``, ...).
        ``table="plane"``: information-plane measures per (layer, n) with :data:`PLANE_FRAME_COLUMNS`;
        ``label_set`` is ``"input_<n>/output_<n>"``, ``layer`` is ``"mean"`` for the layer means (embedding
        excluded), and ``valid``/``invalid_reason`` repeat the plane row's flags on each of its quantities (an
        undefined optimality is a NaN value with ``valid=False`` and the reason).
        """
        import pandas as pd  # lazy: only this method needs pandas

        if table not in ("rows", "plane"):
            raise ValueError(f"table must be 'rows' or 'plane', got {table!r}")
        seed = self.metadata.get("seed")
        out: list[dict[str, Any]] = []
        if table == "rows":
            for r in self.rows:
                for k, v in r.items():
                    if k not in _ROW_KEYS and _num(v) is not None:
                        out.append({"model": r.get("model"), "step": r.get("step"), "layer": r["layer"],
                                    "label_set": r["label_set"], "quantity": k, "value": float(v),
                                    "n_samples": r.get("n_samples"), "seed": seed})
        else:
            n_samples = self.metadata.get("n_samples")
            for p in self.plane:
                for k, v in p.items():
                    if k not in _PLANE_KEYS and _num(v) is not None:
                        out.append({"model": p.get("model"), "step": p.get("step"), "layer": p["layer"],
                                    "label_set": f"input_{p['n']}/output_{p['n']}", "quantity": k,
                                    "value": float(v), "n_samples": n_samples, "seed": seed,
                                    "valid": _flag(p.get("valid")),
                                    "invalid_reason": p.get("invalid_reason")})
            return pd.DataFrame(out, columns=PLANE_FRAME_COLUMNS)
        return pd.DataFrame(out, columns=FRAME_COLUMNS)

    def _header(self) -> str:
        md = self.metadata
        step = "" if md.get("step") is None else f", step {md['step']}"
        return (f"ProbeResult({md.get('model')}{step}: N={md.get('n_samples')} x "
                f"{md.get('n_hidden_states')} hidden states, d={md.get('hidden_dim')}, m={md.get('n_bins')}, "
                f"seed {md.get('seed')}; H, I in units of log m)")

    def summary(self) -> str:
        """Layer means (embedding excluded) per n-gram order: entropy H(Z), complexity I(X_n;Z),
        expressivity I(Z;Y_n), optimality and distance to the bound (Conklin et al. 2026, sec. 2), their
        validity (``NO`` with a warning line giving the reason), plus the sequence-label MI."""
        lines = [self._header(), "layer mean (embedding excluded):",
                 "   n   entropy  complexity  expressivity  optimality  distance  valid"]
        seq: dict[str, Any] = {}
        flagged = []
        for r in self.plane:
            if str(r.get("layer")) != "mean":
                continue
            valid = _flag(r.get("valid"))
            lines.append(f"  {r.get('n')!s:>2}  {_fmt(r.get('entropy'))}    {_fmt(r.get('complexity'))}"
                         f"      {_fmt(r.get('expressivity'))}    {_fmt(r.get('optimality'))}"
                         f"  {_fmt(r.get('distance'))}  {'-' if valid is None else 'yes' if valid else 'NO'}")
            if valid is False:
                flagged.append(f"  warning: n={r.get('n')} invalid: {r.get('invalid_reason')}")
            seq.update({k[len("seq_mi_"):]: v for k, v in r.items() if k.startswith("seq_mi_")
                        and not k.startswith("seq_mi_null_")})
        lines.extend(flagged)
        for name, v in seq.items():
            lines.append(f"  sequence label {name!r}: I(Z; label) = {_fmt(v).strip()}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        sets = self.label_sets
        layers = sorted({int(r["layer"]) for r in self.rows})
        by = {(int(r["layer"]), str(r["label_set"])): r for r in self.rows}
        head = "  layer   H(Z) " + "".join(f" {_short(s):>9}" for s in sets)
        lines = [self._header(), head]
        shown = layers
        if len(layers) > _REPR_MAX_LAYERS:
            shown = layers[:16] + [None] + layers[-16:]  # type: ignore[list-item]
        for layer in shown:
            if layer is None:
                lines.append(f"  ... {len(layers) - 32} more layers ...")
                continue
            first = by.get((layer, sets[0])) if sets else None
            cells = "".join(f" {_fmt(by.get((layer, s), {}).get('mi'), 9)}" for s in sets)
            lines.append(f"  {layer:>5} {_fmt(first.get('entropy') if first else None, 7)}{cells}")
        return "\n".join(lines)

    def save(self, out_dir: str | os.PathLike, stem: str = "probe") -> dict[str, Path]:
        """Write ``{stem}.csv`` (rows), ``{stem}_plane.csv``, ``{stem}.json`` (metadata) atomically; also
        ``{stem}.parquet`` when pyarrow is importable. Returns the written paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"rows": out / f"{stem}.csv", "plane": out / f"{stem}_plane.csv",
                 "metadata": out / f"{stem}.json"}
        atomic_write_csv(paths["rows"], self.rows, ordered_columns(self.rows, RESULT_COLUMNS))
        atomic_write_csv(paths["plane"], self.plane, ordered_columns(self.plane, PLANE_COLUMNS))
        atomic_write_json(paths["metadata"], self.metadata)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return paths
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self.rows), buf)
        paths["parquet"] = out / f"{stem}.parquet"
        atomic_write_bytes(paths["parquet"], buf.getvalue())
        return paths
