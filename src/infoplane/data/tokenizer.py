"""Tokenizers for training small language models offline.

- :func:`train_bpe_tokenizer`: a byte-level BPE trained with Hugging Face ``tokenizers`` on the training
  texts (deterministic; vocabularies of 1-8k keep the CPU cost of the LM head low).
- :class:`ByteTokenizer`: UTF-8 bytes as tokens (vocab 256, no training; the fallback).
- :func:`gpt2_tokenizer`: the GPT-2 BPE, only from local ``vocab.json`` + ``merges.txt`` (never downloads).
- :func:`load_tokenizer` / ``tok.save(path)``: JSON round trip for all of them.
- :func:`resolve_tokenizer`: the CLI spec ``"bpe:N" | "byte" | "gpt2:DIR" | path/to/tokenizer.json``.

All returned objects share the subset of the ``tokenizers.Tokenizer`` API the package uses:
``encode(text).ids``, ``encode_batch(texts)``, ``decode(ids)``, ``get_vocab_size()``, ``token_to_id(s)``,
``save(path)``. Use :func:`eos_id` for the document separator id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infoplane.io import atomic_write_text

__all__ = [
    "EOS_TOKEN",
    "ByteTokenizer",
    "train_bpe_tokenizer",
    "gpt2_tokenizer",
    "load_tokenizer",
    "save_tokenizer",
    "resolve_tokenizer",
    "encode_texts",
    "eos_id",
]

EOS_TOKEN = "<|endoftext|>"
_BYTE_TYPE = "infoplane.ByteTokenizer"


@dataclass
class _Encoding:
    ids: list[int]


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255 (vocab 256). Documents are separated by the newline byte (10),
    which doubles as the end-of-text id. Decoding replaces invalid UTF-8 sequences."""

    vocab_size = 256
    eos_token_id = 10

    def encode(self, text: str) -> _Encoding:
        return _Encoding(list(text.encode("utf-8")))

    def encode_batch(self, texts: Sequence[str]) -> list[_Encoding]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def get_vocab_size(self) -> int:
        return 256

    def token_to_id(self, token: str) -> int | None:
        if token == EOS_TOKEN:
            return self.eos_token_id
        b = token.encode("utf-8")
        return b[0] if len(b) == 1 else None

    def to_str(self) -> str:
        return json.dumps({"type": _BYTE_TYPE, "vocab_size": 256, "eos_token_id": self.eos_token_id})

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_str())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2048, seed: int = 0,
                        min_frequency: int = 2):
    """Train a byte-level BPE (GPT-2 style pre-tokenisation, 256 byte symbols + merges + ``<|endoftext|>``).

    texts: training texts (use the *training* split only to avoid leakage). vocab_size: final vocabulary
    size (>= 257). seed: accepted for API uniformity; BPE training is deterministic (merges are chosen by
    count with deterministic tie-breaking), which the tests check. Returns a ``tokenizers.Tokenizer``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    del seed  # deterministic algorithm; nothing random to seed
    if not isinstance(vocab_size, int) or vocab_size < 257:
        raise ValueError(f"vocab_size must be an int >= 257 (256 bytes + <|endoftext|>), got {vocab_size!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(texts)
    if not texts:
        raise ValueError("train_bpe_tokenizer: expected at least one training text")
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def gpt2_tokenizer(directory: str | os.PathLike):
    """GPT-2 byte-level BPE from a local directory holding ``vocab.json`` and ``merges.txt``.

    Never downloads; raises FileNotFoundError naming the missing files otherwise."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    d = Path(directory)
    vocab, merges = d / "vocab.json", d / "merges.txt"
    missing = [p.name for p in (vocab, merges) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"GPT-2 tokenizer files {missing} not found in {str(d)!r}: expected vocab.json and merges.txt "
            "(this package never downloads them; copy them there, or use 'bpe:N' / 'byte')"
        )
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def save_tokenizer(tok: Any, path: str | os.PathLike) -> None:
    """Write ``tok`` as JSON to ``path`` atomically (HF tokenizer JSON or the byte-tokenizer stub)."""
    atomic_write_text(path, tok.to_str())


def load_tokenizer(path: str | os.PathLike):
    """Load a tokenizer saved by :func:`save_tokenizer` / ``tok.save`` (either kind)."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"tokenizer file {str(p)!r} not found (expected a tokenizer JSON)")
    text = p.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not a tokenizer JSON ({exc.msg})") from exc
    if isinstance(obj, dict) and obj.get("type") == _BYTE_TYPE:
        return ByteTokenizer()
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def eos_id(tok: Any) -> int:
    """The id that separates documents: ``<|endoftext|>`` if present, else newline."""
    if isinstance(tok, ByteTokenizer):
        return tok.eos_token_id
    i = tok.token_to_id(EOS_TOKEN)
    if i is None:
        ids = tok.encode("\n").ids
        if len(ids) != 1:
            raise ValueError("tokenizer has neither <|endoftext|> nor a single-token newline")
        i = ids[0]
    return int(i)


def encode_texts(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (batched for HF tokenizers)."""
    return [e.ids for e in tok.encode_batch(list(texts))]


def resolve_tokenizer(spec: str, train_texts: Sequence[str] | None = None, seed: int = 0):
    """Tokenizer from a spec string.

    ``"byte"`` -> :class:`ByteTokenizer`; ``"bpe:N"`` -> BPE with vocabulary N trained on ``train_texts``;
    ``"gpt2:DIR"`` -> :func:`gpt2_tokenizer`; anything else -> a path to a saved tokenizer JSON.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"tokenizer spec must be 'byte', 'bpe:N', 'gpt2:DIR' or a JSON path, got {spec!r}")
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("bpe:"):
        try:
            n = int(spec[4:])
        except ValueError as exc:
            raise ValueError(f"tokenizer spec {spec!r}: expected 'bpe:N' with an integer N") from exc
        if train_texts is None:
            raise ValueError("tokenizer spec 'bpe:N' needs training texts")
        return train_bpe_tokenizer(train_texts, n, seed=seed)
    if spec.startswith("gpt2:"):
        return gpt2_tokenizer(spec[5:])
    return load_tokenizer(spec)
