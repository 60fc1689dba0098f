"""Information-plane figures from results tables only (headless, Agg; each figure saved as PNG and SVG).

* :func:`plot_plane`: complexity I(X_n;Z) (x) against expressivity I(Z;Y_n) (y), one panel per order n, the
  bound as the dashed diagonal y = x (paper sec. 2), points = layer means (embedding excluded) of each
  model/checkpoint, coloured by training step (trajectory, joined by a line) or by model.
* :func:`plot_layer_profiles`: per-layer H(Z), I(X_n;Z) and I(Z;Y_n) (+ per-sequence label MI).
* :func:`plot_backoff`: stacked per-layer shares of H(Z) carried by each back-off level
  I(X_n;Z|X_{n-1})/H(Z), plus the residual (H - I(X_nmax;Z))/H.
* :func:`plot_all`: all of the above from a ``probe.csv``/``sweep.csv`` (raw rows) or a ``*_plane.csv``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_plane", "plot_layer_profiles", "plot_backoff", "plot_all", "load_plane_rows", "pyplot_agg",
           "save_figure"]


def pyplot_agg():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path, stem: str) -> list[Path]:
    from infoplane.io import atomic_open

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        with atomic_open(p, "wb") as fh:
            fig.savefig(fh, format=ext, dpi=150, bbox_inches="tight")
        paths.append(p)
    pyplot_agg().close(fig)
    return paths


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if x != x else x


_TABLE_KINDS = "a probe.csv, sweep.csv or *_plane.csv written by `infoplane analyze`/`sweep`"


def _check_table_file(p: Path) -> None:
    """A rectangular UTF-8 CSV with a header, else a ValueError naming the file and the first problem."""
    import csv

    try:
        with open(p, encoding="utf-8", newline="") as fh:
            lines = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(p)!r} is not a UTF-8 text table (byte {exc.start}): expected "
                         f"{_TABLE_KINDS}") from None
    except csv.Error as exc:
        raise ValueError(f"{str(p)!r} is not a readable CSV ({exc}): expected {_TABLE_KINDS}") from None
    head = lines[0] if lines else []
    if not head or head[0].lstrip().startswith(("{", "[")):
        what = "JSON" if head and head[0].lstrip().startswith(("{", "[")) else "no CSV header"
        raise ValueError(f"{str(p)!r} is not a results table ({what}; first line {','.join(head)[:60]!r}): "
                         f"expected {_TABLE_KINDS}")
    for i, cells in enumerate(lines[1:], start=2):
        if cells and len(cells) != len(head):
            raise ValueError(f"{str(p)!r} line {i} has {len(cells)} cells but the header has {len(head)} "
                             f"columns (a ragged or truncated CSV): expected {_TABLE_KINDS}")


def load_plane_rows(rows_or_path: str | os.PathLike | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plane rows from a CSV path or rows; raw accumulator/probe rows are converted with ``plane_table``.

    Raises FileNotFoundError for a missing file and ValueError naming the file for one that is not a
    rectangular CSV table (JSON, binary, ragged rows) or lacks the expected columns.
    """
    from infoplane.io import read_csv
    from infoplane.plane import plane_table

    where = "the results table"
    if isinstance(rows_or_path, (str, os.PathLike)):
        p = Path(rows_or_path)
        if not p.is_file():
            raise FileNotFoundError(f"results table {str(p)!r} not found: expected {_TABLE_KINDS}")
        _check_table_file(p)
        rows = read_csv(p)
        where = repr(str(p))
    else:
        rows = [dict(r) for r in rows_or_path]
    if not rows:
        raise ValueError(f"{where} is empty (no data rows)")
    if "complexity" in rows[0]:
        missing = [c for c in ("layer", "n", "expressivity") if c not in rows[0]]
        if not missing:
            return rows
    elif "label_set" in rows[0]:
        try:
            return plane_table(rows)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    raise ValueError(f"{where}: unrecognised table: expected probe rows (layer, label_set, entropy, mi, ...) "
                     f"or plane rows (layer, n, complexity, expressivity, ...), got columns "
                     f"{sorted(map(str, rows[0]))}")


def _series_key(r: Mapping[str, Any]) -> tuple[str, float]:
    step = _f(r.get("step"))
    return str(r.get("model") or ""), step if step is not None else -1.0


