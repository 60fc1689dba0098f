"""Language-model data: corpus -> token stream -> held-out split -> resumable seeded batches.

- :func:`split_documents`: deterministic held-out *documents* (no window straddles train and val).
- :func:`prepare_lm_data`: corpus + tokenizer spec -> (tokenizer, :class:`TokenSplits`); a BPE tokenizer is
  trained on the training documents only.
- :class:`BatchSampler`: each epoch cuts the training stream into non-overlapping windows of T+1 tokens at a
  random offset and visits them in a random order; the randomness is a pure function of (seed, epoch), so the
  sampler's whole state is ``{epoch, position}`` (stored in checkpoints; resume is exact).
- :func:`val_batches`: a fixed list of validation batches (first windows of the held-out stream; defined in
  :mod:`infoplane.data.windows`, shared with the token shards, and re-exported here).
- Token shards: a corpus spec ``"shards:PATTERN"`` (e.g. ``"shards:data/fineweb10B/fineweb_train_*.bin"``)
  names pre-tokenized modded-nanogpt shards; :func:`shard_pattern` recognises it and :func:`open_shard_splits`
  maps the training and validation shards (:mod:`infoplane.data.shards`) without loading them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from infoplane.data.corpus import Corpus, load_corpus
from infoplane.data.shards import ShardedTokens, resolve_shards, shards_fingerprint
from infoplane.data.tokenizer import encode_texts, eos_id, resolve_tokenizer
from infoplane.data.windows import WindowSampler, val_batches

__all__ = ["TokenSplits", "split_documents", "tokens_from_texts", "prepare_lm_data", "BatchSampler",
           "val_batches", "SHARD_PREFIX", "shard_pattern", "ShardSplits", "open_shard_splits"]

SHARD_PREFIX = "shards:"



@dataclass
class TokenSplits:
    """train / val: 1-D int64 token streams (documents joined by the EOS id);
    n_docs_train / n_docs_val: documents per split; eos_id: the separator; fingerprint: corpus SHA-256."""

    train: torch.Tensor
    val: torch.Tensor
    n_docs_train: int
    n_docs_val: int
    eos_id: int
    fingerprint: str = ""


def split_documents(n_docs: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (sorted) of training and validation documents: a seeded random ``val_fraction`` of the
    documents (at least one when 0 < val_fraction, unless there is only one document) is held out."""
    if n_docs < 1:
        raise ValueError(f"n_docs must be >= 1, got {n_docs}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n_docs))
    if val_fraction > 0 and n_docs > 1:
        n_val = min(max(n_val, 1), n_docs - 1)
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n_docs)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def tokens_from_texts(tok: Any, texts: Sequence[str]) -> torch.Tensor:
    """Encode texts and join them as ``doc_0 EOS doc_1 EOS ...``; returns 1-D int64 [N]."""
    sep = eos_id(tok)
    out: list[int] = []
    for ids in encode_texts(tok, texts):
        out.extend(ids)
        out.append(sep)
    return torch.tensor(out, dtype=torch.int64)


def prepare_lm_data(corpus: str | Corpus | Sequence[str] = "kjv", tokenizer: Any = "bpe:2048",
                    val_fraction: float = 0.05, seed: int = 0) -> tuple[Any, TokenSplits]:
    """Load ``corpus`` (see :func:`infoplane.data.corpus.load_corpus`), hold out documents, build or load the
    tokenizer (spec string or tokenizer object; ``bpe:N`` trains on the training documents only) and encode
    both splits. Returns ``(tokenizer, TokenSplits)``."""
    if isinstance(corpus, str) and shard_pattern(corpus) is not None:
        raise ValueError(f"corpus {corpus!r} names token shards, which are already tokenized and are not "
                         "loaded into memory: use open_shard_splits (the Trainer does)")
    c = load_corpus(corpus)
    texts = c.texts
    tr_idx, va_idx = split_documents(len(texts), val_fraction, seed)
    train_texts = [texts[i] for i in tr_idx]
    val_texts = [texts[i] for i in va_idx]
    tok = resolve_tokenizer(tokenizer, train_texts, seed=seed) if isinstance(tokenizer, str) else tokenizer
    splits = TokenSplits(
        train=tokens_from_texts(tok, train_texts),
        val=tokens_from_texts(tok, val_texts) if val_texts else torch.zeros(0, dtype=torch.int64),
        n_docs_train=len(train_texts),
        n_docs_val=len(val_texts),
        eos_id=eos_id(tok),
        fingerprint=c.fingerprint,
    )
    return tok, splits


