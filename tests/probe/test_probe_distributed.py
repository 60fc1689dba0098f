"""Sharded probing over 2 gloo processes equals the single-process result."""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp
from _probe_helpers import TEXTS, CharTokenizer, distributed_worker, make_tiny_llama

from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.distributed import analyze_distributed, shard_indices

CFG = ProbeConfig(orders=(1, 2), max_tokens=300, seq_len=48, batch_size=2, seed=0, null=True)


def test_shard_indices_partition():
    shards = [shard_indices(7, r, 3) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))
    assert shards[0] == [0, 3, 6]
    with pytest.raises(ValueError, match="rank"):
        shard_indices(7, 3, 3)


def test_requires_initialised_process_group():
    with pytest.raises(ValueError, match="not initialised"):
        analyze_distributed(make_tiny_llama(), [[1, 2, 3, 4, 5]])


def test_two_gloo_processes_equal_single_process(tmp_path):
    mp.spawn(distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path), CFG.to_dict()), nprocs=2,
             join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["metadata"]["shard"] for r in ranks] == [[0, 2], [1, 2]]
    ids = [CharTokenizer().encode(t) for t in TEXTS]
    single = analyze(make_tiny_llama(), ids, CFG, progress=False)
    want = {(r["layer"], r["label_set"]): r for r in single.rows}
    for rank in ranks:
        assert rank["metadata"]["n_samples"] == single.metadata["n_samples"] == 300
        assert len(rank["rows"]) == len(single.rows)
        for r in rank["rows"]:
            w = want[(r["layer"], r["label_set"])]
            assert r["n_samples"] == w["n_samples"] and r["n_labels"] == w["n_labels"]
            for col in ("entropy", "mi", "mi_null", "capacity", "conditional_entropy", "singleton_mass"):
                assert r[col] == pytest.approx(w[col], abs=1e-12), col


# 250 tokens -> 3 batches of 2 texts: rank 1 has no batch in the last round (an empty collective update)
SEQ = {"text_id": [i % 3 for i in range(len(TEXTS))]}  # a per-text label: its null permutes across texts
SHARD_CFGS = {
    "one_pass": CFG.replace(max_tokens=250),
    "passes": CFG.replace(max_tokens=250),  # with a budget of 2 hidden states: several passes
}


def _sharded_rows_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ids = [CharTokenizer().encode(t) for t in TEXTS]
        out = {}
        for key, cfg in SHARD_CFGS.items():
            if key == "passes":
                cfg = cfg.replace(memory_budget=_two_layer_budget())
            res = analyze_distributed(make_tiny_llama(), ids, cfg, sequence_values=SEQ, progress=False,
                                      shard_rows=True)
            out[key] = {"rows": res.rows, "metadata": {k: res.metadata[k] for k in (
                "n_samples", "shard", "shard_rows", "label_rows_local", "memory_plan")}}
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump(out, fh)
    finally:
        dist.destroy_process_group()


def _two_layer_budget() -> int:
    """A budget that holds the sharded state of 2 of the 4 hidden states, not all 4 (from the same plan)."""
    from infoplane.estimators.memory import state_bytes, workspace_bytes
    from infoplane.probe.analyze import prepare
    from infoplane.probe.memory import batch_positions, label_row_counts

    ids = [CharTokenizer().encode(t) for t in TEXTS]
    plan = prepare(make_tiny_llama(), ids, SHARD_CFGS["one_pass"], sequence_values=SEQ).plan
    rows = label_row_counts(plan)  # the single-process rows: at least any rank's share
    n = batch_positions(plan) * 3  # this rank's batch and both ranks' gathered assignments (2 ranks)
    return state_bytes(rows, 2, 100, True) + workspace_bytes(2, 100, n, "cpu", True, 16)


def test_sharded_rows_two_gloo_processes_equal_single_process(tmp_path):
    mp.spawn(_sharded_rows_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    ids = [CharTokenizer().encode(t) for t in TEXTS]
    for key, cfg in SHARD_CFGS.items():
        single = analyze(make_tiny_llama(), ids, cfg.replace(memory_budget=None), sequence_values=SEQ,
                         progress=False)
        want = {(r["layer"], r["label_set"]): r for r in single.rows}
        assert {r["label_set"] for r in single.rows} >= {"input_1", "output_2", "text_id"}
        for rank in got:
            part = rank[key]
            assert part["metadata"]["shard_rows"] is True
            assert part["metadata"]["n_samples"] == single.metadata["n_samples"]
            assert len(part["rows"]) == len(single.rows)
            for r in part["rows"]:
                w = want[(r["layer"], r["label_set"])]
                assert r["n_samples"] == w["n_samples"] and r["n_labels"] == w["n_labels"]
                for col in ("entropy", "mi", "mi_null", "capacity", "conditional_entropy", "singleton_mass"):
                    assert r[col] == pytest.approx(w[col], abs=1e-12), (key, col, r["layer"], r["label_set"])
        # the label rows are divided between the ranks, not replicated
        total = single.metadata["memory_plan"]["label_rows"]
        for name, k in total.items():
            shares = [rank[key]["metadata"]["label_rows_local"][name] for rank in got]
            assert sum(shares) == k and (k < 2 or max(shares) < k), (key, name, shares, k)
    assert got[0]["one_pass"]["metadata"]["memory_plan"]["n_passes"] == 1
    assert got[0]["passes"]["metadata"]["memory_plan"]["n_passes"] > 1
