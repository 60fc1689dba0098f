"""plane_table: known answers for complexity, expressivity, optimality, distance, back-off and means."""

from __future__ import annotations

import pytest

from infoplane.plane import label_set_kind, layer_means, plane_table

# per layer: H, and MI of input_1, input_2, output_1, output_2, genre
MI = {
    0: (0.9, {"input_1": 0.40, "input_2": 0.50, "output_1": 0.20, "output_2": 0.30, "genre": 0.01}),
    1: (0.8, {"input_1": 0.30, "input_2": 0.40, "output_1": 0.15, "output_2": 0.32, "genre": 0.02}),
    2: (0.6, {"input_1": 0.20, "input_2": 0.24, "output_1": 0.18, "output_2": 0.24, "genre": 0.04}),
}


def records(model="m", step=None):
    out = []
    for layer, (h, sets) in MI.items():
        for name, mi in sets.items():
            out.append({"model": model, "step": step, "layer": layer, "label_set": name, "entropy": h,
                        "mi": mi, "mi_null": mi / 10, "capacity": 0.55, "n_labels": 7,
                        "singleton_mass": 0.25 if name.endswith("2") else 0.0})
    return out


def test_per_layer_known_answers():
    rows = plane_table(records())
    by = {(r["layer"], r["n"]): r for r in rows}
    r = by[(1, 2)]
    assert r["complexity"] == 0.40 and r["expressivity"] == 0.32
    assert r["optimality"] == pytest.approx(0.8)  # 0.32 / 0.40
    assert r["distance"] == pytest.approx(0.08)
    assert r["backoff_in"] == pytest.approx(0.10)  # I(X_2;Z) - I(X_1;Z)
    assert r["backoff_in_share_top"] == pytest.approx(0.25)  # of I(X_2;Z) = 0.40
    assert r["backoff_in_share_h"] == pytest.approx(0.125)  # of H = 0.8
    assert r["backoff_out"] == pytest.approx(0.17)
    assert r["residual_share_h"] == pytest.approx(0.5)  # (0.8 - 0.4) / 0.8
    assert r["complexity_null"] == pytest.approx(0.04) and r["complexity_excess"] == pytest.approx(0.36)
    assert r["complexity_singleton_mass"] == 0.25 and r["expressivity_n_labels"] == 7
    assert r["seq_mi_genre"] == 0.02 and r["seq_mi_null_genre"] == pytest.approx(0.002)
    r1 = by[(2, 1)]
    assert r1["backoff_in"] == 0.20 and r1["backoff_in_share_top"] == pytest.approx(0.2 / 0.24)
    # back-off shares of the top order sum to one per layer
    for layer in MI:
        assert sum(by[(layer, n)]["backoff_in_share_top"] for n in (1, 2)) == pytest.approx(1.0)


def test_layer_means_exclude_embedding():
    means = [r for r in plane_table(records()) if r["layer"] == "mean"]
    assert len(means) == 2
    m1 = next(r for r in means if r["n"] == 1)
    assert m1["aggregate"] == "mean_excl_embedding" and m1["n_layers_averaged"] == 2
    assert m1["complexity"] == pytest.approx(0.25)  # (0.30 + 0.20) / 2; layer 0 (0.40) excluded
    assert m1["entropy"] == pytest.approx(0.7)
    assert m1["optimality"] == pytest.approx((0.15 / 0.30 + 0.18 / 0.20) / 2)  # mean of ratios
    assert m1["optimality_of_means"] == pytest.approx(0.165 / 0.25)  # ratio of means
    all_layers = layer_means(plane_table(records(), include_means=False), exclude_layers=())
    assert all_layers[0]["complexity"] == pytest.approx(0.30)  # (0.40 + 0.30 + 0.20) / 3


def test_groups_by_model_and_step():
    rows = plane_table(records("a", 10) + records("a", 20) + records("b", None))
    keys = {(r["model"], r["step"]) for r in rows}
    assert keys == {("a", 10), ("a", 20), ("b", None)}
    assert len(rows) == 3 * (3 * 2 + 2)


def test_missing_pieces_and_errors():
    only_input = [r for r in records() if r["label_set"].startswith("input")]
    r = plane_table(only_input)[0]
    assert r["expressivity"] is None and r["optimality"] is None and r["distance"] is None
    zero = [dict(r, mi=0.0) for r in records()]
    assert plane_table(zero)[0]["optimality"] is None  # 0/0 is undefined, not 0 or inf
    with pytest.raises(ValueError, match="n-gram"):
        plane_table([r for r in records() if r["label_set"] == "genre"])
    with pytest.raises(ValueError, match="label_set"):
        plane_table([{"layer": 0, "entropy": 1.0}])
    assert label_set_kind("input_4") == ("input", 4) and label_set_kind("input_x") == ("sequence", None)
