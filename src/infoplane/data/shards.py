"""Pre-tokenized token shards in the nanoGPT / modded-nanogpt binary format, memory-mapped.

File layout (llm.c ``dev/data/data_common.py`` ``write_datafile``; read by modded-nanogpt ``train_gpt.py``
``_load_data_shard``; the FineWeb-10B shards ``fineweb_{train,val}_NNNNNN.bin`` are stored this way):

- header: 256 little-endian int32 = 1024 bytes; ``header[0] = 20240520`` (magic), ``header[1] = 1``
  (version), ``header[2]`` = number of tokens N, the rest zero;
- payload: N little-endian uint16 token ids (so ids < 65536; GPT-2's are < 50257).

Documents are joined by the tokenizer's end-of-text id inside the payload; a set of shards is read as one
stream, in sorted file order, without loading it: each shard is an ``np.memmap`` and a batch reads only its
own windows.

- :func:`read_header` / :func:`open_shard`: validate a file (clear errors naming it) and map its tokens;
- :func:`write_shard`: write a shard atomically (tests, local shards from any tokenizer);
- :func:`write_corpus_shards`: encode a corpus with a tokenizer into train / val shard files;
- :class:`ShardedTokens`: several shards as one read-only stream with window reads across file boundaries;
- :class:`ShardSampler`: seeded, resumable [B, T] batches, the same windows and order as
  :class:`~infoplane.data.lm_data.BatchSampler` on the same stream, and DDP-rank aware (each rank reads only
  its rows of the global batch);
- :func:`shard_val_batches`: fixed held-out batches from the start of the validation shards.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infoplane.data.windows import WindowSampler, val_batches

__all__ = ["MAGIC", "VERSION", "HEADER_INTS", "HEADER_BYTES", "ShardFormatError", "read_header", "open_shard",
           "write_shard", "write_corpus_shards", "resolve_shards", "ShardedTokens", "ShardSampler",
           "shard_val_batches", "shards_fingerprint"]

# modded-nanogpt / llm.c shard header (llm.c dev/data/data_common.py, write_datafile)
MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
_TOKEN = np.dtype("<u2")  # little-endian uint16 token ids
_HEADER = np.dtype("<i4")


class ShardFormatError(ValueError):
    """A file is not a valid token shard (its path and what was wrong are in the message)."""


def read_header(path: str | os.PathLike) -> int:
    """Validate the header of shard ``path`` and return its number of tokens N.

    Checks: the file exists, holds at least the 1024-byte header, magic 20240520, version 1, N >= 0, and the
    file size is exactly ``1024 + 2 N`` bytes (a truncated or padded file is refused)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"token shard {str(p)!r} not found")
    size = p.stat().st_size
    if size < HEADER_BYTES:
        raise ShardFormatError(f"token shard {str(p)!r}: {size} bytes, expected at least the "
                               f"{HEADER_BYTES}-byte header (256 int32)")
    header = np.fromfile(p, dtype=_HEADER, count=HEADER_INTS)
    if int(header[0]) != MAGIC:
        raise ShardFormatError(f"token shard {str(p)!r}: magic number {int(header[0])}, expected {MAGIC} "
                               "(a modded-nanogpt / llm.c .bin token file)")
    if int(header[1]) != VERSION:
        raise ShardFormatError(f"token shard {str(p)!r}: version {int(header[1])}, expected {VERSION} "
                               "(uint16 tokens)")
    n = int(header[2])
    if n < 0 or size != HEADER_BYTES + 2 * n:
        raise ShardFormatError(f"token shard {str(p)!r}: the header says {n} tokens, i.e. "
                               f"{HEADER_BYTES + 2 * max(n, 0)} bytes, but the file has {size} bytes "
                               "(truncated or corrupt)")
    return n


def open_shard(path: str | os.PathLike) -> np.memmap | np.ndarray:
    """Read-only memory map of the tokens of shard ``path``: uint16 [N] (validated by :func:`read_header`)."""
    n = read_header(path)
    if n == 0:
        return np.zeros(0, dtype=_TOKEN)
    return np.memmap(path, dtype=_TOKEN, mode="r", offset=HEADER_BYTES, shape=(n,))


