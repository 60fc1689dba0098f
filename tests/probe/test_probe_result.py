"""ProbeResult: long-format to_frame(), a repr that fits one screen for 31 layers, summary()."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _probe_helpers import TEXTS

from infoplane.plane import plane_table
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.result import FRAME_COLUMNS, PLANE_FRAME_COLUMNS, ProbeResult

SETS = ["input_1", "output_1", "input_2", "output_2", "input_3", "output_3", "book"]


def _synthetic(n_layers: int = 31) -> ProbeResult:
    rng = np.random.default_rng(0)
    rows = []
    for layer in range(n_layers):
        h = float(rng.uniform(0.5, 0.9))
        for name in SETS:
            kind, n = (name.split("_")[0], int(name.split("_")[1])) if "_" in name else ("sequence", None)
            rows.append({"model": "m", "step": 7, "layer": layer, "label_set": name, "kind": kind, "n": n,
                         "entropy": h, "mi": float(rng.uniform(0, h / 2)), "mi_null": 0.01,
                         "singleton_mass": 0.1, "n_labels": 50, "capacity": h / 2,
                         "conditional_entropy": h / 2, "regularity": 0.2, "n_samples": 4096})
    md = {"model": "m", "step": 7, "n_samples": 4096, "n_hidden_states": n_layers, "hidden_dim": 576,
          "n_bins": 100, "seed": 5}
    return ProbeResult(rows, plane_table(rows), md)


def test_to_frame_is_long_format():
    res = _synthetic(31)
    df = res.to_frame()
    assert list(df.columns) == FRAME_COLUMNS
    quantities = {"entropy", "mi", "mi_null", "singleton_mass", "n_labels", "capacity", "conditional_entropy",
                  "regularity"}
    assert set(df["quantity"]) == quantities
    assert len(df) == len(res.rows) * len(quantities)
    assert set(df["seed"]) == {5} and set(df["n_samples"]) == {4096} and set(df["step"]) == {7}
    row = res.rows[40]
    got = df[(df.layer == row["layer"]) & (df.label_set == row["label_set"]) & (df.quantity == "mi")]
    assert got["value"].tolist() == [row["mi"]]  # exact, no rounding
    wide = df.pivot_table(index=["layer", "label_set"], columns="quantity", values="value")
    assert wide.shape == (31 * len(SETS), len(quantities))
    plane = res.to_frame("plane")
    assert list(plane.columns) == PLANE_FRAME_COLUMNS
    for p in res.plane:  # each quantity carries its plane row's flags
        got = plane[(plane.layer == p["layer"]) & (plane.label_set == f"input_{p['n']}/output_{p['n']}")]
        assert set(got["valid"]) == {p["valid"]} and set(got["invalid_reason"]) == {p["invalid_reason"]}
    assert {"complexity", "expressivity", "optimality"} <= set(plane["quantity"])
    assert set(plane["label_set"]) == {"input_1/output_1", "input_2/output_2", "input_3/output_3"}
    assert "mean" in set(plane["layer"])
    with pytest.raises(ValueError, match="'rows' or 'plane'"):
        res.to_frame("wide")


def test_repr_fits_one_screen_for_31_layers_and_summary():
    res = _synthetic(31)
    text = repr(res)
    lines = text.splitlines()
    assert len(lines) <= 40 and max(len(line) for line in lines) <= 100
    assert lines[0].startswith("ProbeResult(m, step 7: N=4096 x 31 hidden states")
    assert lines[1].split() == ["layer", "H(Z)", "I(X1;Z)", "I(Z;Y1)", "I(X2;Z)", "I(Z;Y2)", "I(X3;Z)",
                                "I(Z;Y3)", "I(book)"]
    first = res.rows[0]
    assert lines[2].split()[:3] == ["0", f"{first['entropy']:.4f}", f"{first['mi']:.4f}"]
    assert len(repr(_synthetic(100)).splitlines()) <= 40  # deeper models are elided, not dumped
    summary = res.summary()
    assert "layer mean (embedding excluded)" in summary and "optimality" in summary
    means = [p for p in res.plane if p["layer"] == "mean"]
    assert len(means) == 3 and f"{means[0]['complexity']:.4f}" in summary
    assert "sequence label 'book'" in summary


def test_result_of_analyze(tiny_llama, char_tok):
    res = analyze(tiny_llama, TEXTS, ProbeConfig(orders=(1,), max_tokens=100, seq_len=40, seed=2),
                  tokenizer=char_tok, progress=False)
    df = res.to_frame()
    mi = df[df.quantity == "mi"].sort_values(["label_set", "layer"])
    np.testing.assert_array_equal(mi[mi.label_set == "input_1"]["value"], res.layer_values("mi", "input_1"))
    assert set(df["n_samples"]) == {100} and set(df["seed"]) == {2}
    assert all(not isinstance(v, float) or math.isfinite(v) for v in df["value"])
    assert len(repr(res).splitlines()) == 2 + res.metadata["n_hidden_states"]