def plot_plane(plane_rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, color_by: str = "auto",
               stem: str = "information_plane") -> list[Path]:
    """Complexity vs expressivity of the layer means, one panel per back-off order, bound diagonal dashed.

    ``color_by``: ``"step"`` (colour bar, one trajectory line per model), ``"model"`` or ``"auto"`` (step
    when some model has several steps).
    """
    plt = pyplot_agg()
    means = [r for r in plane_rows if str(r.get("layer")) == "mean"
             and _f(r.get("complexity")) is not None and _f(r.get("expressivity")) is not None]
    if not means:
        raise ValueError("no layer-mean rows with both complexity and expressivity to plot")
    orders = sorted({int(_f(r["n"])) for r in means})
    models = sorted({str(r.get("model") or "") for r in means})
    steps_per_model = {m: {_series_key(r)[1] for r in means if str(r.get("model") or "") == m}
                       for m in models}
    if color_by == "auto":
        color_by = "step" if any(len(s) > 1 for s in steps_per_model.values()) else "model"
    if color_by not in ("step", "model"):
        raise ValueError(f"color_by must be 'step', 'model' or 'auto', got {color_by!r}")
    fig, axes = plt.subplots(1, len(orders), figsize=(4.2 * len(orders), 4), squeeze=False)
    all_steps = [s for r in means if (s := _series_key(r)[1]) >= 0]
    norm = plt.Normalize(min(all_steps, default=0), max(all_steps, default=1) or 1)
    cmap = plt.get_cmap("viridis")
    tab = plt.get_cmap("tab10")
    scatter = None
    for ax, n in zip(axes[0], orders):
        pts = [r for r in means if int(_f(r["n"])) == n]
        hi = max(max(_f(r["complexity"]), _f(r["expressivity"])) for r in pts) * 1.1 or 1.0
        ax.plot([0, hi], [0, hi], "k--", lw=1, label="bound I(X;Z) = I(Z;Y)")  # paper sec. 2: diagonal
        for mi, m in enumerate(models):
            ser = sorted((r for r in pts if str(r.get("model") or "") == m), key=lambda r: _series_key(r)[1])
            xs = [_f(r["complexity"]) for r in ser]
            ys = [_f(r["expressivity"]) for r in ser]
            if color_by == "step":
                ax.plot(xs, ys, "-", color="0.6", lw=0.8, zorder=1)
                scatter = ax.scatter(xs, ys, c=[max(_series_key(r)[1], 0) for r in ser], cmap=cmap, norm=norm,
                                     s=28, zorder=2, marker="os^Dv<>p*h"[mi % 10], label=m or None)
            else:
                ax.scatter(xs, ys, color=tab(mi % 10), s=32, zorder=2, label=m or None)
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel(f"complexity I(X_{n}; Z)")
        ax.set_ylabel(f"expressivity I(Z; Y_{n})")
        ax.set_title(f"n = {n} (layer mean, no embedding)")
        ax.legend(fontsize=7, loc="upper left")
    if color_by == "step" and scatter is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="training step")
    return save_figure(fig, Path(out_dir), stem)


def _pick_group(plane_rows: Sequence[Mapping[str, Any]], model: str | None, step: Any
                ) -> tuple[str, float, list[Mapping[str, Any]]]:
    layer_rows = [r for r in plane_rows if str(r.get("layer")) != "mean"]
    if not layer_rows:
        raise ValueError("no per-layer rows to plot")
    keys = sorted({_series_key(r) for r in layer_rows})
    if model is not None:
        keys = [k for k in keys if k[0] == model]
    if step is not None:
        keys = [k for k in keys if k[1] == float(step)]
    if not keys:
        raise ValueError(f"no rows for model={model!r}, step={step!r}")
    key = keys[-1]  # default: the last step of the last model
    return key[0], key[1], [r for r in layer_rows if _series_key(r) == key]