def write_shard(path: str | os.PathLike, tokens: Sequence[int] | np.ndarray | torch.Tensor) -> Path:
    """Write ``tokens`` (1-D ids, each in 0..65535) as a shard at ``path``, atomically (temp file + rename).
    Returns the path."""
    arr = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"write_shard: tokens must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"write_shard {str(path)!r}: token ids must be integers, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
        raise ValueError(f"write_shard {str(path)!r}: token ids must lie in 0..65535 (uint16), got "
                         f"{int(arr.min())}..{int(arr.max())}")
    if arr.size >= 2**31:
        raise ValueError(f"write_shard {str(path)!r}: {arr.size} tokens do not fit the int32 header count")
    header = np.zeros(HEADER_INTS, dtype=_HEADER)
    header[0], header[1], header[2] = MAGIC, VERSION, arr.size
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header.tobytes())
            fh.write(arr.astype(_TOKEN).tobytes())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_corpus_shards(out_dir: str | os.PathLike, texts: Iterable[str], tokenizer: Any, *,
                        prefix: str = "local", val_docs: int = 0,
                        shard_tokens: int = 100_000_000) -> list[Path]:
    """Encode ``texts`` with ``tokenizer`` (any infoplane tokenizer: ``encode(text).ids`` or ``encode`` ->
    ids) and write ``{prefix}_val_000000.bin`` (the first ``val_docs`` documents, when > 0) and
    ``{prefix}_train_NNNNNN.bin`` (the rest, ``shard_tokens`` tokens per file). Every document is preceded
    by the end-of-text id, as in modded-nanogpt ``data/fineweb.py``. Returns the written paths."""
    from infoplane.data.tokenizer import encode_texts, eos_id

    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    sep = eos_id(tokenizer)
    out, written = Path(out_dir), []
    docs = list(texts)
    for split, part in (("val", docs[:val_docs]), ("train", docs[val_docs:])):
        if not part:
            continue
        ids: list[int] = []
        for doc in encode_texts(tokenizer, part):
            ids.append(sep)
            ids.extend(doc)
        arr = np.asarray(ids, dtype=np.int64)
        for k, lo in enumerate(range(0, len(arr), shard_tokens)):
            written.append(write_shard(out / f"{prefix}_{split}_{k:06d}.bin", arr[lo:lo + shard_tokens]))
    return written


