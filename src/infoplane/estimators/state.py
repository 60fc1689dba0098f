"""State-dict format of the streaming soft-entropy accumulator and its validation at load time.

A state dict holds plain CPU tensors and Python scalars (``torch.load(weights_only=True)`` loads it).
:func:`check_state` rejects, before anything is changed, a dict of another format or settings, missing
keys, wrong shapes or dtypes, negative or non-finite statistics, and counts that do not add up (the
samples of every layer must equal the label rows' counts plus the singletons, and the assignment mass
must equal the sample count: every ``p_i`` sums to 1, soft-entropy, accumulator.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["FORMAT", "check_state", "check_mergeable"]

FORMAT = "infoplane.SoftEntropyAccumulator/1"

_TOP_KEYS = ("format", "dim", "n_bins", "n_layers", "temperature", "reference_hash", "null", "null_seed",
             "label_names", "n_samples", "counts", "sample_entropy", "label_sets")
_SET_KEYS = ("keys", "singleton_sums", "sums", "row_n", "neg_n", "neg_sent", "null_neg_sent")
_MASS_RTOL = 1e-6  # float64 sums of probability rows: far tighter in practice


def _tensor(x: Any, where: str, shape: tuple[int, ...], integer: bool = False) -> torch.Tensor:
    """``x`` as a tensor of ``shape`` (a ``-1`` entry matches any size), finite and >= 0."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"state dict {where} must be a tensor of shape {shape}, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s != -1 and s != a for s, a in zip(shape, x.shape)):
        raise ValueError(f"state dict {where} must have shape {shape} (-1: any), got {tuple(x.shape)}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise ValueError(f"state dict {where} must be an integer tensor, got dtype {x.dtype}")
    if not integer and not x.is_floating_point():
        raise ValueError(f"state dict {where} must be a floating-point tensor, got dtype {x.dtype}")
    if not integer and not bool(torch.isfinite(x).all()):
        raise ValueError(f"state dict {where} has non-finite values (NaN or Inf)")
    if x.numel() and bool((x < 0).any()):
        raise ValueError(f"state dict {where} has negative values (counts and sums are >= 0)")
    return x


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a - b).abs() <= _MASS_RTOL * b.abs().clamp_min(1.0)).all())


def check_mergeable(mine: dict[str, Any], theirs: dict[str, Any], t_mine: float, t_theirs: float) -> None:
    """Two accumulators' ``settings`` (as in :func:`check_state`) and temperatures must agree for a merge;
    raises ``ValueError`` naming the first difference."""
    for attr in mine:
        if mine[attr] != theirs[attr]:
            raise ValueError(
                f"cannot merge: {attr} differs (this accumulator: {mine[attr]!r}, other: {theirs[attr]!r})"
            )
    if not math.isclose(t_mine, t_theirs, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"cannot merge: temperature differs (this: {t_mine!r}, other: {t_theirs!r})")


def check_state(state: Any, settings: dict[str, Any], temperature: float) -> None:
    """Validate ``state`` against an accumulator's ``settings`` (dim, n_bins, n_layers, reference_hash,
    null, null_seed) and ``temperature``; raises ``ValueError`` naming the first problem."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"expected a state dict with format {FORMAT!r}, got {type(state).__name__} "
                         f"with format {state.get('format') if isinstance(state, dict) else None!r}")
    missing = [k for k in _TOP_KEYS if k not in state]
    if missing:
        raise ValueError(f"state dict is missing keys {missing} (expected {list(_TOP_KEYS)})")
    for attr, want in settings.items():
        if state[attr] != want:
            raise ValueError(
                f"state dict {attr}={state[attr]!r} does not match this accumulator's {attr}={want!r}"
            )
    t = state["temperature"]
    if not isinstance(t, (int, float)) or not math.isclose(float(t), temperature, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"state dict temperature={t!r} does not match {temperature!r}")
    L, m = settings["n_layers"], settings["n_bins"]
    n = _tensor(state["n_samples"], "n_samples", (L,), integer=True)
    counts = _tensor(state["counts"], "counts", (L, m))
    _tensor(state["sample_entropy"], "sample_entropy", (L,))
    if "n_skipped_zero" in state:
        _tensor(state["n_skipped_zero"], "n_skipped_zero", (L,), integer=True)
    names = state["label_names"]
    if names is not None and (
        not isinstance(names, (list, tuple)) or not all(isinstance(x, str) for x in names)
    ):
        raise ValueError(f"state dict label_names must be None or a list of strings, got {names!r}")
    sets = state["label_sets"]
    if not isinstance(sets, dict) or set(sets) != set(names or ()):
        got = sorted(sets) if isinstance(sets, dict) else type(sets).__name__
        raise ValueError(
            f"state dict label_sets must have one entry per label name {list(names or ())}, got {got}"
        )
    nf = n.to(torch.float64)
    if not names and not _close(counts.sum(-1), nf):
        raise ValueError("state dict counts do not add up to n_samples per layer (tampered or corrupt state)")
    for name, e in sets.items():
        where = f"label_sets[{name!r}]"
        if not isinstance(e, dict) or any(k not in e for k in _SET_KEYS):
            have = sorted(e) if isinstance(e, dict) else type(e).__name__
            raise ValueError(f"state dict {where} must have keys {list(_SET_KEYS)}, got {have}")
        keys = e["keys"]
        if not isinstance(keys, torch.Tensor) or keys.dim() != 1:
            raise ValueError(f"state dict {where}['keys'] must be a 1-D integer tensor")
        k = keys.numel()
        _tensor(keys, f"{where}['keys']", (k,), integer=True)
        sums = _tensor(e["sums"], f"{where}['sums']", (k, L, m))
        single = _tensor(e["singleton_sums"], f"{where}['singleton_sums']", (L, m))
        row_n = _tensor(e["row_n"], f"{where}['row_n']", (k, L))
        neg_n = _tensor(e["neg_n"], f"{where}['neg_n']", (L,))
        for key in ("neg_sent", "null_neg_sent"):
            _tensor(e[key], f"{where}[{key!r}]", (L,))
        if settings["null"]:
            if "null_sums" not in e:
                raise ValueError(f"state dict {where} is missing 'null_sums' (the accumulator tracks a null)")
            _tensor(e["null_sums"], f"{where}['null_sums']", (k, L, m))
        if not torch.equal(row_n.sum(0) + neg_n, nf):
            raise ValueError(f"state dict {where} row counts plus singletons do not equal n_samples per "
                             "layer (tampered or corrupt state)")
        if not _close(sums.sum((0, 2)) + single.sum(-1), nf):
            raise ValueError(f"state dict {where} assignment mass does not equal n_samples per layer "
                             "(tampered or corrupt state)")
