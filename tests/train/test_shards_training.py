"""Training on token shards (corpus = "shards:PATTERN"): equal to training on the same stream in memory, exact
resume, DDP ranks reading their own rows, the GPT-2 124M recipe's config, and device / precision settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _cfg import flat_config  # noqa: E402

from infoplane.data.corpus import embedded_corpus
from infoplane.data.lm_data import prepare_lm_data
from infoplane.data.shards import ShardedTokens, write_shard
from infoplane.train.config import TrainConfig
from infoplane.train.model import GPT
from infoplane.train.preflight import resume_differences
from infoplane.train.trainer import Trainer, read_log

CTRL = {"rule": "relative", "patience_mem": 2, "patience_comp": 2, "tau_ce": 0.3, "tau_mbe": 0.3, "ema": 0.5}


pytestmark = pytest.mark.usefixtures("one_thread")


def _data():
    return prepare_lm_data(embedded_corpus("kjv").texts[:300], "byte", val_fraction=0.1, seed=0)


def _shards(tmp):
    """The byte-tokenized KJV streams as two training shards and one validation shard (written here)."""
    tok, splits = _data()
    half = len(splits.train) // 2
    write_shard(tmp / "kjv_train_000000.bin", splits.train[:half])
    write_shard(tmp / "kjv_train_000001.bin", splits.train[half:])
    write_shard(tmp / "kjv_val_000000.bin", splits.val)
    return tok, splits


def _cfg(out, shards_dir=None, vocab=None, **kw):
    data = {}
    if shards_dir is not None:
        data = {"corpus": f"shards:{shards_dir}/kjv_train_*.bin",
                "val_corpus": f"shards:{shards_dir}/kjv_val_*.bin", "tokenizer": "none"}
    base = dict(n_layer=3, n_head=2, d_model=32, block_size=32, steps=20, batch_size=4, warmup_steps=3,
                eval_every=5, eval_batches=2, checkpoint_steps=[8, 14], objective="gapt", mbe_layers="rotate",
                controller=CTRL, progress=False, out_dir=str(out), **data)
    base.update(kw)
    cfg = flat_config(**base)
    return cfg.replace(model={"vocab_size": vocab}) if vocab else cfg


def _same_logs(a, b):
    for ra, rb in zip(a, b, strict=True):
        ra, rb = dict(ra), dict(rb)
        ra.pop("time"), rb.pop("time")
        assert ra == rb


def test_shards_train_like_the_same_stream_in_memory(tmp_path):
    tok, splits = _shards(tmp_path)
    vocab = tok.get_vocab_size()
    mem = Trainer(_cfg(tmp_path / "mem"), splits=splits, tokenizer=tok).run()
    tr = Trainer(_cfg(tmp_path / "shard", shards_dir=tmp_path, vocab=vocab))
    assert isinstance(tr.splits.train, ShardedTokens) and len(tr.splits.train) == len(splits.train)
    assert all(not isinstance(s, torch.Tensor) and hasattr(s, "filename") for s in tr.splits.train.shards)
    res = tr.run()
    a, b = read_log(mem.log_path), read_log(res.log_path)
    assert len(b) == 20 and all(r["ce"] is not None for r in b) and "val_ce" in b[-1]
    assert {r["phase"] for r in b} == {"memorize", "compress"}
    _same_logs(a, b)  # same windows, same order, same held-out batches: bitwise the same run
    assert res.final_val_ce == mem.final_val_ce


class Stop(Exception):
    pass


def test_resume_on_shards_equals_uninterrupted(tmp_path):
    tok, _ = _shards(tmp_path)
    vocab = tok.get_vocab_size()
    full = Trainer(_cfg(tmp_path / "full", shards_dir=tmp_path, vocab=vocab)).run()

    def kill_at_11(trainer, rec):
        if trainer.step == 11:
            raise Stop

    with pytest.raises(Stop):
        Trainer(_cfg(tmp_path / "cut", shards_dir=tmp_path, vocab=vocab), callbacks=[kill_at_11]).run()
    resumed = Trainer(_cfg(tmp_path / "cut", shards_dir=tmp_path, vocab=vocab), resume=True)
    assert resumed.step == 8 and resumed.sampler.state_dict()["position"] == 8 * 4
    _same_logs(read_log(full.log_path), read_log(resumed.run().log_path))

    write_shard(tmp_path / "kjv_train_000001.bin", [1, 2, 3] * 500)  # the data changed: refused
    with pytest.raises(ValueError, match="data tokens_sha256"):
        Trainer(_cfg(tmp_path / "cut", shards_dir=tmp_path, vocab=vocab, steps=30), resume=True)


def _ddp_worker(rank: int, world: int, tmp: str, vocab: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        tr = Trainer(_cfg(f"{tmp}/ddp", shards_dir=tmp, vocab=vocab, steps=6, checkpoint_steps="final"))
        assert tr.sampler.rank == rank and tr.sampler.world_size == world  # reads only its rows
        tr.run()
    finally:
        dist.destroy_process_group()


def test_ddp_on_shards_equals_one_process(tmp_path):
    tok, _ = _shards(tmp_path)
    vocab = tok.get_vocab_size()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path), vocab), nprocs=2, join=True)
    single = Trainer(_cfg(tmp_path / "single", shards_dir=tmp_path, vocab=vocab, steps=6,
                          checkpoint_steps="final")).run()
    a, b = read_log(single.log_path), read_log(tmp_path / "ddp" / "log.jsonl")
    assert [r["phase"] for r in a] == [r["phase"] for r in b] and len(b) == 6
    for ra, rb in zip(a, b):
        assert ra["tokens"] == rb["tokens"] and abs(ra["ce"] - rb["ce"]) < 1e-5


def test_gpt2_124m_recipe_config():
    cfg = TrainConfig.from_file(Path(__file__).resolve().parents[2] / "configs" / "gpt2_124m_gapt.toml")
    m = cfg.model
    assert (m.n_layer, m.n_head, m.d_model, m.block_size, m.vocab_size) == (12, 12, 768, 1024, 50304)
    assert cfg.corpus.startswith("shards:") and cfg.val_corpus.startswith("shards:")
    assert (cfg.device, cfg.precision) == ("cuda", "bf16")
    assert (cfg.objective.kind, cfg.objective.layers) == ("gapt", "rotate")
    assert cfg.controller.rule == "windowed"
    assert cfg.batch_size * cfg.block_size == 524288 and cfg.batch_size % (8 * cfg.grad_accum) == 0
    with torch.device("meta"):
        n = sum(p.numel() for p in GPT(m).parameters())
    assert 124.0e6 < n < 124.6e6  # GPT-2 small, tied embeddings


def test_settings_errors_before_any_work(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="already tokenized"):
        TrainConfig(corpus="shards:x/*.bin", tokenizer="bpe:2048")
    with pytest.raises(ValueError, match="val_corpus.*needs a shard corpus"):
        TrainConfig(corpus="kjv", val_corpus="shards:x/*.bin")
    with pytest.raises(ValueError, match="'none' is only for token shards"):
        TrainConfig(corpus="kjv", tokenizer="none")
    with pytest.raises(ValueError, match="fp16.*needs device"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="device must be"):
        TrainConfig(device="gpu")
    with pytest.raises(FileNotFoundError, match="no token shard matches"):
        Trainer(_cfg(tmp_path / "a", shards_dir=tmp_path / "none", vocab=300))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        Trainer(_cfg(tmp_path / "b", device="cuda"))
    assert not (tmp_path / "b").exists()


def test_cli_device_cuda_without_cuda_is_one_line(tmp_path, monkeypatch, capsys):
    from infoplane.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(["train", "--device", "cuda", "--steps", "2", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--device" in err[0] and "CUDA is not available" in err[0]
    assert not (tmp_path / "o").exists()


def test_bf16_autocast_on_cpu_changes_only_rounding(tmp_path):
    tok, splits = _data()
    kw = dict(steps=3, eval_every=0, checkpoint_steps="final", objective="ce")
    fp32 = read_log(Trainer(_cfg(tmp_path / "f", **kw), splits=splits, tokenizer=tok).run().log_path)
    bf16 = read_log(Trainer(_cfg(tmp_path / "b", precision="bf16", **kw), splits=splits, tokenizer=tok)
                    .run().log_path)
    for a, b in zip(fp32, bf16):
        assert a["ce"] != b["ce"] and abs(a["ce"] - b["ce"]) < 0.05  # autocast was on; same run otherwise
    saved = json.loads((tmp_path / "b" / "config.json").read_text())["train"]
    assert saved["precision"] == "bf16" and saved["device"] == "cpu"


def test_runs_saved_before_device_and_precision_existed_still_resume():
    now = TrainConfig(tokenizer="byte").to_dict()
    old = {k: v for k, v in now.items() if k not in ("device", "precision", "val_corpus")}
    assert resume_differences(old, now) == []
    assert resume_differences(old, {**now, "precision": "bf16"}) == ["precision: saved None, now 'bf16'"]
