"""SoftEntropyResult: compact repr, long-format to_frame(), summary()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoplane.estimators import SoftEntropyAccumulator, SoftEntropyResult

SETS = ["input_1", "input_2", "input_3", "output_1", "output_2", "output_3"]


def _result(n_layers=31, null=True, sets=SETS, reference_points=None) -> SoftEntropyResult:
    r = np.random.default_rng(0)
    n, d = 120, 6
    z = torch.from_numpy(r.standard_normal((n_layers, n, d)))
    labels = {k: r.integers(0, 5 + i, n) for i, k in enumerate(sets)}
    acc = SoftEntropyAccumulator(d, n_bins=10, n_layers=n_layers, null=null, seed=4,
                                 reference_points=reference_points)
    acc.update(z, labels or None)
    return acc.compute()


def test_repr_is_a_compact_table_that_fits_one_screen():
    res = _result()
    text = repr(res)
    lines = text.splitlines()
    assert len(lines) <= 40 and max(len(x) for x in lines) <= 120
    assert lines[0].startswith("SoftEntropyResult(layers=31, n_samples=120, m=10")
    assert all(s in lines[2] for s in SETS)
    row7 = next(x for x in lines if x.split() and x.split()[0] == "7")
    cells = [float(c) for c in row7.split()[1:]]
    assert cells[0] == pytest.approx(res.entropy[7], abs=5e-5)
    assert cells[1] == pytest.approx(res.capacity[7], abs=5e-5)
    assert cells[2:] == pytest.approx([res.mi[s][7] for s in SETS], abs=5e-5)
    assert "array(" not in text


def test_repr_elides_middle_layers_and_extra_label_sets():
    res = _result(n_layers=40, null=False, sets=[f"s{i}" for i in range(10)])
    lines = repr(res).splitlines()
    assert len(lines) <= 40 and any(x.strip() == "..." for x in lines)
    assert "2 more in to_frame()" in lines[1]
    assert lines[-1].split()[0] == "39"


def test_to_frame_long_format():
    res = _result(n_layers=3)
    df = res.to_frame(model="gpt2", step=100)
    cols = ["model", "step", "layer", "label_set", "quantity", "value", "n_samples", "seed"]
    assert list(df.columns) == cols
    assert set(df["model"]) == {"gpt2"} and set(df["step"]) == {100} and set(df["seed"]) == {4}
    per_layer = 3 + len(SETS) * 6  # entropy, mean_sample_entropy, capacity + 6 quantities per label set
    assert len(df) == 3 * per_layer
    mi = df[(df.quantity == "mi") & (df.label_set == "output_2")].sort_values("layer")["value"].to_numpy()
    np.testing.assert_array_equal(mi, res.mi["output_2"])
    h = df[(df.quantity == "entropy")]
    assert set(h["label_set"]) == {""} and list(h["value"]) == list(res.entropy)
    assert set(df["n_samples"]) == {120}
    default = _result(n_layers=2, null=False).to_frame()
    assert default["model"].isna().all() and default["step"].isna().all()
    assert "mi_null" not in set(default["quantity"])
    assert _result(n_layers=2).to_frame(seed=9)["seed"].eq(9).all()


def test_to_frame_without_labels_and_custom_reference_points():
    w = torch.eye(6, dtype=torch.float64)[:4]
    res = _result(n_layers=2, null=False, sets=[], reference_points=w)
    df = res.to_frame()
    assert sorted(set(df.quantity)) == ["capacity", "entropy", "mean_sample_entropy"]
    assert df["seed"].isna().all()  # user-supplied reference points: no seed


def test_summary_is_short_and_names_every_label_set():
    res = _result()
    text = res.summary()
    lines = text.splitlines()
    assert len(lines) <= 3 + len(SETS)
    for s in SETS:
        line = next(x for x in lines if x.strip().startswith(s))
        assert str(int(np.argmax(res.mi[s]))) in line.split()
        assert f"{np.mean(res.mi_null[s]):.4f}" in line
    assert "entropy H" in lines[1]
