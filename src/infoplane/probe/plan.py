"""Plan building, no model involved: corpus -> sampled sequences -> padded batches -> label pre-pass.

1. a seeded sample of texts (``config.seed`` fixes both the sample and the reference points) is tokenised,
   truncated to ``config.seq_len`` and cut so that exactly ``config.max_tokens`` positions are analysed;
2. label pre-pass: n-gram ids for every order and direction (soft-entropy, soft_entropy/llm.py), counted over
   the whole sample; ids seen once become the accumulator's singleton label (``-1``), which is exact; with
   ``min_count > 1`` rarer ids are pooled into one label per set.

The resulting :class:`ProbePlan` is what :func:`infoplane.probe.run.run_plan` forwards, on one process or
split over ranks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from infoplane.probe.config import ProbeConfig
from infoplane.probe.labels import (
    LabelCounter,
    NgramTable,
    SequenceLabelEncoder,
    label_set_name,
    ngram_tuples,
    parse_label_set,
    valid_positions,
)

__all__ = ["ProbeBatch", "ProbePlan", "prepare_plan", "corpus_content_hash"]


@dataclass
class ProbeBatch:
    """One padded batch: ids/mask ``[B, T]``, optional position/document ids, valid positions and labels."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None
    document_ids: torch.Tensor | None = None
    positions: torch.Tensor | None = None  # [B, T] bool, valid positions
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [N] int64, singletons = -1
    text_indices: list[int] | None = None  # [B]: index of each row's text in the corpus (error messages)


@dataclass
class ProbePlan:
    """Everything fixed before the model runs: batches, labels (singletons marked) and their statistics.

    ``n_samples`` is the number of analysed positions N (per hidden state), ``tokens_forwarded`` the number
    of non-padding tokens the model sees; ``config`` is the configuration the plan was built with.
    """

    batches: list[ProbeBatch]
    orders: tuple[int, ...]
    label_stats: dict[str, dict[str, float]]
    n_texts: int
    tokens_forwarded: int
    n_samples: int
    corpus_fingerprint: str
    corpus_source: str
    sequence_labels: list[str]
    config: ProbeConfig = field(default_factory=ProbeConfig)


# ----------------------------------------------------------------------------------------------- inputs


def _encode(tokenizer: Any, text: str, why: str | None = None) -> list[int]:
    if tokenizer is None:
        raise ValueError("texts need a tokenizer: pass tokenizer= (or a model directory that ships one), "
                         "or pass token ids instead of texts" + (f" [{why}]" if why else ""))
    if hasattr(tokenizer, "is_fast") or hasattr(tokenizer, "pad_token_id"):  # transformers tokenizer
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    else:
        ids = tokenizer.encode(text)
        ids = getattr(ids, "ids", ids)  # tokenizers.Tokenizer returns an Encoding
    return [int(i) for i in ids]


