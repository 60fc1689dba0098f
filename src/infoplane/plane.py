"""Information-plane measures from soft-entropy records (pure functions on tidy rows).

Input: records as produced by ``SoftEntropyResult.to_records()`` (optionally with ``model``/``step`` columns
added by the probe), one row per (layer, label set) with columns ``entropy``, ``mi``, ``mi_null``,
``singleton_mass``, ``n_labels``, ``capacity``. n-gram label sets are named ``input_{n}`` (X_n, the n-gram
ending at the position) and ``output_{n}`` (Y_n, the next n tokens); any other name is a per-sequence label.

Output of :func:`plane_table`: one row per (model, step, layer, n) with

* ``entropy`` H(Z), ``capacity``;
* ``complexity`` = I(X_n; Z) and ``expressivity`` = I(Z; Y_n)          (paper sec. 2, IB axes);
* ``optimality`` = expressivity / complexity                              (paper sec. 2, -> 1 on the bound);
* ``distance`` = complexity - expressivity                                 (distance to the diagonal bound);
* back-off increments ``backoff_in`` = I(X_n;Z) - I(X_{n-1};Z) = I(X_n;Z|X_{n-1}) (chain rule; Katz back-off,
  paper sec. 3) and their shares of I(X_nmax;Z) and of H(Z); the same for the output side;
* bias columns next to every MI: ``*_null`` (permutation-null MI), ``*_singleton_mass``, ``*_n_labels``;
* per-sequence label MI as ``seq_mi_<name>`` / ``seq_mi_null_<name>``;
* rows with ``layer == "mean"`` (``aggregate == "mean_excl_embedding"``): plain means over layers >= 1
  (the embedding layer 0 is excluded, as in the reference code), plus ``optimality_of_means``.

All values are efficiency-normalised (divided by log m), as the accumulator reports them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["plane_table", "layer_means", "label_set_kind", "PLANE_COLUMNS"]

PLANE_COLUMNS = [
    "model", "step", "aggregate", "layer", "n", "entropy", "capacity", "complexity", "expressivity",
    "optimality", "distance", "complexity_null", "expressivity_null", "complexity_excess",
    "expressivity_excess", "complexity_singleton_mass", "expressivity_singleton_mass", "complexity_n_labels",
    "expressivity_n_labels", "backoff_in", "backoff_in_share_top", "backoff_in_share_h", "backoff_out",
    "backoff_out_share_top", "backoff_out_share_h", "residual_share_h",
]


def label_set_kind(name: str) -> tuple[str, int | None]:
    """``"input_3" -> ("input", 3)``, ``"output_1" -> ("output", 1)``, others -> ``("sequence", None)``."""
    for kind in ("input", "output"):
        prefix = kind + "_"
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return kind, int(name[len(prefix):])
    return "sequence", None


def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _group_key(row: Mapping[str, Any]) -> tuple[Any, Any]:
    return row.get("model"), row.get("step")


def plane_table(records: Iterable[Mapping[str, Any]], include_means: bool = True) -> list[dict[str, Any]]:
    """Information-plane rows from accumulator records (see module docstring for the columns).

    Raises:
        ValueError: a record lacks ``layer``/``label_set``/``mi``/``entropy``, or no n-gram label set
            is present.
    """
    groups: dict[tuple[Any, Any], dict[int, dict[str, Mapping[str, Any]]]] = {}
    for i, r in enumerate(records):
        for col in ("layer", "label_set", "entropy"):
            if col not in r:
                raise ValueError(f"record {i} lacks column {col!r}: expected accumulator records with "
                                 "layer, label_set, entropy, mi, mi_null, singleton_mass, n_labels")
        if r["label_set"] in ("", None):
            continue
        if "mi" not in r:
            raise ValueError(f"record {i} (label set {r['label_set']!r}) lacks column 'mi'")
        layer = int(r["layer"])
        groups.setdefault(_group_key(r), {}).setdefault(layer, {})[str(r["label_set"])] = r
    out: list[dict[str, Any]] = []
    for (model, step), layers in groups.items():
        orders = sorted({n for sets in layers.values() for name in sets
                         for kind, n in [label_set_kind(name)] if kind != "sequence" and n is not None})
        if not orders:
            raise ValueError("no n-gram label sets (input_{n} / output_{n}) among the records")
        n_top = max(orders)
        group_rows: list[dict[str, Any]] = []
        for layer in sorted(layers):
            sets = layers[layer]
            any_row = next(iter(sets.values()))
            h = _num(any_row.get("entropy"))
            seq_cols: dict[str, Any] = {}
            for name, r in sets.items():
                if label_set_kind(name)[0] == "sequence":
                    seq_cols[f"seq_mi_{name}"] = _num(r.get("mi"))
                    seq_cols[f"seq_mi_null_{name}"] = _num(r.get("mi_null"))

            def get(kind: str, n: int, col: str,
                    _sets: Mapping[str, Mapping[str, Any]] = sets) -> float | None:
                r = _sets.get(f"{kind}_{n}")
                return None if r is None else _num(r.get(col))

            top_in, top_out = get("input", n_top, "mi"), get("output", n_top, "mi")
            for n in orders:
                compl, expr = get("input", n, "mi"), get("output", n, "mi")
                c_null, e_null = get("input", n, "mi_null"), get("output", n, "mi_null")
                # chain rule: I(X_n;Z) - I(X_{n-1};Z) = I(X_n;Z | X_{n-1}) >= 0 (X_{n-1} is a function of X_n)
                prev_in = 0.0 if n == 1 else get("input", n - 1, "mi")
                prev_out = 0.0 if n == 1 else get("output", n - 1, "mi")
                b_in, b_out = _diff(compl, prev_in), _diff(expr, prev_out)
                row = {
                    "model": model, "step": step, "aggregate": "layer", "layer": layer, "n": n,
                    "entropy": h, "capacity": _num(any_row.get("capacity")),
                    "complexity": compl, "expressivity": expr,
                    "optimality": _ratio(expr, compl),  # paper sec. 2: I(Z;Y)/I(X;Z)
                    "distance": _diff(compl, expr),  # distance to the bound I(X;Z) = I(Z;Y)
                    "complexity_null": c_null, "expressivity_null": e_null,
                    "complexity_excess": _diff(compl, c_null), "expressivity_excess": _diff(expr, e_null),
                    "complexity_singleton_mass": get("input", n, "singleton_mass"),
                    "expressivity_singleton_mass": get("output", n, "singleton_mass"),
                    "complexity_n_labels": get("input", n, "n_labels"),
                    "expressivity_n_labels": get("output", n, "n_labels"),
                    "backoff_in": b_in, "backoff_in_share_top": _ratio(b_in, top_in),
                    "backoff_in_share_h": _ratio(b_in, h),
                    "backoff_out": b_out, "backoff_out_share_top": _ratio(b_out, top_out),
                    "backoff_out_share_h": _ratio(b_out, h),
                    # share of H(Z) not explained by the longest context (predecessor's residual_h)
                    "residual_share_h": _ratio(_diff(h, top_in), h),
                }
                row.update(seq_cols)
                group_rows.append(row)
        out.extend(group_rows)
        if include_means:
            out.extend(layer_means(group_rows))
    return out


def layer_means(plane_rows: Iterable[Mapping[str, Any]], exclude_layers: tuple[int, ...] = (0,)
                ) -> list[dict[str, Any]]:
    """Means over layers (embedding layer 0 excluded by default) per (model, step, n).

    Each numeric column becomes the plain mean of its per-layer values; ``optimality`` is the mean of the
    per-layer ratios and ``optimality_of_means`` the ratio of the mean expressivity to the mean complexity
    (the paper does not say which of the two it reports).
    """
    buckets: dict[tuple[Any, Any, Any], list[Mapping[str, Any]]] = {}
    for r in plane_rows:
        if r.get("aggregate", "layer") != "layer" or r.get("layer") in exclude_layers:
            continue
        buckets.setdefault((r.get("model"), r.get("step"), r.get("n")), []).append(r)
    out = []
    for (model, step, n), rows in buckets.items():
        mean_row: dict[str, Any] = {"model": model, "step": step, "aggregate": "mean_excl_embedding",
                                    "layer": "mean", "n": n}
        keys = [k for k in rows[0] if k not in mean_row]
        for k in keys:
            vals = [_num(r.get(k)) for r in rows]
            vals = [v for v in vals if v is not None]
            mean_row[k] = sum(vals) / len(vals) if vals else None
        mean_row["n_layers_averaged"] = len(rows)
        mean_row["optimality_of_means"] = _ratio(mean_row.get("expressivity"), mean_row.get("complexity"))
        out.append(mean_row)
    return out
