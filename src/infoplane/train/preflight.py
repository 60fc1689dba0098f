"""Checks a training run makes before expensive work: memory, token ids, and whether a resume can be honoured.

- :func:`check_memory`: a lower-bound estimate of the bytes one training step needs (weights, gradients,
  AdamW moments, activations kept for backward, logits) against the machine's physical memory, so a
  ``--block-size`` far beyond what fits is refused before the data is prepared.
- :func:`check_token_range`: every token id of the training and validation streams is inside the model's
  vocabulary (an embedding lookup would otherwise fail with an IndexError mid-run).
- :func:`data_fingerprint` / :func:`resume_differences`: what a checkpoint records about its run (corpus
  fingerprint, a hash of the token streams and of the tokenizer, every setting) and the settings or data
  that differ now, which a resumed run cannot honour.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["RESUMABLE", "check_memory", "estimate_train_bytes", "physical_memory_bytes", "check_token_range",
           "data_fingerprint", "resume_differences", "ADDED_FIELDS"]

# TrainConfig fields a resumed run may change: they decide how long, how often to measure and to save,
# and where output goes, never what one optimiser step computes (steps also moves the cosine schedule's end,
# which the trainer warns about)
# (device too: the same step on another device differs only by rounding)
RESUMABLE = frozenset({"steps", "eval_every", "align_every", "checkpoint_steps", "progress", "tensorboard",
                       "num_threads", "max_nonfinite", "out_dir", "device"})
# TrainConfig fields added after runs were saved without them, with the value those runs used: a saved run
# that lacks the key resumes when the current value is this one
ADDED_FIELDS: dict[str, Any] = {"device": "cpu", "precision": "fp32", "val_corpus": None}

_F32 = 4  # bytes per float32 value


def estimate_train_bytes(cfg: Any, vocab_size: int, world_size: int = 1) -> dict[str, int]:
    """Lower-bound bytes of one training step of ``cfg`` (a TrainConfig) on one process.

    Returns ``{"state", "activations", "total"}``: state = weights, gradients and the two AdamW moments
    (4 float32 copies of every parameter); activations = per block the [b, T, D] tensors kept for
    backward (residual, norms, q/k/v, attention output, MLP in/out: about 8 + 2 x mlp_ratio per position)
    plus the logits, their log-softmax and gradient ([b, T, V] x 3), with b the micro-batch. The T x T
    attention matrix is not counted (PyTorch's fused attention may avoid it), so the true need is higher.
    """
    m = cfg.model
    d, t, v, r = m.d_model, m.block_size, vocab_size, float(m.mlp_ratio)
    # GPT-2 block parameter count (Radford et al. 2019): attention 4 D^2, MLP 2 r D^2, norms 2 D
    per_block = int(4 * d * d + 2 * r * d * d + 2 * d)
    params = v * d + m.n_layer * per_block + d + (t * d if m.pos_encoding == "learned" else 0)
    if not m.tie_weights:
        params += v * d
    micro = max(cfg.batch_size // max(world_size * cfg.grad_accum, 1), 1)
    acts = m.n_layer * micro * t * d * (8 + 2 * r) + 3 * micro * t * v
    state = 4 * params * _F32
    activations = int(acts * _F32)
    return {"state": state, "activations": activations, "total": state + activations}


def physical_memory_bytes() -> int | None:
    """Total physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(cfg: Any, vocab_size: int, world_size: int = 1, available: int | None = None) -> None:
    """Raise ValueError when even the lower-bound estimate of :func:`estimate_train_bytes` exceeds the
    machine's memory (``available`` bytes; default: physical memory), naming the flags to change."""
    available = physical_memory_bytes() if available is None else available
    if not available:
        return
    need = estimate_train_bytes(cfg, vocab_size, world_size)
    if need["total"] > available:
        m = cfg.model
        raise ValueError(
            f"model.block_size (--block-size) {m.block_size} with batch_size (--batch-size) "
            f"{cfg.batch_size}, d_model {m.d_model}, {m.n_layer} layers and a vocabulary of {vocab_size}: "
            f"one training step needs at least {_gib(need['total'])} (weights, gradients and AdamW state "
            f"{_gib(need['state'])}, "
            f"activations {_gib(need['activations'])}) but this machine has {_gib(available)}; lower "
            "--block-size or --batch-size (or raise --grad-accum)")


def check_token_range(train: torch.Tensor, val: torch.Tensor, vocab_size: int) -> None:
    """Raise ValueError when a token id of the streams (1-D int64) lies outside ``0..vocab_size-1``."""
    for name, ids in (("training", train), ("validation", val)):
        if ids.numel() == 0:
            continue
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(
                f"the {name} tokens hold ids {lo}..{hi} but the model's vocabulary has {vocab_size} ids "
                f"(0..{vocab_size - 1}): the tokenizer and vocab_size disagree")


def data_fingerprint(splits: Any, tokenizer: Any) -> dict[str, Any]:
    """What a checkpoint records about its data: the corpus fingerprint, the SHA-256 of the training and
    validation token streams (catches a changed corpus file or tokenizer), their lengths, and the SHA-256 of
    the tokenizer's serialisation (None when it has no ``to_str()``). For token shards
    (:class:`~infoplane.data.lm_data.ShardSplits`) the streams are not read: ``tokens_sha256`` hashes every
    file's name, size and first and last 64 KiB (:func:`~infoplane.data.shards.shards_fingerprint`)."""
    tok = None
    if tokenizer is not None and hasattr(tokenizer, "to_str"):
        tok = hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()
    if isinstance(splits.fingerprint, dict):  # token shards
        fp = splits.fingerprint
        h = hashlib.sha256(json.dumps(fp, sort_keys=True).encode("utf-8"))
        return {"corpus": None, "tokens_sha256": h.hexdigest(), "n_train_tokens": fp["train"]["n_tokens"],
                "n_val_tokens": fp["val"]["n_tokens"] if fp.get("val") else 0, "tokenizer_sha256": tok}
    h = hashlib.sha256()
    for ids in (splits.train, splits.val):
        h.update(ids.to(torch.int64).contiguous().numpy().tobytes())
        h.update(b"|")
    return {"corpus": getattr(splits, "fingerprint", "") or None, "tokens_sha256": h.hexdigest(),
            "n_train_tokens": int(splits.train.numel()), "n_val_tokens": int(splits.val.numel()),
            "tokenizer_sha256": tok}


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 24 else text[:21] + "..."


def resume_differences(saved: Mapping[str, Any] | None, now: Mapping[str, Any],
                       skip: frozenset[str] = RESUMABLE) -> list[str]:
    """``["lr: saved 0.003, now 0.001", ...]`` for every (dotted) key whose value differs between the
    saved and the current settings, ignoring the top-level keys in ``skip`` and keys absent on one side
    only when the other side's value is None (a field added later with its default)."""
    if not saved:
        return []
    a = _flat(json.loads(json.dumps(saved, default=str)))
    b = _flat(json.loads(json.dumps(now, default=str)))
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.split(".", 1)[0] in skip:
            continue
        if key not in a and key in ADDED_FIELDS and skip is RESUMABLE and b.get(key) == ADDED_FIELDS[key]:
            continue
        va, vb = a.get(key), b.get(key)
        if va != vb:
            diffs.append(f"{key}: saved {_short(va)}, now {_short(vb)}")
    return diffs