def plot_layer_profiles(plane_rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike,
                        model: str | None = None, step: Any = None, stem: str = "layer_profiles"
                        ) -> list[Path]:
    """Per-layer H(Z), capacity, I(X_n;Z), I(Z;Y_n) and per-sequence-label MI of one model/checkpoint."""
    plt = pyplot_agg()
    m, s, rows = _pick_group(plane_rows, model, step)
    orders = sorted({int(_f(r["n"])) for r in rows})
    layers = sorted({int(_f(r["layer"])) for r in rows})
    first = {int(_f(r["layer"])): r for r in rows if int(_f(r["n"])) == orders[0]}
    seq_cols = sorted(k for k in rows[0] if k.startswith("seq_mi_") and not k.startswith("seq_mi_null_"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    axes[0].plot(layers, [_f(first[layer]["entropy"]) for layer in layers], "k-o", ms=3, label="H(Z)")
    axes[0].plot(layers, [_f(first[layer]["capacity"]) for layer in layers], "k:", label="capacity")
    for col in seq_cols:
        axes[0].plot(layers, [_f(first[layer].get(col)) for layer in layers], "-s", ms=3,
                     label=f"I({col[len('seq_mi_'):]}; Z)")
    axes[0].set_title("entropy H(Z), capacity\nand per-text label MI", fontsize=10)
    cmap = plt.get_cmap("plasma")
    for ax, col, title in ((axes[1], "complexity", "complexity I(X_n; Z)"),
                           (axes[2], "expressivity", "expressivity I(Z; Y_n)")):
        for i, n in enumerate(orders):
            by = {int(_f(r["layer"])): r for r in rows if int(_f(r["n"])) == n}
            color = cmap(i / max(len(orders), 2))
            ax.plot(layers, [_f(by[layer].get(col)) for layer in layers], "-o", ms=3, color=color,
                    label=f"n={n}")
            null = [_f(by[layer].get(f"{col}_null")) for layer in layers]
            if any(v is not None for v in null):
                ax.plot(layers, null, ":", color=color, lw=0.8)
        ax.set_title(title + "\n(dotted: permutation null)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("hidden state (0 = embedding)")
        ax.legend(fontsize=7)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"{m}" + (f" step {int(s)}" if s >= 0 else ""))
    return save_figure(fig, Path(out_dir), stem)


def plot_backoff(plane_rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike,
                 model: str | None = None, step: Any = None, stem: str = "backoff") -> list[Path]:
    """Stacked per-layer shares of H(Z): I(X_1;Z), I(X_2;Z|X_1), ..., residual (H - I(X_nmax;Z))."""
    plt = pyplot_agg()
    m, s, rows = _pick_group(plane_rows, model, step)
    orders = sorted({int(_f(r["n"])) for r in rows})
    layers = sorted({int(_f(r["layer"])) for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(layers) + 3), 3.8))
    bottom = [0.0] * len(layers)
    cmap = plt.get_cmap("viridis")
    for i, n in enumerate(orders):
        by = {int(_f(r["layer"])): r for r in rows if int(_f(r["n"])) == n}
        vals = [max(_f(by[layer].get("backoff_in_share_h")) or 0.0, 0.0) for layer in layers]
        label = "I(X_1; Z)" if n == 1 else f"I(X_{n}; Z | X_{n - 1})"
        ax.bar(layers, vals, bottom=bottom, color=cmap(i / max(len(orders), 2)), label=label)
        bottom = [b + v for b, v in zip(bottom, vals)]
    top = {int(_f(r["layer"])): r for r in rows if int(_f(r["n"])) == orders[-1]}
    resid = [max(_f(top[layer].get("residual_share_h")) or 0.0, 0.0) for layer in layers]
    ax.bar(layers, resid, bottom=bottom, color="0.85", label="residual H - I(X_nmax; Z)")
    ax.set_xlabel("hidden state (0 = embedding)")
    ax.set_ylabel("share of H(Z)")
    ax.set_title(f"back-off proportions: {m}" + (f" step {int(s)}" if s >= 0 else ""))
    ax.legend(fontsize=7, loc="upper right")
    return save_figure(fig, Path(out_dir), stem)


def plot_all(table: str | os.PathLike | Iterable[Mapping[str, Any]], out_dir: str | os.PathLike,
             color_by: str = "auto") -> list[Path]:
    """Every figure for a results table; returns the written PNG and SVG paths."""
    rows = load_plane_rows(table)
    paths = plot_plane(rows, out_dir, color_by=color_by)
    paths += plot_layer_profiles(rows, out_dir)
    paths += plot_backoff(rows, out_dir)
    return paths
