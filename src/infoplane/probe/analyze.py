"""``analyze(model, corpus) -> ProbeResult``: per-layer soft entropy and n-gram/per-text MI of a causal LM.

Data flow (one pass over the model, bounded memory):

1. a seeded sample of texts (``seed`` fixes both the sample and the reference points) is tokenised, truncated
   to ``seq_len`` and cut so that exactly ``max_tokens`` positions are analysed;
2. label pre-pass without the model: n-gram ids for every order and direction, counted over the whole
   sample; ids seen once become the accumulator's singleton label (``-1``), which is exact;
3. one forward per batch with hooks on every hidden state (:mod:`infoplane.probe.capture`); each hook feeds
   ``acc.update(z [N, d], prepared_labels, layer=l)`` and the state is dropped; the LM head is skipped;
4. ``acc.compute()`` -> tidy rows (one per layer x label set) -> :func:`infoplane.plane.plane_table`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infoplane.io import atomic_write_bytes, atomic_write_csv, atomic_write_json, versions
from infoplane.plane import PLANE_COLUMNS, plane_table
from infoplane.probe.capture import (
    HiddenStateCapture,
    _accepts,
    find_hidden_sites,
    forward_batch,
    hidden_dims,
)
from infoplane.probe.labels import (
    LabelCounter,
    NgramTable,
    SequenceLabelEncoder,
    check_orders,
    label_set_name,
    ngram_tuples,
    parse_label_set,
    valid_positions,
)
from infoplane.probe.models import LoadedModel, load_model

__all__ = ["analyze", "ProbeResult", "ProbePlan", "prepare_plan", "run_plan", "RESULT_COLUMNS"]

RESULT_COLUMNS = [
    "model", "step", "layer", "label_set", "kind", "n", "entropy", "mi", "mi_null", "singleton_mass",
    "n_labels", "capacity", "conditional_entropy", "regularity", "n_samples",
]


@dataclass
class ProbeBatch:
    """One padded batch: ids/mask ``[B, T]``, optional position/document ids, valid positions and labels."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None
    document_ids: torch.Tensor | None = None
    positions: torch.Tensor | None = None  # [B, T] bool, valid positions
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [N] int64, singletons = -1


@dataclass
class ProbePlan:
    """Everything fixed before the model runs: batches, labels (singletons marked) and their statistics."""

    batches: list[ProbeBatch]
    orders: tuple[int, ...]
    label_stats: dict[str, dict[str, float]]
    n_texts: int
    tokens_forwarded: int
    n_samples: int
    corpus_fingerprint: str
    corpus_source: str
    sequence_labels: list[str]


