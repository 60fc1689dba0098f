"""Memory plan: exact state bytes; passes over layer groups equal one pass; refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _probe_helpers import TEXTS

from infoplane.estimators import SoftEntropyAccumulator
from infoplane.estimators.memory import plan_passes, state_bytes, workspace_bytes
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig, parse_bytes
from infoplane.probe.memory import batch_positions, label_row_counts, plan_memory
from infoplane.probe.plan import prepare_plan

CFG = ProbeConfig(orders=(1, 2), max_tokens=240, seq_len=48, batch_size=3, seed=1)
COLS = ("entropy", "mi", "mi_null", "conditional_entropy", "regularity", "capacity", "n_labels",
        "singleton_mass", "n_samples")


def _budget_for(plan, n_layers: int, dim: int, layers_per_pass: int) -> int:
    """The bytes of a pass of ``layers_per_pass`` layers (so the planner must use that group size)."""
    counts = label_row_counts(plan)
    return (state_bytes(counts, layers_per_pass, plan.config.n_bins, plan.config.null)
            + workspace_bytes(layers_per_pass, plan.config.n_bins, batch_positions(plan)))


def test_state_bytes_is_exact_with_reserved_rows():
    rng = np.random.default_rng(0)
    z = torch.randn(3, 500, 8)
    labels = {"a": rng.integers(0, 40, 500),
              "b": np.where(rng.random(500) < 0.3, -1, rng.integers(0, 90, 500))}
    counts = {k: int(len(np.unique(v[v >= 0]))) for k, v in labels.items()}
    for null in (False, True):
        acc = SoftEntropyAccumulator(8, n_bins=10, n_layers=3, null=null)
        acc.reserve_rows(counts)
        acc.update(z, labels)
        assert acc.state_nbytes(reserved=True) == state_bytes(counts, 3, 10, null)


def test_several_passes_equal_one_pass(tiny_llama, char_tok):
    plan = prepare_plan(TEXTS, CFG, tokenizer=char_tok)
    budget = _budget_for(plan, 4, 16, 1)  # room for one of the 4 hidden states at a time
    mplan = plan_memory(plan, 4, 16, budget=budget)
    assert mplan.n_passes == 4 and mplan.groups == ((0,), (1,), (2,), (3,))
    one = analyze(tiny_llama, TEXTS, CFG, tokenizer=char_tok, progress=False)
    split = analyze(tiny_llama, TEXTS, CFG.replace(memory_budget=budget), tokenizer=char_tok, progress=False)
    assert one.metadata["memory_plan"]["n_passes"] == 1
    assert split.metadata["memory_plan"]["n_passes"] == 4
    assert len(one.rows) == len(split.rows) == 16
    for a, b in zip(one.rows, split.rows):
        assert (a["layer"], a["label_set"]) == (b["layer"], b["label_set"])
        for c in COLS:
            assert a[c] == pytest.approx(b[c], rel=1e-12, abs=1e-12), (a["layer"], a["label_set"], c)
    # two layers per pass -> 2 passes
    two = plan_memory(plan, 4, 16, budget=_budget_for(plan, 4, 16, 2))
    assert two.groups == ((0, 1), (2, 3))


def test_too_small_budget_is_refused_before_running(tiny_llama, char_tok):
    plan = prepare_plan(TEXTS, CFG, tokenizer=char_tok)
    tiny = _budget_for(plan, 4, 16, 1) - 1
    with pytest.raises(ValueError, match="does not fit the memory budget .* even with one layer per pass"):
        analyze(tiny_llama, TEXTS, CFG.replace(memory_budget=tiny), tokenizer=char_tok, progress=False)
    with pytest.raises(ValueError, match="positive number of bytes"):
        plan_passes({"a": 3}, 2, 10, False, 10, 0)


def test_memory_budget_parsing():
    assert ProbeConfig(memory_budget="2GiB").memory_budget == 2 << 30
    assert parse_bytes("500MB") == 500_000_000 and parse_bytes(1024) == 1024
    for bad in ("lots", 0, -5, "0GB", True, 1.5):
        with pytest.raises(ValueError, match="memory_budget"):
            ProbeConfig(memory_budget=bad)
