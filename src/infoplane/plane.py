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
  (the embedding layer 0 is excluded, as in the reference code), plus ``optimality_of_means``;
* validity: ``valid`` (bool) and ``invalid_reason`` (text, ``""`` when valid), see below.

All values are efficiency-normalised (divided by log m), as the accumulator reports them.

Validity (:func:`row_validity`). A row is invalid when, for complexity or expressivity,

* the MI is not above its permutation null (when the null was computed): ``mi - mi_null <=``
  :data:`ROUNDOFF_TOL`. The null is one permutation, so no standard error is available and the margin is
  float round-off only; a small positive excess is *not* flagged (read ``*_excess`` for that);
* its labels leave too few samples per label: a singleton mass (share of samples whose label occurs once)
  above :data:`MAX_SINGLETON_MASS`. Every singleton contributes its full capacity ``H(Z) - H(p_i)`` to the
  MI (soft-entropy, accumulator.py), so with (nearly) all singletons I(X;Z) and I(Z;Y) both equal the
  capacity and their ratio is 1 by construction;
* the MI is near zero: ``|mi| <=`` :data:`ROUNDOFF_TOL` (e.g. one sample: both MI are round-off).

``optimality`` is NaN (not a number that looks like a measurement) when its denominator, the complexity, is
invalid for any of these reasons; when only the expressivity is invalid the ratio is kept and flagged.
``invalid_reason`` lists every reason. A layer-mean row is valid when every averaged layer is valid and the
means themselves pass the same checks; its ``optimality`` (mean of the per-layer ratios) is NaN when any
averaged layer's is, and ``optimality_of_means`` is NaN when the mean complexity is invalid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["plane_table", "layer_means", "label_set_kind", "row_validity", "PLANE_COLUMNS", "ROUNDOFF_TOL",
           "MAX_SINGLETON_MASS"]

ROUNDOFF_TOL = 1e-6  # normalised MI in [0, 1]; float64 sums of float32 assignments leave ~1e-8 (one sample)
MAX_SINGLETON_MASS = 0.9  # above this share of once-seen labels, MI is mostly the capacity term

PLANE_COLUMNS = [
    "model", "step", "aggregate", "layer", "n", "entropy", "capacity", "complexity", "expressivity",
    "optimality", "distance", "complexity_null", "expressivity_null", "complexity_excess",
    "expressivity_excess", "complexity_singleton_mass", "expressivity_singleton_mass", "complexity_n_labels",
    "expressivity_n_labels", "backoff_in", "backoff_in_share_top", "backoff_in_share_h", "backoff_out",
    "backoff_out_share_top", "backoff_out_share_h", "residual_share_h", "valid", "invalid_reason",
]
_FLAG_KEYS = ("valid", "invalid_reason")


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


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _measure_problems(name: str, mi: float | None, null: float | None, smass: float | None
                      ) -> list[str]:
    """Why the MI ``mi`` of one plane axis (``name``: "complexity" | "expressivity") is not a measurement."""
    if mi is None:
        return []
    out = []
    if mi <= ROUNDOFF_TOL:  # soft MI >= 0 (concavity of H), so this is zero up to round-off
        out.append(f"{name} near zero ({mi:.2g} <= {ROUNDOFF_TOL:g})")
    elif null is not None and mi - null <= ROUNDOFF_TOL:
        out.append(f"{name} not above its permutation null (excess {mi - null:.2g})")
    if smass is not None and smass > MAX_SINGLETON_MASS:
        out.append(f"too few samples per {name} label ({smass:.0%} of samples have a label seen once, "
                   f"max {MAX_SINGLETON_MASS:.0%})")
    return out


def row_validity(row: Mapping[str, Any]) -> tuple[bool, str, bool]:
    """``(valid, invalid_reason, ratio_defined)`` of one plane row from its complexity/expressivity, their
    nulls and singleton masses (see the module docstring); ``ratio_defined`` is False when the complexity,
    the denominator of the optimality, is invalid."""
    denom, numer = (_measure_problems(name, _num(row.get(name)), _num(row.get(f"{name}_null")),
                                      _num(row.get(f"{name}_singleton_mass")))
                    for name in ("complexity", "expressivity"))
    reasons = denom + numer
    return not reasons, "; ".join(reasons), not denom


def _optimality(expr: float | None, compl: float | None, ratio_defined: bool) -> float | None:
    """I(Z;Y_n) / I(X_n;Z) (Conklin et al. 2026, sec. 2); NaN when the denominator is no measurement,
    None when a side is missing."""
    if expr is None or compl is None:
        return None
    if not ratio_defined or compl <= 0:
        return math.nan
    return expr / compl


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
                    "optimality": None,  # filled below, once the row's validity is known
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
                valid, reason, defined = row_validity(row)
                row["optimality"] = _optimality(expr, compl, defined)  # paper sec. 2: I(Z;Y)/I(X;Z)
                row["valid"], row["invalid_reason"] = valid, reason
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
    (the paper does not say which of the two it reports). ``valid``/``invalid_reason`` aggregate the
    layers' flags with the checks of :func:`row_validity` on the means; ``n_layers_invalid`` counts the
    invalid layers.
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
        keys = [k for k in rows[0] if k not in mean_row and k not in _FLAG_KEYS]
        for k in keys:
            vals = [_num(r.get(k)) for r in rows]
            vals = [v for v in vals if v is not None]
            mean_row[k] = sum(vals) / len(vals) if vals else None
        if any(_is_nan(r.get("optimality")) for r in rows):
            mean_row["optimality"] = math.nan  # a mean that silently drops layers would look valid
        mean_row["n_layers_averaged"] = len(rows)
        valid, reason, defined = row_validity(mean_row)
        bad = [r for r in rows if str(r.get("valid")) == "False"]  # bool, or its CSV text
        if bad:
            kinds = list(dict.fromkeys(k.split(" (")[0] for r in bad
                                       for k in str(r.get("invalid_reason") or "").split("; ")))
            layer_reason = (f"{len(bad)} of {len(rows)} layers invalid (layers "
                            f"{', '.join(str(r.get('layer')) for r in bad)}: {', '.join(kinds)})")
            own = [x for x in reason.split("; ") if x and x.split(" (")[0] not in kinds]  # new at the mean
            reason = "; ".join([layer_reason, *own])
        mean_row["optimality_of_means"] = _optimality(mean_row.get("expressivity"),
                                                      mean_row.get("complexity"), defined)
        mean_row["valid"], mean_row["invalid_reason"] = not reason, reason
        mean_row["n_layers_invalid"] = len(bad)
        out.append(mean_row)
    return out
