"""Shared input checks for the estimators.

Every check raises ``ValueError`` with a message that states what was expected and what arrived.
Pure functions; safe to import from any estimator module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_n_bins",
    "check_dim",
    "check_temperature",
    "MIN_TEMPERATURE",
    "as_float_tensor",
    "as_layered",
    "check_finite_nonzero",
    "row_norms",
    "as_label_tensor",
    "check_reference_points",
    "labels_as_dict",
    "check_accumulator_options",
    "ZERO_POLICIES",
]

ZERO_POLICIES = ("error", "skip")  # what a streaming estimator does with an exact zero vector


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_n_bins(n_bins: Any) -> int:
    """Number of reference points: an int >= 2."""
    if not _is_int(n_bins) or int(n_bins) < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    return int(n_bins)


def check_dim(dim: Any, name: str = "dim") -> int:
    """Representation dimension: an int >= 2 (the sphere S^{d-1} needs d >= 2)."""
    if not _is_int(dim) or int(dim) < 2:
        raise ValueError(f"{name} must be an integer >= 2, got {dim!r}")
    return int(dim)


def check_accumulator_options(cpu_threads: Any, n_layers: Any, zero_policy: Any
                              ) -> tuple[int | None, int, str]:
    """``(cpu_threads, n_layers, zero_policy)`` of a streaming accumulator: None or an int >= 1, an int
    >= 1, one of :data:`ZERO_POLICIES`."""
    if cpu_threads is not None and (not isinstance(cpu_threads, int) or cpu_threads < 1):
        raise ValueError(f"cpu_threads must be None or an integer >= 1, got {cpu_threads!r}")
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers must be an integer >= 1, got {n_layers!r}")
    if zero_policy not in ZERO_POLICIES:
        raise ValueError(f"zero_policy must be one of {ZERO_POLICIES}, got {zero_policy!r}")
    return cpu_threads, int(n_layers), zero_policy


# The shifted logits cos/eps - max_j cos/eps carry a rounding residual of up to ulp(1/eps) (fused multiply-
# add), and exp() of it overflows float32 below eps ~ 1e-9 (NaN results); at 1e-8 the residual is < 4 and the
# assignment is already a hard argmax (neighbouring cosines 1e-6 apart differ by 100 in logit).
MIN_TEMPERATURE = 1e-8


def check_temperature(temperature: Any) -> float:
    """Temperature: a finite float in ``[MIN_TEMPERATURE, inf)``."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a positive finite float, got {temperature!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive finite float, got {temperature!r}")
    if t < MIN_TEMPERATURE:
        raise ValueError(
            f"temperature must be >= {MIN_TEMPERATURE:g} (below it the softmax of cos / temperature "
            f"overflows in float32 and the assignment is already a hard argmax), got {temperature!r}"
        )
    return t


def as_float_tensor(z: Any, name: str = "z") -> torch.Tensor:
    """Accept a torch tensor or array-like of floats; reject integer/bool/complex data."""
    if not isinstance(z, torch.Tensor):
        arr = np.asarray(z)
        if arr.dtype.kind != "f":
            raise ValueError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
        z = torch.from_numpy(np.ascontiguousarray(arr))
    if not torch.is_floating_point(z):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    return z


def as_layered(z: torch.Tensor, layer: Any, n_layers: int, dim: int) -> tuple[torch.Tensor, int | None]:
    """``z [N, d]`` (with ``layer``, optional when ``n_layers == 1``) or ``[L, N, d]`` -> (``[Lb, N, d]``,
    the layer of a 2-D ``z`` or ``None``), checking shapes, the layer index and ``N >= 1``."""
    if z.dim() == 2:
        if layer is None:
            if n_layers != 1:
                raise ValueError(
                    f"z is [N, d] but the accumulator tracks n_layers={n_layers}: pass layer=l "
                    f"(0 <= l < {n_layers}) or z as [L={n_layers}, N, d]"
                )
            layer = 0
        if not _is_int(layer) or not (0 <= layer < n_layers):
            raise ValueError(f"layer must be an integer in [0, {n_layers}), got {layer!r}")
        layer = int(layer)
        z3 = z.unsqueeze(0)
    elif z.dim() == 3:
        if layer is not None:
            raise ValueError(f"layer must be None when z is [L, N, d]; got layer={layer!r}")
        if z.shape[0] != n_layers:
            raise ValueError(f"z is [L, N, d] with L={z.shape[0]}, expected L=n_layers={n_layers}")
        z3 = z
    else:
        raise ValueError(f"z must be [N, d] or [L, N, d], got shape {tuple(z.shape)}")
    if z3.shape[2] != dim:
        raise ValueError(f"z must have d={dim} features (last axis), got d={z3.shape[2]}")
    if z3.shape[1] == 0:
        raise ValueError("z is an empty batch (N=0); expected at least one sample")
    return z3, layer


