"""Information-plane figures: PNG + SVG written headless from plane rows, raw rows or CSV files."""

from __future__ import annotations

import pytest

from infoplane.io import atomic_write_csv
from infoplane.plane import plane_table
from infoplane.plots import load_plane_rows, plot_all, plot_backoff, plot_layer_profiles, plot_plane


def raw_rows(model="m", steps=(None,)):
    rows = []
    for s_i, step in enumerate(steps):
        for layer in range(4):
            h = 0.9 - 0.05 * layer
            for n in (1, 2, 3):
                for kind, base in (("input", 0.3), ("output", 0.15)):
                    rows.append({"model": model, "step": step, "layer": layer, "label_set": f"{kind}_{n}",
                                 "entropy": h, "mi": base + 0.03 * n - 0.01 * s_i, "mi_null": 0.01,
                                 "capacity": 0.5, "n_labels": 10 * n, "singleton_mass": 0.1 * n})
            rows.append({"model": model, "step": step, "layer": layer, "label_set": "book", "entropy": h,
                         "mi": 0.02, "mi_null": 0.005, "capacity": 0.5, "n_labels": 3, "singleton_mass": 0.0})
    return rows


def _check(paths, stems):
    names = {p.name for p in paths}
    for stem in stems:
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in data[:2000]


def test_plot_all_from_raw_rows_single_model(tmp_path):
    paths = plot_all(raw_rows(), tmp_path)
    _check(paths, ["information_plane", "layer_profiles", "backoff"])


def test_trajectory_coloured_by_step_and_models(tmp_path):
    rows = plane_table(raw_rows("a", steps=(10, 100, 1000)) + raw_rows("b", steps=(10, 100)))
    _check(plot_plane(rows, tmp_path, color_by="step"), ["information_plane"])
    _check(plot_plane(rows, tmp_path / "m", color_by="model"), ["information_plane"])
    _check(plot_layer_profiles(rows, tmp_path, model="a", step=100), ["layer_profiles"])
    _check(plot_backoff(rows, tmp_path, model="b"), ["backoff"])
    with pytest.raises(ValueError, match="no rows"):
        plot_backoff(rows, tmp_path, model="zzz")
    with pytest.raises(ValueError, match="color_by"):
        plot_plane(rows, tmp_path, color_by="size")


def test_from_csv_files_and_errors(tmp_path):
    atomic_write_csv(tmp_path / "probe.csv", raw_rows())
    atomic_write_csv(tmp_path / "probe_plane.csv", plane_table(raw_rows()))
    a = load_plane_rows(tmp_path / "probe.csv")
    b = load_plane_rows(tmp_path / "probe_plane.csv")
    assert len(a) == len(b)
    _check(plot_all(tmp_path / "probe_plane.csv", tmp_path / "figs"), ["information_plane"])
    with pytest.raises(FileNotFoundError, match="not found"):
        load_plane_rows(tmp_path / "missing.csv")
    atomic_write_csv(tmp_path / "other.csv", [{"x": 1}])
    with pytest.raises(ValueError, match="unrecognised"):
        load_plane_rows(tmp_path / "other.csv")
