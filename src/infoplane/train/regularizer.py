"""MBE penalty over chosen layers (the compression term of GAPT).

Relaxed IBLM objective (Yu 2025, arXiv:2505.08727; reference code mod_gpt ``src/gapt.py``):
``L = L_CE + lambda * mean_{l in S} MBE_l`` with ``MBE_l`` the patch MBE (mod_gpt ``src/mbe.py``) of block
``l``'s output. Layer choice (mod_gpt ``mbe_schedule``): reference schedule ``rotate`` with
``skip_first = skip_last = 1`` (one middle layer per optimiser step, cycling), or the masked mean over the
middle layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from infoplane.estimators.matrix import patch_matrix_entropy

__all__ = ["mbe_penalty", "LayerSchedule", "resolve_layers"]

_MODES = ("middle", "rotate", "all")


def _middle(n_layers: int, skip_first: int, skip_last: int) -> list[int]:
    return list(range(skip_first, n_layers - skip_last))


def resolve_layers(
    n_layers: int, layers: Sequence[int] | str, skip_first: int = 1, skip_last: int = 1
) -> list[int]:
    """Turn ``"all"``, ``"middle"`` or an explicit list into layer indices in ``[0, n_layers)`` (order kept).

    ``"middle"`` = ``skip_first ... n_layers - 1 - skip_last``. Negative indices count from the end.
    Raises ``ValueError`` for an empty selection or out-of-range / duplicate indices.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    if isinstance(layers, str):
        if layers == "all":
            return list(range(n_layers))
        if layers == "middle":
            for name, v in (("skip_first", skip_first), ("skip_last", skip_last)):
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{name} must be an int >= 0, got {v!r}")
            out = _middle(n_layers, skip_first, skip_last)
            if not out:
                raise ValueError(
                    f"'middle' with skip_first={skip_first}, skip_last={skip_last} selects no layer of "
                    f"{n_layers}; use layers='all' or smaller skips"
                )
            return out
        raise ValueError(f"layers must be 'all', 'middle' or a list of ints, got {layers!r}")
    try:
        raw = list(layers)
    except TypeError as exc:
        raise ValueError(f"layers must be 'all', 'middle' or a list of ints, got {layers!r}") from exc
    if not raw:
        raise ValueError("layers list is empty")
    out = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"layer indices must be ints, got {v!r}")
        if not -n_layers <= v < n_layers:
            raise ValueError(f"layer index {v} out of range for {n_layers} layers")
        out.append(v % n_layers)
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate layer indices in {raw!r}")
    return out


class LayerSchedule:
    """Which layers carry the MBE penalty at a given optimiser step.

    Args:
        n_layers: number of blocks ``L``.
        mode: ``"middle"`` (all of ``skip_first ... L-1-skip_last`` every step), ``"rotate"`` (one of
            those per step, cycling in order: step ``k`` -> ``middle[k % len(middle)]``; paper-era
            reference), ``"all"``,
            or an explicit list of layer indices (used every step).
        skip_first, skip_last: layers excluded at each end for ``"middle"`` / ``"rotate"`` (reference: 1, 1).
    """

    def __init__(
        self, n_layers: int, mode: str | Sequence[int] = "middle", skip_first: int = 1, skip_last: int = 1
    ) -> None:
        if isinstance(mode, str) and mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES} or a list of layer indices, got {mode!r}")
        self.n_layers = n_layers
        self.mode = mode if isinstance(mode, str) else "list"
        self.skip_first = skip_first
        self.skip_last = skip_last
        base = "middle" if mode == "rotate" else mode
        self.candidates: list[int] = resolve_layers(n_layers, base, skip_first, skip_last)

    def layers(self, step: int) -> list[int]:
        """Layer indices for optimiser step ``step`` (int >= 0)."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        if self.mode == "rotate":
            return [self.candidates[step % len(self.candidates)]]  # one middle layer per step, cycling
        return list(self.candidates)

    def __repr__(self) -> str:
        return f"LayerSchedule(n_layers={self.n_layers}, mode={self.mode!r}, candidates={self.candidates})"


def mbe_penalty(
    hidden_states: Sequence[torch.Tensor],
    layers: Sequence[int] | str = "middle",
    patch_size: int = 8,
    remainder: str = "drop_start",
    centered: bool = False,
) -> tuple[torch.Tensor, dict[int, float]]:
    """Mean patch MBE over the selected layers.

    Args:
        hidden_states: list of ``L`` tensors ``[B, T, D]`` (block outputs, before the final norm).
        layers: explicit indices, ``"middle"`` (skip first and last block) or ``"all"``.
        patch_size, remainder, centered: see :func:`infoplane.estimators.patch_matrix_entropy`
            (default ``remainder="drop_start"``: the last ``floor(T/p) p`` tokens, as the reference).

    Returns:
        ``(penalty, per_layer)``: ``penalty`` a differentiable 0-d tensor (nats) = mean over selected
        layers of the patch MBE (mod_gpt ``mbe_comp_mode='naive'`` masked mean);
        ``per_layer`` maps layer -> detached float value.
    """
    if isinstance(hidden_states, torch.Tensor) or not isinstance(hidden_states, Sequence):
        raise ValueError("hidden_states must be a list of [B, T, D] tensors (one per block)")
    if len(hidden_states) == 0:
        raise ValueError("hidden_states is empty")
    idx = resolve_layers(len(hidden_states), layers)
    values = [
        patch_matrix_entropy(hidden_states[i], patch_size=patch_size, remainder=remainder, centered=centered)
        for i in idx
    ]
    penalty = torch.stack(values).mean()  # naive masked mean over layers (mod_gpt mbe_comp_mode='naive')
    detached = torch.stack([v.detach() for v in values]).cpu().tolist()  # one host transfer
    return penalty, {i: float(v) for i, v in zip(idx, detached)}