class BatchSampler(WindowSampler):
    """Seeded, resumable sampler of next-token batches from a 1-D token stream.

    tokens: int64 [N]. batch_size B, block_size T. Each call of :meth:`next_batch` returns
    ``(x, y)``, both [B, T] int64 with ``y[:, t] = x[:, t+1]`` in the stream. Epoch e uses windows
    ``stream[o + k*T : o + k*T + T + 1]`` with offset ``o`` and visiting order drawn from
    ``np.random.default_rng([seed, e])``; when fewer than B windows remain, the next epoch starts.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int = 0) -> None:
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be a 1-D stream, got shape {tuple(tokens.shape)}")
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
        if (len(tokens) - 1) // block_size < batch_size + 1:
            raise ValueError(
                f"token stream of {len(tokens)} tokens is too short for batches of {batch_size} x "
                f"{block_size}: expected at least {(batch_size + 1) * block_size + 1} tokens"
            )
        self.tokens = tokens.to(torch.int64)
        self.batch_size, self.block_size, self.seed = int(batch_size), int(block_size), int(seed)
        self.epoch, self.position = 0, 0
        self._order: np.ndarray | None = None
        self._offset = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next global batch (x [B, T], y [B, T])."""
        if self._order is None:
            self._plan()
        if self.position + self.batch_size > len(self._order):
            self.epoch += 1
            self.position = 0
            self._plan()
        T = self.block_size
        starts = self._offset + T * self._order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        idx = torch.as_tensor(starts, dtype=torch.int64)[:, None] + torch.arange(T + 1)[None, :]
        w = self.tokens[idx]
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def shard_pattern(spec: Any) -> str | None:
    """The shard glob of a corpus spec ``"shards:PATTERN"`` (None for any other spec); an empty pattern is a
    ValueError."""
    if not isinstance(spec, str) or not spec.startswith(SHARD_PREFIX):
        return None
    pattern = spec[len(SHARD_PREFIX):].strip()
    if not pattern:
        raise ValueError(f"corpus spec {spec!r}: expected 'shards:PATTERN', e.g. "
                         "'shards:data/fineweb10B/fineweb_train_*.bin'")
    return pattern


@dataclass
class ShardSplits:
    """Memory-mapped training / validation shards (never loaded whole): train [N] and val [M] (or None) as
    :class:`~infoplane.data.shards.ShardedTokens`; fingerprint: what a checkpoint records about them."""

    train: ShardedTokens
    val: ShardedTokens | None
    fingerprint: dict[str, Any]


def open_shard_splits(train_spec: str, val_spec: str | None = None) -> ShardSplits:
    """Open ``"shards:TRAIN_PATTERN"`` and (optionally) ``"shards:VAL_PATTERN"`` (the prefix is optional for
    ``val_spec``); headers are validated, tokens are mapped, not read."""
    pattern = shard_pattern(train_spec)
    if pattern is None:
        raise ValueError(f"expected a token-shard corpus spec 'shards:PATTERN', got {train_spec!r}")
    train_files = resolve_shards(pattern)
    val_files = None
    if val_spec:
        val_files = resolve_shards(shard_pattern(val_spec) or val_spec)
        overlap = sorted({str(f.resolve()) for f in train_files} & {str(f.resolve()) for f in val_files})
        if overlap:
            raise ValueError(f"the validation shards overlap the training shards: {overlap[:3]}")
    fp = {"train": shards_fingerprint(train_files),
          "val": shards_fingerprint(val_files) if val_files else None}
    return ShardSplits(train=ShardedTokens(train_files), val=ShardedTokens(val_files) if val_files else None,
                       fingerprint=fp)