@dataclass
class ProbeResult:
    """Tidy results of :func:`analyze`.

    Attributes:
        rows: one dict per (layer, label set) with :data:`RESULT_COLUMNS` (values normalised by log m).
        plane: information-plane rows (:func:`infoplane.plane.plane_table`), incl. layer means.
        metadata: model id/hash, corpus fingerprint, sample sizes, seed, m, temperature, reference hash,
            versions.
    """

    rows: list[dict[str, Any]]
    plane: list[dict[str, Any]]
    metadata: dict[str, Any]

    def layer_values(self, column: str, label_set: str | None = None) -> np.ndarray:
        """Per-layer values of ``column`` (``entropy``, ``mi``, ...) for ``label_set`` (first set if None)."""
        sets = [r for r in self.rows if label_set is None or r["label_set"] == label_set]
        if not sets:
            raise ValueError(f"no rows for label set {label_set!r}")
        name = sets[0]["label_set"]
        by_layer = {int(r["layer"]): r[column] for r in sets if r["label_set"] == name}
        return np.array([by_layer[k] for k in sorted(by_layer)], dtype=float)

    def save(self, out_dir: str | os.PathLike, stem: str = "probe") -> dict[str, Path]:
        """Write ``{stem}.csv`` (rows), ``{stem}_plane.csv``, ``{stem}.json`` (metadata) atomically; also
        ``{stem}.parquet`` when pyarrow is importable. Returns the written paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"rows": out / f"{stem}.csv", "plane": out / f"{stem}_plane.csv",
                 "metadata": out / f"{stem}.json"}
        atomic_write_csv(paths["rows"], self.rows, _columns(self.rows, RESULT_COLUMNS))
        atomic_write_csv(paths["plane"], self.plane, _columns(self.plane, PLANE_COLUMNS))
        atomic_write_json(paths["metadata"], self.metadata)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return paths
        import io

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self.rows), buf)
        paths["parquet"] = out / f"{stem}.parquet"
        atomic_write_bytes(paths["parquet"], buf.getvalue())
        return paths


def _columns(rows: list[dict[str, Any]], preferred: list[str]) -> list[str]:
    cols = [c for c in preferred if any(c in r for r in rows)]
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


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


def _fingerprint_ids(seqs: Sequence[Sequence[int]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for s in seqs:
        h.update(np.asarray(s, dtype=np.int64).tobytes())
        h.update(b"|")
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
                              None if extra["document_ids"] is None else extra["document_ids"][sl]))
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


def prepare_plan(
    corpus: Any,
    tokenizer: Any = None,
    orders: Sequence[int] = (1, 2, 3),
    max_tokens: int | None = 4096,
    seq_len: int = 128,
    batch_size: int = 8,
    seed: int = 0,
    sequence_labels: Sequence[str] | Mapping[str, Sequence[Any]] | str | None = None,
    padding_side: str = "right",
    pad_id: int = 0,
    tokenizer_error: str | None = None,
    min_count: int = 1,
) -> ProbePlan:
    """Sample, tokenise, batch and label the corpus (no model involved).

    Args:
        corpus: an embedded name (``"kjv"``), a path, a :class:`~infoplane.data.corpus.Corpus`, an iterable of
            texts / Documents, a list of token-id sequences, or a mapping ``{"input_ids": [B, T],
            "attention_mask"?, "position_ids"?, "document_ids"?}`` used as given (packed rows allowed).
        orders: n-gram orders (>= 1); all share the valid positions of the largest.
        max_tokens: number of analysed positions (samples per layer); None = the whole corpus.
        seq_len: truncation length in tokens (model context used per text).
        seed: fixes the text sample (numpy PCG64 permutation of the texts).
        sequence_labels: per-text label fields of the corpus documents (e.g. ``["book"]``), or for token-id
            input a mapping ``name -> one value per sequence``; broadcast to every position of the text.
        padding_side: ``"right"`` or ``"left"`` (statistics do not depend on it).
        min_count: n-gram labels seen fewer times in the sample are pooled into one "rare" label per set
            (1 = no pooling; singletons are then handled exactly). Pooling can only lower MI.
    """
    orders = check_orders(orders)
    n_max = max(orders)
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    if seq_len < 2 * n_max:
        raise ValueError(f"seq_len={seq_len} leaves no valid position for order {n_max}: "
                         f"need seq_len >= 2 * max(orders) = {2 * n_max}")
    if isinstance(sequence_labels, str):
        sequence_labels = [sequence_labels]
    seq_names = list(sequence_labels) if sequence_labels is not None else []
    for name in seq_names:
        if parse_label_set(name)[0] != "sequence" or not name:
            raise ValueError(f"sequence label name {name!r} clashes with n-gram label sets "
                             "(input_<n>/output_<n>); rename it")
    rng = np.random.default_rng(seed)

    seq_values: dict[str, list[Any]] = {k: [] for k in seq_names}
    if isinstance(corpus, Mapping):
        batches = _batches_from_mapping(corpus, batch_size)
        if isinstance(sequence_labels, Mapping):
            n_rows = sum(b.input_ids.shape[0] for b in batches)
            for k, v in sequence_labels.items():
                if len(v) != n_rows:
                    raise ValueError(f"sequence label {k!r} has {len(v)} values, "
                                     f"expected one per row ({n_rows})")
                seq_values[k] = list(v)
        elif seq_names:
            raise ValueError("with an input_ids mapping, sequence_labels must map each name to "
                             "per-row values")
        fingerprint = _fingerprint_ids([b.input_ids.flatten().tolist() for b in batches])
        source, n_texts = "input_ids", sum(b.input_ids.shape[0] for b in batches)
    else:
        token_input = isinstance(corpus, torch.Tensor) or (
            isinstance(corpus, (list, tuple)) and len(corpus) > 0 and all(_is_token_seq(s) for s in corpus))
        if token_input:
            seqs_all = [list(map(int, s.tolist() if hasattr(s, "tolist") else s)) for s in corpus]
            if not seqs_all:
                raise ValueError("empty token-id input: expected at least one sequence")
            doc_labels: list[dict[str, Any]] = [{} for _ in seqs_all]
            if isinstance(sequence_labels, Mapping):
                for k, v in sequence_labels.items():
                    if len(v) != len(seqs_all):
                        raise ValueError(f"sequence label {k!r} has {len(v)} values, expected one per "
                                         f"sequence ({len(seqs_all)})")
                    for i, val in enumerate(v):
                        doc_labels[i][k] = val
            elif seq_names:
                raise ValueError("with token-id input, sequence_labels must map each name to "
                                 "per-sequence values")
            fingerprint, source = _fingerprint_ids(seqs_all), "token_ids"
            texts = None
        else:
            from infoplane.data.corpus import load_corpus

            corp = load_corpus(corpus)
            for name in seq_names:
                missing = sum(1 for d in corp.documents if name not in d.labels)
                if missing:
                    raise ValueError(f"sequence label {name!r} is missing in {missing} of {len(corp)} "
                                     f"texts of {corp.source}; available fields: "
                                     f"{sorted(corp.documents[0].labels)}")
            texts = corp.documents
            doc_labels = [d.labels for d in corp.documents]
            fingerprint, source = corp.fingerprint, corp.source
            seqs_all = None
        n_docs = len(texts) if texts is not None else len(seqs_all)
        order = rng.permutation(n_docs)
        chosen: list[list[int]] = []
        total = 0
        for i in order:
            ids = _encode(tokenizer, texts[i].text, tokenizer_error) if texts is not None else seqs_all[i]
            ids = ids[:seq_len]
            n_valid = len(ids) - 2 * n_max + 1  # positions n_max-1 .. len-n_max-1
            if n_valid <= 0:
                continue
            if max_tokens is not None and total + n_valid > max_tokens:
                n_valid = max_tokens - total
                ids = ids[: n_valid + 2 * n_max - 1]
            chosen.append(ids)
            for k in seq_names:
                seq_values[k].append(doc_labels[i][k])
            total += n_valid
            if max_tokens is not None and total >= max_tokens:
                break
        if not chosen:
            raise ValueError(f"no text of {source} is long enough for order {n_max} "
                             f"(each needs >= {2 * n_max} tokens)")
        # group texts of similar length to limit padding (statistics do not depend on the order)
        perm = sorted(range(len(chosen)), key=lambda j: -len(chosen[j]))
        chosen = [chosen[j] for j in perm]
        seq_values = {k: [v[j] for j in perm] for k, v in seq_values.items()}
        batches = []
        for s in range(0, len(chosen), batch_size):
            ids_t, mask_t = _pad(chosen[s:s + batch_size], padding_side, pad_id)
            batches.append(ProbeBatch(ids_t, mask_t))
        n_texts = len(chosen)

    # label pre-pass: ids for every order/direction, counted over the whole sample
    table = NgramTable()
    counter = LabelCounter()
    encoder = SequenceLabelEncoder(seq_values) if seq_names else None
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
            for name in seq_names:
                per_row = torch.tensor([encoder.encode(name, v)
                                        for v in seq_values[name][row0:row0 + b.input_ids.shape[0]]],
                                       dtype=torch.long)
                b.labels[name] = per_row[rows]
        row0 += b.input_ids.shape[0]
    stats = {}
    for b in batches:
        for n in orders:
            for kind in ("input", "output"):
                name = label_set_name(kind, n)
                b.labels[name] = counter.mark_singletons(name, b.labels[name], min_count)
    for n in orders:
        for kind in ("input", "output"):
            name = label_set_name(kind, n)
            stats[name] = counter.summary(name, min_count)
    n_samples = int(sum(int(b.positions.sum()) for b in batches))
    if n_samples == 0:
        raise ValueError(f"no valid position in the input for order {n_max}: sequences need >= {2 * n_max} "
                         "tokens inside one document")
    tokens = int(sum(int(b.attention_mask.sum()) for b in batches))
    return ProbePlan(batches, orders, stats, n_texts, tokens, n_samples, fingerprint, source, seq_names)


# ----------------------------------------------------------------------------------------------- running


def _make_accumulator(dim: int, n_layers: int, n_bins: int, seed: int, temperature: float | None,
                      calibration: str, null: bool) -> Any:
    from infoplane.estimators import SoftEntropyAccumulator

    return SoftEntropyAccumulator(dim, n_bins=n_bins, seed=seed, temperature=temperature,
                                  calibration=calibration, n_layers=n_layers, null=null, null_seed=seed)


def run_plan(model: torch.nn.Module, plan: ProbePlan, acc: Any, batch_indices: Sequence[int] | None = None,
             progress: bool = True, device: str | torch.device = "cpu", desc: str = "probe",
             all_layers_update: bool = False) -> float:
    """Forward the plan's batches (all, or ``batch_indices``) with hooks feeding ``acc``; returns seconds.

    ``all_layers_update=False``: every hook calls ``acc.update(z [N, d], labels, layer=l)`` and drops
    ``z`` (memory: one hidden state). ``True``: hooks copy ``z`` into an ``[L, N, d]`` buffer and the last
    hook makes one ``acc.update`` for all layers (about 2x less accumulator time; memory: L hidden states
    of the batch's valid positions).
    """
    from tqdm.auto import tqdm

    sites = find_hidden_sites(model)
    n_hidden = len(sites)
    state: dict[str, Any] = {"prepared": None, "buf": None}

    def sink(layer: int, z: torch.Tensor) -> None:
        acc.update(z, state["prepared"], layer=layer)

    def buffered_sink(layer: int, z: torch.Tensor) -> None:
        buf = state["buf"]
        if buf is None or buf.shape[1:] != z.shape or buf.dtype != z.dtype or buf.device != z.device:
            buf = state["buf"] = torch.empty((n_hidden, *z.shape), dtype=z.dtype, device=z.device)
        buf[layer].copy_(z)
        if layer == n_hidden - 1:
            acc.update(buf, state["prepared"])

    idx = list(range(len(plan.batches))) if batch_indices is None else list(batch_indices)
    t0 = time.perf_counter()
    cap = HiddenStateCapture(model, buffered_sink if all_layers_update else sink, sites)
    with cap:
        for i in tqdm(idx, desc=desc, disable=not progress, unit="batch"):
            b = plan.batches[i]
            state["prepared"] = acc.prepare_labels(b.labels)
            cap.set_positions(b.positions)
            forward_batch(model, b.input_ids.to(device), b.attention_mask.to(device),
                          None if b.position_ids is None else b.position_ids.to(device))
            if len(cap.fired) != cap.n_hidden:
                raise RuntimeError(f"only hidden states {cap.fired} of {cap.n_hidden} fired in a forward")
    return time.perf_counter() - t0


def _result_rows(result: Any, model_name: str, step: int | None) -> list[dict[str, Any]]:
    rows = []
    for rec in result.to_records():
        kind, n = parse_label_set(str(rec.get("label_set", "")))
        row = {"model": model_name, "step": step, "layer": int(rec["layer"]), "label_set": rec["label_set"],
               "kind": kind if rec.get("label_set") else "", "n": n}
        for k, v in rec.items():
            if k not in row:
                row[k] = v.item() if hasattr(v, "item") else v
        rows.append(row)
    return rows


def model_context_length(model: torch.nn.Module) -> int | None:
    """The longest input the model accepts (HF ``max_position_embeddings``/``n_positions``, native
    ``block_size``), or None when the model declares no limit."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "block_size"):
        value = getattr(config, key, None) if config is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def analyze(
    model: str | os.PathLike | torch.nn.Module | LoadedModel,
    corpus: Any = "kjv",
    tokenizer: Any = None,
    orders: Sequence[int] = (1, 2, 3),
    max_tokens: int | None = 4096,
    seq_len: int = 128,
    batch_size: int = 8,
    n_bins: int = 100,
    seed: int = 0,
    null: bool = True,
    sequence_labels: Sequence[str] | Mapping[str, Sequence[Any]] | str | None = None,
    progress: bool = True,
    *,
    temperature: float | None = None,
    calibration: str = "exact",
    model_name: str | None = None,
    step: int | None = None,
    padding_side: str = "right",
    device: str | torch.device = "cpu",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    out_dir: str | os.PathLike | None = None,
    shard: tuple[int, int] | None = None,
    group: Any = None,
    all_layers_update: bool = False,
    min_count: int = 1,
) -> ProbeResult:
    """Soft entropy H(Z), I(X_n; Z), I(Z; Y_n) and per-sequence-label MI of every hidden state of ``model``.

    Args:
        model: a path (HF directory, ``.gguf`` file, native checkpoint), ``"smollm2"``, an ``nn.Module``
            (then pass ``tokenizer`` unless ``corpus`` holds token ids) or a :class:`LoadedModel`.
        corpus: see :func:`prepare_plan` (texts, a corpus name/path, token ids or an ``input_ids`` mapping).
        orders: n-gram orders (default uni- to trigram; the paper goes to 4).
        max_tokens: analysed positions per layer (N); None uses every text.
        seq_len, batch_size: truncation length and texts per forward pass.
        n_bins: number of reference points m; seed: reference points and text sample; null: also compute the
            permutation-null MI of every label set (bias estimate, one extra label set per set).
        sequence_labels: per-text label fields (e.g. ``["book"]``) broadcast to all positions of the text.
        temperature / calibration: soft-assignment temperature (default: exact KL calibration for (m, d)).
        model_name, step: values of the ``model`` and ``step`` columns (default: file name / known step).
        out_dir: if given, results are written there (``probe.csv``, ``probe_plane.csv``, ``probe.json``).
        shard, group: ``(rank, world_size)`` -> this process forwards every ``world_size``-th batch and the
            accumulators are summed across ``group`` (see :mod:`infoplane.probe.distributed`).
        all_layers_update: buffer the batch's L hidden states (selected positions only) and update all
            layers at once: faster accumulation, more memory (see :func:`run_plan`).
        min_count: pool n-gram labels seen fewer than this many times into one rare label per set
            (default 1: no pooling, exact singletons). A bias-reduction option that lowers MI.
    Returns:
        :class:`ProbeResult` (values normalised by log m, as in the paper).
    """
    t_start = time.perf_counter()
    loaded = model if isinstance(model, LoadedModel) else load_model(
        model, tokenizer, gguf_file=gguf_file, trust_remote_code=trust_remote_code, device=device)
    tok = tokenizer if tokenizer is not None else loaded.tokenizer
    net = loaded.model
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device(device)  # inputs follow the model
    if padding_side == "left" and not _accepts(net.forward, "attention_mask"):
        raise ValueError(f"{type(net).__name__}.forward takes no attention_mask: only right padding is valid")
    pad_id = 0
    if tok is not None and getattr(tok, "pad_token_id", None) is not None:
        pad_id = int(tok.pad_token_id)
    context = model_context_length(net)
    if context is not None and seq_len > context:  # never feed a model more positions than it was built for
        warnings.warn(f"seq_len={seq_len} exceeds the model's context length {context}; using {context}",
                      stacklevel=2)
        seq_len = context
    plan = prepare_plan(corpus, tok, orders, max_tokens, seq_len, batch_size, seed, sequence_labels,
                        padding_side, pad_id, loaded.tokenizer_error, min_count)
    sites = find_hidden_sites(net)
    dims = hidden_dims(net, sites, device)
    if len(set(dims)) != 1:
        raise ValueError(f"hidden states have different widths {sorted(set(dims))}; "
                         "one accumulator needs one d")
    acc = _make_accumulator(dims[0], len(dims), n_bins, seed, temperature, calibration, null)
    indices = None
    if shard is not None:
        from infoplane.probe.distributed import shard_indices

        indices = shard_indices(len(plan.batches), *shard)
    name = model_name or _default_name(loaded)
    step = step if step is not None else loaded.step
    seconds = run_plan(net, plan, acc, indices, progress, device, desc=name,
                       all_layers_update=all_layers_update)
    if shard is not None:
        acc.sync(group)
    result = acc.compute()
    rows = _result_rows(result, name, step)
    metadata = {
        "model": name, "model_id": loaded.model_id, "model_kind": loaded.kind,
        "weights_sha256": loaded.weights_sha256, "step": step,
        "corpus_source": plan.corpus_source, "corpus_fingerprint": plan.corpus_fingerprint,
        "n_texts": plan.n_texts, "tokens_forwarded": plan.tokens_forwarded, "n_samples": plan.n_samples,
        "orders": list(plan.orders), "sequence_labels": plan.sequence_labels, "label_stats": plan.label_stats,
        "seq_len": seq_len, "batch_size": batch_size, "max_tokens": max_tokens, "padding_side": padding_side,
        "seed": seed, "n_bins": int(result.n_bins), "temperature": float(result.temperature),
        "calibration": calibration if temperature is None else "given",
        "reference_hash": result.reference_hash,
        "hidden_dim": dims[0], "n_hidden_states": len(dims), "hidden_sites": [s.name for s in sites],
        "null": null, "min_count": min_count, "shard": list(shard) if shard else None,
        "all_layers_update": all_layers_update,
        "forward_seconds": round(seconds, 3), "total_seconds": round(time.perf_counter() - t_start, 3),
        "versions": versions(),
    }
    res = ProbeResult(rows, plane_table(rows), metadata)
    if out_dir is not None:
        res.save(out_dir)
    return res


def _default_name(loaded: LoadedModel) -> str:
    if loaded.kind == "module":
        return loaded.model_id
    p = Path(loaded.model_id)
    name = p.name
    for suffix in (".gguf",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name