def _is_token_seq(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.ndim == 1 and not x.is_floating_point()
    if isinstance(x, np.ndarray):
        return x.ndim == 1 and np.issubdtype(x.dtype, np.integer)
    return isinstance(x, (list, tuple)) and all(isinstance(i, (int, np.integer)) for i in x)


def is_token_input(corpus: Any) -> bool:
    """True for a ``[B, T]`` integer tensor or a non-empty list of token-id sequences."""
    return isinstance(corpus, torch.Tensor) or (
        isinstance(corpus, (list, tuple)) and len(corpus) > 0 and all(_is_token_seq(s) for s in corpus))


def _fingerprint_ids(seqs: Sequence[Sequence[int]]) -> str:
    h = hashlib.sha256()
    for s in seqs:
        h.update(np.asarray(s, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def corpus_content_hash(corpus: Any, sequence_values: Mapping[str, Sequence[Any]] | None = None) -> str:
    """SHA-256 of what the corpus *contains* (texts and their labels, token ids, or the ``input_ids``
    mapping's arrays) plus the per-sequence label values; independent of any probe setting.

    Two in-memory corpora with different texts always hash differently, whatever their type or source name.
    """
    import json

    h = hashlib.sha256()
    if isinstance(corpus, Mapping):
        h.update(b"mapping")
        for key in sorted(corpus):
            v = corpus[key]
            if v is None:
                continue
            arr = np.ascontiguousarray(torch.as_tensor(v).long().numpy())
            h.update(f"{key}:{arr.shape}".encode())
            h.update(arr.tobytes())
    elif is_token_input(corpus):
        h.update(b"token_ids")
        h.update(_fingerprint_ids([s.tolist() if hasattr(s, "tolist") else list(s) for s in corpus]).encode())
    else:
        from infoplane.data.corpus import load_corpus

        h.update(b"texts")
        h.update(load_corpus(corpus).fingerprint.encode())
    if sequence_values:
        h.update(json.dumps({k: list(v) for k, v in sequence_values.items()}, sort_keys=True,
                            default=str).encode())
    return h.hexdigest()


def _batches_from_mapping(data: Mapping[str, Any], batch_size: int) -> list[ProbeBatch]:
    ids = torch.as_tensor(data["input_ids"]).long()
    if ids.ndim != 2:
        raise ValueError(f"input_ids must have shape [B, T], got {tuple(ids.shape)}")
    extra: dict[str, torch.Tensor | None] = {}
    for key in ("attention_mask", "position_ids", "document_ids"):
        v = data.get(key)
        extra[key] = None if v is None else torch.as_tensor(v).long()
        if extra[key] is not None and extra[key].shape != ids.shape:
            raise ValueError(f"{key} must have the shape of input_ids {tuple(ids.shape)}, "
                             f"got {tuple(extra[key].shape)}")
    mask = extra["attention_mask"] if extra["attention_mask"] is not None else torch.ones_like(ids)
    out = []
    for s in range(0, ids.shape[0], batch_size):
        sl = slice(s, s + batch_size)
        out.append(ProbeBatch(ids[sl], mask[sl],
                              None if extra["position_ids"] is None else extra["position_ids"][sl],
                              None if extra["document_ids"] is None else extra["document_ids"][sl],
                              text_indices=list(range(ids.shape[0]))[sl]))
    return out


def _pad(seqs: list[list[int]], side: str, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        else:
            ids[i, T - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, T - len(s):] = 1
    return ids, mask


def _check_values(sequence_values: Mapping[str, Sequence[Any]], n_rows: int, what: str) -> dict[str, list]:
    out = {}
    for k, v in sequence_values.items():
        if not isinstance(k, str) or not k or parse_label_set(k)[0] != "sequence":
            raise ValueError(f"sequence label name {k!r} clashes with n-gram label sets "
                             "(input_<n>/output_<n>) or is empty; rename it")
        if len(v) != n_rows:
            raise ValueError(f"sequence label {k!r} has {len(v)} values, expected one per {what} ({n_rows})")
        out[k] = list(v)
    return out


def _sample(config: ProbeConfig, seqs: Sequence[Any], encode: Any, labels: list[dict[str, Any]],
            seq_names: list[str], source: str) -> tuple[list[list[int]], dict[str, list[Any]], list[int]]:
    """Seeded sample of sequences: truncated to ``seq_len``, cut to exactly ``max_tokens`` valid positions,
    longest first (statistics do not depend on the order; it limits padding). Also returns the index of
    each chosen sequence in ``seqs``."""
    n_max = max(config.orders)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(seqs))
    chosen: list[list[int]] = []
    source_index: list[int] = []
    seq_values: dict[str, list[Any]] = {k: [] for k in seq_names}
    total, max_tokens = 0, config.max_tokens
    for i in order:
        ids = encode(seqs[i])[: config.seq_len]
        n_valid = len(ids) - 2 * n_max + 1  # positions n_max-1 .. len-n_max-1
        if n_valid <= 0:
            continue
        if max_tokens is not None and total + n_valid > max_tokens:
            n_valid = max_tokens - total
            ids = ids[: n_valid + 2 * n_max - 1]
        chosen.append(ids)
        source_index.append(int(i))
        for k in seq_names:
            seq_values[k].append(labels[i][k])
        total += n_valid
        if max_tokens is not None and total >= max_tokens:
            break
    if not chosen:
        raise ValueError(f"no text of {source} is long enough for order {n_max} "
                         f"(each needs >= {2 * n_max} tokens)")
    perm = sorted(range(len(chosen)), key=lambda j: -len(chosen[j]))
    return ([chosen[j] for j in perm], {k: [v[j] for j in perm] for k, v in seq_values.items()},
            [source_index[j] for j in perm])


def _label_prepass(batches: list[ProbeBatch], orders: tuple[int, ...], seq_values: dict[str, list[Any]],
                   min_count: int) -> dict[str, dict[str, float]]:
    """Fill ``b.positions`` and ``b.labels`` of every batch; returns the per-set label statistics."""
    n_max = max(orders)
    table = NgramTable()
    counter = LabelCounter()
    encoder = SequenceLabelEncoder(seq_values) if seq_values else None
    row0 = 0
    for b in batches:
        b.positions = valid_positions(b.input_ids, n_max, b.attention_mask, b.document_ids, b.position_ids)
        for n in orders:
            for kind in ("input", "output"):
                name = label_set_name(kind, n)
                ids = table.encode(ngram_tuples(b.input_ids, b.positions, n, kind))
                counter.add(name, ids)
                b.labels[name] = ids
        if encoder is not None:
            rows = torch.nonzero(b.positions, as_tuple=False)[:, 0]
            for name, values in seq_values.items():
                per_row = torch.tensor([encoder.encode(name, v)
                                        for v in values[row0:row0 + b.input_ids.shape[0]]], dtype=torch.long)
                b.labels[name] = per_row[rows]
        row0 += b.input_ids.shape[0]
    names = [label_set_name(kind, n) for n in orders for kind in ("input", "output")]
    for b in batches:
        for name in names:
            b.labels[name] = counter.mark_singletons(name, b.labels[name], min_count)
    return {name: counter.summary(name, min_count) for name in names}


def prepare_plan(
    corpus: Any,
    config: ProbeConfig | None = None,
    *,
    tokenizer: Any = None,
    sequence_values: Mapping[str, Sequence[Any]] | None = None,
    pad_id: int = 0,
    tokenizer_error: str | None = None,
) -> ProbePlan:
    """Sample, tokenise, batch and label the corpus (no model involved).

    Args:
        corpus: an embedded name (``"kjv"``), a path, a :class:`~infoplane.data.corpus.Corpus`, an iterable of
            texts / Documents, a list of token-id sequences, or a mapping ``{"input_ids": [B, T],
            "attention_mask"?, "position_ids"?, "document_ids"?}`` used as given (packed rows allowed).
        config: the probe settings (default :class:`ProbeConfig()`); for texts, ``config.sequence_labels``
            names document label fields.
        tokenizer: turns texts into token ids (not needed for token-id input).
        sequence_values: for token-id or ``input_ids`` input only: ``name -> one value per sequence/row``,
            broadcast to every position of that sequence (documents carry their own labels).
        pad_id: token id written into padding (never analysed).
        tokenizer_error: why no tokenizer could be loaded (added to the "texts need a tokenizer" error).
    Returns:
        :class:`ProbePlan` whose batches hold ids/mask ``[B, T]``, valid positions ``[B, T]`` and labels
        ``[N_b]`` per label set.
    """
    config = ProbeConfig.resolve(config)
    orders, batch_size = config.orders, config.batch_size
    n_max = max(orders)
    text_input = not isinstance(corpus, Mapping) and not is_token_input(corpus)
    if sequence_values is not None and text_input:
        raise ValueError("sequence_values are for token-id input; texts carry their labels as document "
                         "fields: name them in ProbeConfig.sequence_labels")
    names = set(config.sequence_labels)
    if not text_input and names and names != set(sequence_values or {}):
        raise ValueError(f"with token-id input, the sequence labels {list(config.sequence_labels)} need "
                         "per-sequence values: pass sequence_values={name: [one value per sequence]}")

    seq_values: dict[str, list[Any]] = {}
    if isinstance(corpus, Mapping):
        batches = _batches_from_mapping(corpus, batch_size)
        n_rows = sum(b.input_ids.shape[0] for b in batches)
        if sequence_values is not None:
            seq_values = _check_values(sequence_values, n_rows, "row")
        fingerprint = _fingerprint_ids([b.input_ids.flatten().tolist() for b in batches])
        source, n_texts = "input_ids", n_rows
    else:
        if text_input:
            from infoplane.data.corpus import load_corpus

            corp = load_corpus(corpus)
            seq_names = list(config.sequence_labels)
            for name in seq_names:
                missing = sum(1 for d in corp.documents if name not in d.labels)
                if missing:
                    raise ValueError(f"sequence label {name!r} is missing in {missing} of {len(corp)} "
                                     f"texts of {corp.source}; available fields: "
                                     f"{sorted(corp.documents[0].labels)}")
            seqs: Sequence[Any] = corp.documents
            doc_labels = [d.labels for d in corp.documents]
            fingerprint, source = corp.fingerprint, corp.source

            def encode(doc: Any) -> list[int]:
                return _encode(tokenizer, doc.text, tokenizer_error)
        else:
            seqs = [list(map(int, s.tolist() if hasattr(s, "tolist") else s)) for s in corpus]
            if not seqs:
                raise ValueError("empty token-id input: expected at least one sequence")
            values = _check_values(sequence_values or {}, len(seqs), "sequence")
            seq_names = list(values)
            doc_labels = [{k: v[i] for k, v in values.items()} for i in range(len(seqs))]
            fingerprint, source = _fingerprint_ids(seqs), "token_ids"

            def encode(ids: Any) -> list[int]:
                return ids
        chosen, seq_values, text_index = _sample(config, seqs, encode, doc_labels, seq_names, source)
        batches = []
        for s in range(0, len(chosen), batch_size):
            ids_t, mask_t = _pad(chosen[s:s + batch_size], config.padding_side, pad_id)
            batches.append(ProbeBatch(ids_t, mask_t, text_indices=text_index[s:s + batch_size]))
        n_texts = len(chosen)

    stats = _label_prepass(batches, orders, seq_values, config.min_count)
    n_samples = int(sum(int(b.positions.sum()) for b in batches))
    if n_samples == 0:
        raise ValueError(f"no valid position in the input for order {n_max}: sequences need >= {2 * n_max} "
                         "tokens inside one document")
    tokens = int(sum(int(b.attention_mask.sum()) for b in batches))
    return ProbePlan(batches, orders, stats, n_texts, tokens, n_samples, fingerprint, source,
                     list(seq_values), config)
