"""The data of a training run: a text corpus (tokenized in memory) or token shards (memory-mapped).

:func:`setup_data` returns a :class:`RunData` with the tokenizer, the vocabulary size, the training sampler
(``next_batch() -> (x, y)`` [B or B / world, T]), the fixed validation batches and the data fingerprint a
checkpoint records. Text corpora use :func:`~infoplane.data.lm_data.prepare_lm_data` and
:class:`~infoplane.data.lm_data.BatchSampler` (the global batch; the trainer keeps its rank's rows); token
shards (``corpus = "shards:PATTERN"``) use :class:`~infoplane.data.shards.ShardSampler`, which reads only
this rank's windows, and the vocabulary is ``model.vocab_size`` (ids are checked batch by batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infoplane.data.lm_data import (
    BatchSampler,
    TokenSplits,
    open_shard_splits,
    prepare_lm_data,
    shard_pattern,
    val_batches,
)
from infoplane.data.shards import ShardSampler, shard_val_batches
from infoplane.data.tokenizer import load_tokenizer, resolve_tokenizer
from infoplane.train import preflight

__all__ = ["RunData", "setup_data"]


@dataclass
class RunData:
    """tokenizer (or None), vocab_size V, splits (TokenSplits or ShardSplits), sampler, val batches
    [(x [b, T], y [b, T])] on CPU, data fingerprint."""

    tokenizer: Any
    vocab_size: int
    splits: Any
    sampler: BatchSampler | ShardSampler
    val: list[tuple[torch.Tensor, torch.Tensor]]
    fingerprint: dict[str, Any]


def _tokenizer_vocab(tokenizer: Any) -> int | None:
    return int(tokenizer.get_vocab_size()) if tokenizer is not None and hasattr(tokenizer, "get_vocab_size") \
        else None


def setup_data(cfg: Any, *, resume_from: Path | None = None, splits: TokenSplits | None = None,
               tokenizer: Any = None, vocab_size: int | None = None, rank: int = 0, world: int = 1,
               prepare: Callable[..., tuple[Any, TokenSplits]] = prepare_lm_data) -> RunData:
    """Build the run's data from ``cfg`` (a TrainConfig) or the given ``splits`` / ``tokenizer``; on resume
    the checkpoint's saved tokenizer is reused (a BPE is not retrained). ``prepare``: the text-corpus
    pipeline (:func:`~infoplane.data.lm_data.prepare_lm_data`; the trainer passes its own reference, so
    tests can check that no expensive work starts before validation)."""
    saved_tok = resume_from / "tokenizer.json" if resume_from is not None else None
    if splits is None and shard_pattern(cfg.corpus) is not None:
        shards = open_shard_splits(cfg.corpus, cfg.val_corpus)
        if tokenizer is None and cfg.tokenizer != "none":
            tokenizer = load_tokenizer(saved_tok) if saved_tok is not None and saved_tok.is_file() \
                else resolve_tokenizer(cfg.tokenizer)
        vocab = int(vocab_size or cfg.model.vocab_size)
        tok_vocab = _tokenizer_vocab(tokenizer)
        if tok_vocab is not None and tok_vocab > vocab:
            raise ValueError(f"the tokenizer has {tok_vocab} ids but model.vocab_size is {vocab}: set "
                             f"model.vocab_size >= {tok_vocab} (GPT-2: 50304, padded)")
        preflight.check_memory(cfg, vocab, world)
        sampler = ShardSampler(shards.train, cfg.batch_size, cfg.block_size, seed=cfg.seed, rank=rank,
                               world_size=world, vocab_size=vocab)
        val = shard_val_batches(shards.val, cfg.batch_size, cfg.block_size, cfg.eval_batches)
        for xb, yb in val:
            preflight.check_token_range(xb.reshape(-1), yb.reshape(-1), vocab)
        return RunData(tokenizer, vocab, shards, sampler, val, preflight.data_fingerprint(shards, tokenizer))

    if splits is None:
        tok_spec: Any = cfg.tokenizer
        if saved_tok is not None and saved_tok.is_file():
            tok_spec = load_tokenizer(saved_tok)
        tokenizer, splits = prepare(cfg.corpus, tok_spec, cfg.val_fraction, cfg.seed)
    if vocab_size is None:
        vocab_size = _tokenizer_vocab(tokenizer)
        if vocab_size is None:
            raise ValueError("vocab_size is required when the tokenizer has no get_vocab_size()")
    preflight.check_memory(cfg, vocab_size, world)
    preflight.check_token_range(splits.train, splits.val, vocab_size)
    fingerprint = preflight.data_fingerprint(splits, tokenizer)
    sampler = BatchSampler(splits.train, cfg.batch_size, cfg.block_size, seed=cfg.seed)
    val = val_batches(splits.val, cfg.batch_size, cfg.block_size, cfg.eval_batches)
    return RunData(tokenizer, int(vocab_size), splits, sampler, val, fingerprint)
