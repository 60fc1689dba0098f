"""plane_table: known answers for complexity, expressivity, optimality, distance, back-off and means."""

from __future__ import annotations

import math

import pytest

from infoplane.io import atomic_write_csv, read_csv
from infoplane.plane import (
    MAX_SINGLETON_MASS,
    PLANE_COLUMNS,
    ROUNDOFF_TOL,
    label_set_kind,
    layer_means,
    plane_table,
    row_validity,
)

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
    z = plane_table(zero)[0]
    assert math.isnan(z["optimality"]) and not z["valid"]  # 0/0 is undefined: NaN, not 0, 1 or inf
    assert "complexity near zero" in z["invalid_reason"]
    with pytest.raises(ValueError, match="n-gram"):
        plane_table([r for r in records() if r["label_set"] == "genre"])
    with pytest.raises(ValueError, match="label_set"):
        plane_table([{"layer": 0, "entropy": 1.0}])
    assert label_set_kind("input_4") == ("input", 4) and label_set_kind("input_x") == ("sequence", None)


def test_valid_rows_carry_empty_reasons_and_the_flag_columns_come_last():
    rows = plane_table(records())
    assert all(r["valid"] is True and r["invalid_reason"] == "" for r in rows)
    assert PLANE_COLUMNS[-2:] == ["valid", "invalid_reason"]
    assert all(r["n_layers_invalid"] == 0 for r in rows if r["layer"] == "mean")


def _degenerate(mi_of, null_of=None, smass=0.0, n_labels=7):
    """Records whose MI per (layer, label set) is ``mi_of(layer, name)`` (null: ``null_of`` or a tenth)."""
    out = []
    for layer, (h, sets) in MI.items():
        for name in sets:
            mi = mi_of(layer, name)
            null = null_of(layer, name) if null_of else mi / 10
            out.append({"model": "m", "step": None, "layer": layer, "label_set": name, "entropy": h, "mi": mi,
                        "mi_null": null, "capacity": 0.55, "n_labels": n_labels, "singleton_mass": smass})
    return out


def test_mi_equal_to_its_null_gives_nan_optimality_with_the_reason():
    # 1-2 samples / a 3-token corpus: complexity and expressivity both equal their permutation null
    rows = plane_table(_degenerate(lambda layer, name: 0.15, lambda layer, name: 0.15))
    for r in rows:
        assert math.isnan(r["optimality"]) and r["valid"] is False
        assert "complexity not above its permutation null" in r["invalid_reason"]
        assert "expressivity not above its permutation null" in r["invalid_reason"]
        assert r["complexity"] == 0.15 and r["distance"] == 0.0  # measured values are kept
    mean = next(r for r in rows if r["layer"] == "mean" and r["n"] == 1)
    assert math.isnan(mean["optimality_of_means"]) and mean["n_layers_invalid"] == 2
    assert mean["invalid_reason"].startswith("2 of 2 layers invalid (layers 1, 2: complexity not above")


def test_round_off_mi_gives_nan_optimality():
    # one sample: both MI are float round-off of either sign; the old ratio was 1.0
    rows = plane_table(_degenerate(lambda layer, name: -1.1e-8 if layer == 1 else 2e-9,
                                   lambda layer, name: -1.1e-8 if layer == 1 else 2e-9))
    assert all(math.isnan(r["optimality"]) for r in rows)
    assert all("complexity near zero" in r["invalid_reason"] for r in rows)


def test_all_singleton_labels_without_a_null_are_flagged():
    # --orders 9 on a small corpus: every label seen once, so both MI equal the capacity (ratio 1 by
    # construction); no null computed, the singleton mass alone must catch it
    recs = [dict(r, mi_null=None, mi=0.55) for r in _degenerate(lambda layer, name: 0.55, smass=1.0)]
    rows = plane_table(recs)
    assert all(math.isnan(r["optimality"]) and not r["valid"] for r in rows)
    assert "too few samples per complexity label (100% of samples have a label seen once, max 90%)" \
        in rows[0]["invalid_reason"]


def test_only_the_numerator_invalid_keeps_the_ratio_and_flags_it():
    recs = _degenerate(lambda layer, name: 0.3,
                       lambda layer, name: 0.3 if name.startswith("output") else 0.01)
    r = plane_table(recs, include_means=False)[0]
    assert r["optimality"] == 1.0 and r["valid"] is False
    assert r["invalid_reason"].startswith("expressivity not above its permutation null")


def test_thresholds_are_strict_at_their_boundaries():
    ok = {"complexity": 0.3, "complexity_null": 0.3 - 2 * ROUNDOFF_TOL, "expressivity": 0.2,
          "expressivity_null": 0.0, "complexity_singleton_mass": MAX_SINGLETON_MASS,
          "expressivity_singleton_mass": 0.0}
    assert row_validity(ok) == (True, "", True)
    assert row_validity({**ok, "complexity_null": 0.3 - ROUNDOFF_TOL / 2})[2] is False
    assert row_validity({**ok, "complexity_singleton_mass": MAX_SINGLETON_MASS + 1e-3})[2] is False
    assert row_validity({**ok, "expressivity": None, "expressivity_null": None}) == (True, "", True)


def test_mean_row_with_one_invalid_layer_is_flagged_and_its_optimality_is_nan():
    recs = _degenerate(lambda layer, name: 0.2 if layer == 2 else MI[layer][1][name],
                       lambda layer, name: 0.2 if layer == 2 else MI[layer][1][name] / 10)
    rows = plane_table(recs)
    mean = next(r for r in rows if r["layer"] == "mean" and r["n"] == 1)
    assert mean["valid"] is False and math.isnan(mean["optimality"]) and mean["n_layers_invalid"] == 1
    assert mean["invalid_reason"].startswith("1 of 2 layers invalid (layers 2: complexity not above")
    assert mean["complexity"] == pytest.approx((0.30 + 0.2) / 2)  # the means themselves are unchanged


def test_flags_survive_a_csv_round_trip(tmp_path):
    rows = plane_table(_degenerate(lambda layer, name: 0.15, lambda layer, name: 0.15))
    atomic_write_csv(tmp_path / "p.csv", rows)
    back = read_csv(tmp_path / "p.csv")
    assert {r["valid"] for r in back} == {"False"} and all(r["invalid_reason"] for r in back)
    assert all(math.isnan(r["optimality"]) for r in back)
    means = layer_means([r for r in back if r["layer"] != "mean"])
    assert means[0]["valid"] is False and means[0]["n_layers_invalid"] == 2
