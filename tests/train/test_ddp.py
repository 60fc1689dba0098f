"""DDP (gloo, CPU): two processes with disjoint shards of each global batch == one process, including a
non-finite loss on one rank only (all ranks skip that step)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _cfg import flat_config  # noqa: E402
from safetensors.torch import load_file, save_file

from infoplane.data.corpus import embedded_corpus
from infoplane.data.lm_data import prepare_lm_data
from infoplane.train.config import TrainConfig
from infoplane.train.trainer import Trainer, read_log

NAN_STEP = 3
CTRL = {"rule": "relative", "patience_mem": 2, "patience_comp": 2, "tau_ce": 0.3, "tau_mbe": 0.3}


def _cfg(out) -> TrainConfig:
    return flat_config(n_layer=3, n_head=2, d_model=32, block_size=32, steps=5, batch_size=4, warmup_steps=1,
                       eval_every=0, eval_batches=2, checkpoint_steps="final", objective="gapt",
                       controller=CTRL, progress=False, out_dir=str(out), num_threads=1)


def _data():
    return prepare_lm_data(embedded_corpus("kjv").texts[:300], "byte", val_fraction=0.1, seed=0)


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        tok, splits = _data()
        tr = Trainer(_cfg(f"{tmp}/ddp"), splits=splits, tokenizer=tok)
        assert tr.distributed and tr.world == world and tr.rank == rank
        # a non-finite loss on rank 1 only at step 3: every rank must skip that step together
        tr.model.lm_head.register_forward_hook(
            lambda m, i, o: o * float("nan") if (rank == 1 and tr.step + 1 == NAN_STEP) else None)
        tr.run()
        state = {k: v.contiguous() for k, v in tr.model.state_dict().items() if k != "lm_head.weight"}
        save_file(state, f"{tmp}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_equal_single_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    torch.set_num_threads(1)
    tok, splits = _data()
    single = Trainer(_cfg(tmp_path / "single"), splits=splits, tokenizer=tok)
    assert not single.distributed
    single.model.lm_head.register_forward_hook(
        lambda m, i, o: o * float("nan") if single.step + 1 == NAN_STEP else None)
    single.run()
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for k, v in single.model.state_dict().items():
        if k == "lm_head.weight":
            continue
        assert torch.equal(r0[k], r1[k]), k  # ranks stay in sync
        assert torch.allclose(r0[k], v, atol=1e-5, rtol=0), k
    a, b = read_log(tmp_path / "single" / "log.jsonl"), read_log(tmp_path / "ddp" / "log.jsonl")
    assert [r["phase"] for r in a] == [r["phase"] for r in b]
    assert [r["skipped"] for r in a] == [r["skipped"] for r in b] == [s == NAN_STEP for s in range(1, 6)]
    for ra, rb in zip(a, b):
        assert ra["tokens"] == rb["tokens"]
        if not ra["skipped"]:
            assert abs(ra["ce"] - rb["ce"]) < 1e-5
