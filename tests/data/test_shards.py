"""Token shards in the modded-nanogpt format: header validation, memory-mapped reads across files, and a
sampler that is deterministic, resumable, rank-aware and equal to BatchSampler on the same stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoplane.data.lm_data import (
    BatchSampler,
    open_shard_splits,
    prepare_lm_data,
    shard_pattern,
    val_batches,
)
from infoplane.data.shards import (
    HEADER_BYTES,
    MAGIC,
    ShardedTokens,
    ShardFormatError,
    ShardSampler,
    open_shard,
    read_header,
    resolve_shards,
    shard_val_batches,
    write_corpus_shards,
    write_shard,
)
from infoplane.data.tokenizer import ByteTokenizer, eos_id


def _stream(n: int, seed: int = 0, vocab: int = 50257) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n).astype(np.int64)


def _three_shards(tmp_path, n=(700, 500, 900)):
    stream = _stream(sum(n))
    files, lo = [], 0
    for k, m in enumerate(n):
        files.append(write_shard(tmp_path / f"s_train_{k:06d}.bin", stream[lo:lo + m]))
        lo += m
    return stream, files


def test_file_layout_is_the_modded_nanogpt_format(tmp_path):
    toks = np.array([50256, 0, 1, 65535, 314], dtype=np.int64)
    p = write_shard(tmp_path / "a.bin", toks)
    raw = p.read_bytes()
    assert len(raw) == HEADER_BYTES + 2 * len(toks)
    header = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    assert (int(header[0]), int(header[1]), int(header[2])) == (20240520, 1, 5) and not header[3:].any()
    assert np.frombuffer(raw[HEADER_BYTES:], dtype="<u2").tolist() == toks.tolist()
    assert read_header(p) == 5
    mm = open_shard(p)
    assert isinstance(mm, np.memmap) and mm.dtype == np.dtype("<u2") and mm.tolist() == toks.tolist()


@pytest.mark.parametrize("damage, match", [
    (lambda raw: np.int32(1234).tobytes() + raw[4:], "magic number 1234, expected 20240520"),
    (lambda raw: raw[:4] + np.int32(2).tobytes() + raw[8:], "version 2, expected 1"),
    (lambda raw: raw[:-2], "header says 10 tokens.*truncated"),
    (lambda raw: raw + b"\0\0", "header says 10 tokens.*file has 1046 bytes"),
    (lambda raw: raw[:100], "expected at least the 1024-byte header"),
])
def test_bad_header_names_the_file(tmp_path, damage, match):
    p = write_shard(tmp_path / "bad.bin", np.arange(10))
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(ShardFormatError, match=match) as info:
        open_shard(p)
    assert "bad.bin" in str(info.value)


def test_missing_file_and_unmatched_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_header(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError, match="no token shard matches"):
        resolve_shards(str(tmp_path / "fineweb_train_*.bin"))


def test_write_shard_refuses_ids_outside_uint16(tmp_path):
    with pytest.raises(ValueError, match="0..65535"):
        write_shard(tmp_path / "x.bin", [1, 65536])
    with pytest.raises(ValueError, match="0..65535"):
        write_shard(tmp_path / "x.bin", [-1, 3])
    with pytest.raises(ValueError, match="integers"):
        write_shard(tmp_path / "x.bin", np.array([0.5]))
    assert not (tmp_path / "x.bin").exists()


def test_windows_cross_file_boundaries(tmp_path):
    stream, files = _three_shards(tmp_path)
    st = ShardedTokens(resolve_shards(str(tmp_path / "s_train_*.bin")))
    assert st.files == files and len(st) == len(stream)
    starts = np.array([0, 690, 695, 1199, 1200, 2000, len(stream) - 100])
    w = st.windows(starts, 100)
    assert w.dtype == np.int64
    for row, s in zip(w, starts):
        assert row.tolist() == stream[s:s + 100].tolist()
    assert st.locate(700) == (files[1], 0) and st.locate(1199) == (files[1], 499)
    with pytest.raises(IndexError):
        st.windows(np.array([len(stream) - 5]), 10)


def test_sampler_equals_batch_sampler_on_the_same_stream(tmp_path):
    stream, files = _three_shards(tmp_path)
    a = ShardSampler(ShardedTokens(files), batch_size=4, block_size=16, seed=3)
    b = BatchSampler(torch.from_numpy(stream), batch_size=4, block_size=16, seed=3)
    for _ in range(80):  # several epochs (131 windows per epoch -> 32 batches)
        (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.state_dict() == b.state_dict() and a.epoch >= 2


def test_sampler_is_seeded_and_resumes_exactly(tmp_path):
    _, files = _three_shards(tmp_path)
    make = lambda seed: ShardSampler(ShardedTokens(files), 4, 16, seed=seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    first = [a.next_batch()[0] for _ in range(5)]
    assert all(torch.equal(x, b.next_batch()[0]) for x in first)
    assert not torch.equal(first[0], c.next_batch()[0])
    for _ in range(40):
        a.next_batch()
    state = a.state_dict()
    resumed = make(0)
    resumed.load_state_dict(state)
    for _ in range(10):
        assert torch.equal(a.next_batch()[0], resumed.next_batch()[0])
    other = ShardSampler(ShardedTokens(files[:2]), 4, 16)
    with pytest.raises(ValueError, match="n_tokens"):
        other.load_state_dict(state)


def test_ranks_read_disjoint_rows_of_the_global_batch(tmp_path):
    _, files = _three_shards(tmp_path)
    glob_ = ShardSampler(ShardedTokens(files), 8, 16, seed=0)
    ranks = [ShardSampler(ShardedTokens(files), 8, 16, seed=0, rank=r, world_size=4) for r in range(4)]
    for _ in range(20):
        x, y = glob_.next_batch()
        parts = [s.next_batch() for s in ranks]
        assert all(p[0].shape == (2, 16) for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
    with pytest.raises(ValueError, match="divisible by world_size"):
        ShardSampler(ShardedTokens(files), 6, 16, rank=0, world_size=4)


def test_out_of_vocabulary_id_names_the_shard(tmp_path):
    write_shard(tmp_path / "a.bin", np.zeros(300, dtype=np.int64))
    write_shard(tmp_path / "b.bin", np.full(300, 60000, dtype=np.int64))
    s = ShardSampler(ShardedTokens([tmp_path / "a.bin", tmp_path / "b.bin"]), 4, 16, vocab_size=50304)
    with pytest.raises(ValueError, match=r"b\.bin.*id 60000.*50304"):
        for _ in range(20):
            s.next_batch()


def test_too_short_stream_is_refused(tmp_path):
    write_shard(tmp_path / "a.bin", np.arange(50))
    with pytest.raises(ValueError, match="too short for batches of 4 x 16"):
        ShardSampler(ShardedTokens([tmp_path / "a.bin"]), 4, 16)


def test_val_batches_read_only_the_head(tmp_path):
    stream, files = _three_shards(tmp_path)
    got = shard_val_batches(ShardedTokens(files), batch_size=3, block_size=16, max_batches=4)
    want = val_batches(torch.from_numpy(stream), 3, 16, 4)
    assert len(got) == len(want) == 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, want))
    assert shard_val_batches(None, 3, 16, 4) == []


def test_corpus_shards_from_a_tokenizer(tmp_path):
    tok = ByteTokenizer()
    texts = ["in the beginning", "and the earth", "was without form"]
    files = write_corpus_shards(tmp_path, texts, tok, prefix="kjv", val_docs=1, shard_tokens=20)
    names = [f.name for f in files]
    assert names[0] == "kjv_val_000000.bin" and names[1:] == ["kjv_train_000000.bin", "kjv_train_000001.bin"]
    sep = eos_id(tok)
    val = open_shard(files[0]).tolist()
    train = np.concatenate([open_shard(f) for f in files[1:]]).tolist()
    assert len(val) == 1 + len(texts[0].encode()) and val[1:] == list(tok.encode(texts[0]).ids)
    assert train[0] == val[0] == sep
    assert len(train) == 2 + sum(len(t.encode()) for t in texts[1:])


def test_corpus_spec(tmp_path):
    _, files = _three_shards(tmp_path)
    write_shard(tmp_path / "s_val_000000.bin", _stream(300, seed=9))
    assert shard_pattern("kjv") is None and shard_pattern("shards:a/*.bin") == "a/*.bin"
    with pytest.raises(ValueError, match="shards:PATTERN"):
        shard_pattern("shards:")
    sp = open_shard_splits(f"shards:{tmp_path}/s_train_*.bin", f"shards:{tmp_path}/s_val_*.bin")
    assert sp.train.files == files and len(sp.val) == 300
    assert all(isinstance(s, np.memmap) for s in sp.train.shards)  # mapped, not loaded
    assert sp.fingerprint["train"]["n_tokens"] == 2100 and sp.fingerprint["val"]["n_files"] == 1
    with pytest.raises(ValueError, match="overlap"):
        open_shard_splits(f"shards:{tmp_path}/s_*.bin", f"{tmp_path}/s_val_*.bin")
    with pytest.raises(ValueError, match="already tokenized"):
        prepare_lm_data(f"shards:{tmp_path}/s_train_*.bin", "byte")
    assert MAGIC == 20240520