def resolve_shards(pattern: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Sorted shard files of a glob pattern (``data/fineweb_train_*.bin``), a directory (its ``*.bin``) or
    an explicit list; a FileNotFoundError naming the pattern when nothing matches."""
    if isinstance(pattern, (list, tuple)):
        files = [Path(p) for p in pattern]
    elif Path(pattern).is_dir():
        files = sorted(Path(pattern).glob("*.bin"))
    else:
        files = [Path(p) for p in sorted(glob.glob(str(pattern)))]
    if not files:
        raise FileNotFoundError(f"no token shard matches {str(pattern)!r} (expected .bin files in the "
                                "modded-nanogpt format)")
    return files


class ShardedTokens:
    """Several shards as one read-only token stream (files in the given order), without loading it.

    ``len(self)`` = total tokens; :meth:`windows` reads ``[n, length]`` int64 windows at arbitrary starts,
    across file boundaries. Headers of every file are validated at construction (cheap: 1 KiB each)."""

    def __init__(self, files: Sequence[str | os.PathLike]) -> None:
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("ShardedTokens needs at least one shard file")
        self.shards = [open_shard(f) for f in self.files]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])  # [n_files + 1]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, position: int) -> tuple[Path, int]:
        """(file, index inside it) of stream position ``position``."""
        k = int(np.searchsorted(self.offsets, position, side="right") - 1)
        return self.files[k], int(position - self.offsets[k])

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """int64 [len(starts), length]: ``stream[s : s + length]`` for each start ``s``."""
        out = np.empty((len(starts), length), dtype=np.int64)
        for row, s in enumerate(np.asarray(starts, dtype=np.int64)):
            s, filled = int(s), 0
            if s < 0 or s + length > len(self):
                raise IndexError(f"window {s}..{s + length} outside the stream of {len(self)} tokens")
            k = int(np.searchsorted(self.offsets, s, side="right") - 1)
            while filled < length:
                lo = s + filled - int(self.offsets[k])
                take = min(length - filled, len(self.shards[k]) - lo)
                out[row, filled:filled + take] = self.shards[k][lo:lo + take]
                filled += take
                k += 1
        return out

    def head(self, n: int) -> torch.Tensor:
        """The first ``min(n, len)`` tokens as int64 [n] (for validation batches)."""
        n = min(int(n), len(self))
        return torch.from_numpy(self.windows(np.zeros(1, dtype=np.int64), n)[0]) if n else \
            torch.zeros(0, dtype=torch.int64)


class ShardSampler(WindowSampler):
    """Seeded, resumable sampler of next-token batches from token shards, optionally one DDP rank's rows.

    Same windows and visiting order as :class:`~infoplane.data.lm_data.BatchSampler` on the concatenated
    stream: epoch e cuts the stream into windows ``stream[o + k T : o + k T + T + 1]`` at an offset ``o`` and
    visits them in an order drawn from ``np.random.default_rng([seed, e])``; the state is
    ``{epoch, position}``. :meth:`next_batch` returns ``(x, y)`` int64 [B / world, T] each: rows
    ``rank * B / world`` to ``(rank + 1) * B / world`` of the global batch, so only those windows are read.

    vocab_size: when given, every batch's ids are checked to be below it (a ValueError naming the shard file
    otherwise); the stream itself is never scanned in full.
    """

    rank_local = True  # next_batch already returns this rank's rows

    def __init__(self, tokens: ShardedTokens, batch_size: int, block_size: int, seed: int = 0, *,
                 rank: int = 0, world_size: int = 1, vocab_size: int | None = None) -> None:
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
        if world_size < 1 or not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(f"rank {rank} of world_size {world_size}: expected 0 <= rank < world_size and "
                             f"batch_size {batch_size} divisible by world_size")
        if (len(tokens) - 1) // block_size < batch_size + 1:
            raise ValueError(
                f"token shards of {len(tokens)} tokens ({', '.join(str(f) for f in tokens.files[:3])}"
                f"{', ...' if len(tokens.files) > 3 else ''}) are too short for batches of {batch_size} x "
                f"{block_size}: expected at least {(batch_size + 1) * block_size + 1} tokens")
        self.tokens = tokens
        self.batch_size, self.block_size, self.seed = int(batch_size), int(block_size), int(seed)
        self.rank, self.world_size, self.vocab_size = int(rank), int(world_size), vocab_size
        self.epoch, self.position = 0, 0
        self._order: np.ndarray | None = None
        self._offset = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of the next global batch: (x [B / world, T], y [B / world, T]) int64."""
        if self._order is None:
            self._plan()
        assert self._order is not None
        if self.position + self.batch_size > len(self._order):
            self.epoch += 1
            self.position = 0
            self._plan()
            assert self._order is not None
        T, per = self.block_size, self.batch_size // self.world_size
        rows = self._order[self.position + self.rank * per:self.position + (self.rank + 1) * per]
        self.position += self.batch_size
        starts = self._offset + T * rows
        w = self.tokens.windows(starts, T + 1)
        if self.vocab_size is not None and w.size and int(w.max()) >= self.vocab_size:
            r, c = np.unravel_index(int(np.argmax(w)), w.shape)
            f, i = self.tokens.locate(int(starts[r]) + int(c))
            raise ValueError(f"token shard {str(f)!r} holds id {int(w.max())} at token {i}, but the model's "
                             f"vocabulary has {self.vocab_size} ids (0..{self.vocab_size - 1}): set "
                             "model.vocab_size to the tokenizer's (GPT-2: 50257, padded 50304)")
        t = torch.from_numpy(w)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def shard_val_batches(tokens: ShardedTokens | None, batch_size: int, block_size: int,
                      max_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Validation batches from the start of the validation shards (as
    :func:`~infoplane.data.windows.val_batches`: windows of T+1 tokens at stride T, ``max_batches`` batches
    of ``batch_size``); reads only the ``max_batches * batch_size * T + 1`` tokens it needs."""
    if tokens is None:
        return []
    return val_batches(tokens.head(max_batches * batch_size * block_size + 1), batch_size, block_size,
                       max_batches)


def shards_fingerprint(files: Sequence[Path], sample_bytes: int = 1 << 16) -> dict[str, Any]:
    """What a checkpoint records about shard data without reading it all: the SHA-256 over every file's name,
    size, and first and last ``sample_bytes`` bytes, and the token count."""
    h = hashlib.sha256()
    n = 0
    for f in files:
        size = f.stat().st_size
        n += (size - HEADER_BYTES) // 2
        h.update(f"{f.name}|{size}|".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(sample_bytes))
            fh.seek(max(size - sample_bytes, 0))
            h.update(fh.read(sample_bytes))
    return {"sha256": h.hexdigest(), "n_tokens": n, "n_files": len(files)}
