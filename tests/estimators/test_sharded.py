"""Label rows sharded over 2 gloo processes give the single-process result (to 1e-12), each rank a share."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.multiprocessing as mp

from infoplane.estimators import SoftEntropyAccumulator

L, D, M, N_BATCH = 3, 8, 12, 4


def _batches() -> list[tuple[torch.Tensor, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    centres = torch.from_numpy(rng.normal(size=(L, 60, D)))  # one direction per token and layer
    out = []
    for b in range(N_BATCH):
        n = 150 + 10 * b
        toks = rng.zipf(1.5, n) % 60
        z = torch.from_numpy(rng.normal(size=(L, n, D))) + 2 * centres[:, toks]
        a = toks.astype(np.int64)
        bigram = a * 100 + np.roll(a, 1)
        single = np.where(rng.random(n) < 0.2, -1, bigram)  # some singletons
        out.append((z, {"uni": a, "bi": single}))
    return out


def _summary(res) -> dict:
    out = {"entropy": res.entropy.tolist(), "n_labels": res.n_labels, "smass": res.singleton_mass}
    for k in res.label_sets:
        out[f"mi_{k}"] = res.mi[k].tolist()
        out[f"null_{k}"] = res.mi_null[k].tolist()
        out[f"cond_{k}"] = res.conditional_entropy[k].tolist()
    return out


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from infoplane.estimators.sharded import ShardedRowsAccumulator

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        acc = ShardedRowsAccumulator(D, n_bins=M, n_layers=L, null=True, null_seed=3)
        for i, (z, labels) in enumerate(_batches()):
            if i % world == rank:  # round robin, as analyze_distributed shards batches
                acc.update(z, labels)
        rows = {k: acc.local._labels.sets[k].n_rows - 1 for k in acc.local._labels.sets}
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump({"result": _summary(acc.compute()), "rows": rows}, fh)
    finally:
        dist.destroy_process_group()


def test_sharded_rows_equal_single_process(tmp_path):
    single = SoftEntropyAccumulator(D, n_bins=M, n_layers=L, null=True, null_seed=3)
    for z, labels in _batches():
        single.update(z, labels)
    want = _summary(single.compute())
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for g in got:
        for key, value in want.items():
            if isinstance(value, dict):
                assert g["result"][key] == value or all(
                    abs(g["result"][key][k] - v) <= 1e-12 for k, v in value.items()), key
            else:
                np.testing.assert_allclose(g["result"][key], value, rtol=0, atol=1e-12, err_msg=key)
    # the rows are split, not copied: each label row lives on exactly one rank
    for name, s in single._labels.sets.items():
        assert got[0]["rows"][name] + got[1]["rows"][name] == s.n_rows - 1
        assert 0 < got[0]["rows"][name] < s.n_rows - 1
