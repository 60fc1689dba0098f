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