def row_norms(z: torch.Tensor) -> torch.Tensor:
    """L2 norms over the last axis, computed in at least float32 (shape ``z.shape[:-1]``)."""
    dt = torch.promote_types(z.dtype, torch.float32)
    return torch.linalg.vector_norm(z, dim=-1, dtype=dt)


def check_finite_nonzero(norms: torch.Tensor, z: torch.Tensor, name: str = "z") -> None:
    """Raise if any row of ``z`` (with precomputed ``norms``) is non-finite or the zero vector.

    One device synchronisation in the good case (a single boolean reduction).
    """
    bad = ~(torch.isfinite(norms) & (norms > 0))
    if bool(bad.any()):
        if not bool(torch.isfinite(z).all()):
            n_bad = int((~torch.isfinite(z)).sum())
            raise ValueError(f"{name} must be finite; got {n_bad} NaN/Inf entries")
        if not bool(torch.isfinite(norms).all()):
            raise ValueError(f"{name} row norms overflow (values too large for {z.dtype}); rescale the input")
        zero = (z == 0).all(-1)
        if not bool(zero.any()):  # nonzero rows whose norm underflowed in the compute dtype
            raise ValueError(
                f"{name} rows too small to normalise in {norms.dtype} (norm underflows to 0, the vectors "
                f"are not zero) at positions {_first_positions(norms == 0)}; rescale {name}"
            )
        raise ValueError(
            f"{name} rows must have nonzero norm (direction is undefined); got {int(zero.sum())} zero "
            f"vector(s) at positions {_first_positions(zero)}"
        )


def _first_positions(mask: torch.Tensor, limit: int = 8) -> str:
    """Indices of the first ``limit`` True entries of ``mask`` (tuples for more than one axis)."""
    idx = mask.nonzero().tolist()
    shown = ", ".join(str(tuple(i)) if len(i) > 1 else str(i[0]) for i in idx[:limit])
    return shown + (f", ... ({len(idx) - limit} more)" if len(idx) > limit else "")


def as_label_tensor(labels: Any, n: int, name: str = "labels") -> torch.Tensor:
    """Labels as a 1-D int64 CPU tensor of length ``n``; floats/bools/other shapes are rejected."""
    if isinstance(labels, torch.Tensor):
        t = labels
        if t.dtype in (torch.bool,) or torch.is_floating_point(t) or torch.is_complex(t):
            raise ValueError(f"{name} must be an integer array, got dtype {t.dtype}")
        t = t.detach().to("cpu", torch.int64)
    else:
        arr = np.asarray(labels)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name} values must fit in int64")
        t = torch.from_numpy(np.ascontiguousarray(arr.astype(np.int64, copy=False)))
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D with one label per sample [N={n}], got shape {tuple(t.shape)}")
    if t.shape[0] != n:
        raise ValueError(f"{name} must have length N={n} (one per sample), got length {t.shape[0]}")
    return t


def check_reference_points(w: Any, dim: int | None = None) -> torch.Tensor:
    """Reference points ``[m, d]``: finite, nonzero rows, m >= 2; returned as float64 CPU unit rows."""
    w = as_float_tensor(w, "reference_points")
    if w.dim() != 2:
        raise ValueError(f"reference_points must be 2-D [m, d], got shape {tuple(w.shape)}")
    check_n_bins(w.shape[0])
    check_dim(w.shape[1], "reference_points dim")
    if dim is not None and w.shape[1] != dim:
        raise ValueError(f"reference_points must have d={dim} columns, got {w.shape[1]}")
    w = w.detach().to("cpu", torch.float64)
    norms = torch.linalg.vector_norm(w, dim=-1)
    check_finite_nonzero(norms, w, "reference_points")
    if bool(((norms - 1.0).abs() <= 1e-12).all()):
        return w.clone()  # already unit rows: keep the exact bits (the reference hash depends on them)
    return w / norms[:, None]


def labels_as_dict(labels: Any) -> dict[str, Any]:
    """Normalise ``labels`` (one array or a dict of arrays) to a dict keyed by set name (``"labels"``)."""
    if isinstance(labels, dict):
        for k in labels:
            if not isinstance(k, str) or not k:
                raise ValueError(f"label set names must be non-empty strings, got {k!r}")
        return dict(labels)
    return {"labels": labels}
