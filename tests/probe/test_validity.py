"""Degenerate probes carry their own validity: NaN optimality, ``valid=False`` and a reason in the plane rows,
the saved CSV, ``to_frame("plane")`` and ``summary()`` (issue reproductions: 1-2 samples, a 3-token corpus,
all-singleton labels at ``orders=(9,)``)."""

from __future__ import annotations

import math

import pytest
from _probe_helpers import TEXTS, CharTokenizer

from infoplane.io import read_csv
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig

IDS = [CharTokenizer().encode(t) for t in TEXTS]
DISTINCT = [list(range(21 * k, 21 * (k + 1))) for k in range(6)]  # 126 distinct ids: every n-gram unique


def _means(res):
    return [p for p in res.plane if p["layer"] == "mean"]


@pytest.mark.parametrize("corpus, max_tokens, reason", [
    (IDS, 1, "complexity near zero"),  # one sample: both MI are round-off
    (IDS, 2, "complexity not above its permutation null"),  # two samples: both MI equal their null
    ([IDS[0][:3]], None, "complexity not above its permutation null"),  # a corpus of 3 tokens
])
def test_tiny_samples_give_nan_optimality_and_a_reason(tiny_llama, tmp_path, corpus, max_tokens, reason):
    res = analyze(tiny_llama, corpus, ProbeConfig(orders=(1,), max_tokens=max_tokens, seq_len=16),
                  progress=False, out=tmp_path)
    assert res.metadata["n_samples"] <= 2
    for p in res.plane:
        assert math.isnan(p["optimality"]) and p["valid"] is False and reason in p["invalid_reason"]
    mean = _means(res)[0]
    assert math.isnan(mean["optimality_of_means"])
    assert mean["invalid_reason"].startswith("3 of 3 layers invalid")
    text = res.summary()
    assert "1.0000" not in text and "   nan  " in text
    assert "warning: n=1 invalid: 3 of 3 layers invalid" in text
    frame = res.to_frame("plane")
    opt = frame[frame.quantity == "optimality"]
    assert opt["value"].isna().all() and not opt["valid"].any() and opt["invalid_reason"].str.len().min() > 0
    saved = read_csv(tmp_path / "probe_plane.csv")
    assert all(r["valid"] == "False" and reason in r["invalid_reason"] and math.isnan(r["optimality"])
               for r in saved if r["layer"] != "mean")


@pytest.mark.parametrize("null", [True, False])
def test_all_singleton_labels_at_order_9(tiny_llama, null):
    res = analyze(tiny_llama, DISTINCT, ProbeConfig(orders=(9,), max_tokens=None, seq_len=21, null=null),
                  progress=False)
    assert res.metadata["n_samples"] == 6 * 4  # positions 8..11 of a text: a 9-gram ending there, 9 after
    for p in res.plane:
        assert p["complexity_singleton_mass"] == 1.0
        assert math.isnan(p["optimality"]) and p["valid"] is False
        if p["layer"] != "mean":
            assert "too few samples per complexity label (100% of samples have a label seen once" \
                in p["invalid_reason"]
    assert "warning: n=9 invalid" in res.summary()


def test_an_ordinary_probe_is_valid(tiny_llama):
    res = analyze(tiny_llama, IDS, ProbeConfig(orders=(1, 2), max_tokens=300, seq_len=64), progress=False)
    assert all(p["valid"] is True and p["invalid_reason"] == "" for p in res.plane)
    assert all(0 < p["optimality"] < 2 for p in res.plane)
    assert "warning" not in res.summary() and res.summary().count(" yes") == 2
