"""Differentiable single-batch soft entropy and soft mutual information (functional torch API).

Estimator (soft-entropy, accumulator.py): directions ``zbar = z / ||z||``; soft assignment
``p_i = softmax(zbar_i W^T / eps)`` over ``m`` reference points; ``H(Z) = H(mean_i p_i)``;
``I(X;Z) = H(Z) - sum_x (n_x/N) H(mean_{i: x_i = x} p_i)``. All values are divided by ``log m``
(efficiency-normalised, in [0, 1]). Gradients flow through everything, so the values can be used as
losses. Computation follows ``z.device``; ``W`` is moved there; the softmax runs in float32 at least
(float64 for float64 input).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .calibration import calibrate_temperature
from .reference import reference_points as _reference_points
from .validation import (
    MIN_TEMPERATURE,
    as_float_tensor,
    as_label_tensor,
    check_dim,
    check_finite_nonzero,
    check_n_bins,
    check_reference_points,
    check_temperature,
    row_norms,
)

__all__ = ["soft_assign", "soft_entropy", "soft_mutual_information", "resolve_reference_and_temperature"]


def resolve_reference_and_temperature(
    dim: int,
    n_bins: int,
    seed: int,
    temperature: float | None,
    calibration: str,
    reference_points: Any = None,
) -> tuple[torch.Tensor, float]:
    """Reference points ``W [m, d]`` (float64 CPU, unit rows) and temperature for the given settings.

    A user-supplied ``reference_points`` overrides ``n_bins``/``seed`` (m is taken from its rows);
    ``temperature=None`` calibrates with ``calibration`` for (m, d).
    """
    dim = check_dim(dim)
    if reference_points is not None:
        w = check_reference_points(reference_points, dim)
    else:
        w = _reference_points(check_n_bins(n_bins), dim, seed)
    if temperature is None:
        t = calibrate_temperature(int(w.shape[0]), dim, calibration)
        if t < MIN_TEMPERATURE:
            raise ValueError(f"the calibrated temperature {t:.3g} for m={int(w.shape[0])}, d={dim} is below "
                             f"{MIN_TEMPERATURE:g}, where the soft assignment is numerically a hard argmax; "
                             "use fewer reference points or pass a temperature")
    else:
        t = check_temperature(temperature)
    return w, t


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def soft_assign(z: torch.Tensor, w: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft bin assignment ``p [..., N, m]`` of rows of ``z [..., N, d]`` to reference points ``w [m, d]``.

    ``p = softmax((z / ||z||) w^T / temperature)`` (soft-entropy, accumulator.py), computed on ``z.device``
    in float32 (float64 if ``z`` is float64). Raises ``ValueError`` on non-finite or zero rows.
    """
    z = as_float_tensor(z)
    if z.dim() < 2:
        raise ValueError(f"z must be [..., N, d], got shape {tuple(z.shape)}")
    w = as_float_tensor(w, "reference_points")
    if w.dim() != 2 or w.shape[1] != z.shape[-1]:
        raise ValueError(f"reference_points must be [m, d={z.shape[-1]}], got shape {tuple(w.shape)}")
    t = check_temperature(temperature)
    dt = _compute_dtype(z.dtype)
    zc = z.to(dt)
    norms = row_norms(zc)
    check_finite_nonzero(norms, z)
    wt = w.detach().to(device=z.device, dtype=dt).T
    logits = (zc @ wt) / (norms.unsqueeze(-1) * t)  # cosine / eps (soft-entropy, accumulator.py)
    return torch.softmax(logits, dim=-1)


def _entropy_nats(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of distributions along the last axis, in nats (0 log 0 = 0, finite gradients)."""
    tiny = torch.finfo(p.dtype).tiny
    return -(p * p.clamp_min(tiny).log()).sum(-1)  # H = -sum_j p_j log p_j (soft-entropy, accumulator.py)


def soft_entropy(
    z: torch.Tensor,
    n_bins: int = 100,
    seed: int = 0,
    temperature: float | None = None,
    calibration: str = "exact",
    reference_points: Any = None,
) -> torch.Tensor:
    """Efficiency-normalised soft entropy ``H(Z)/log m`` of the rows of ``z``.

    Args:
        z: ``[N, d]`` representations (any float dtype/device); ``[..., N, d]`` gives one value per
            leading index.
        n_bins: number of reference points ``m`` (ignored when ``reference_points`` is given).
        seed: seed of the reference points (see :func:`infoplane.estimators.reference_points`).
        temperature: softmax temperature ``eps``; ``None`` calibrates it (``calibration`` method).
        calibration: ``"exact"`` | ``"bounds"`` | ``"leading_order"``.
        reference_points: optional ``[m, d]`` points to use instead of the seeded ones.

    Returns:
        0-d tensor (or ``[...]``) in [0, 1], differentiable w.r.t. ``z``.
    """
    z = as_float_tensor(z)
    if z.dim() < 2 or z.shape[-2] < 1:
        raise ValueError(f"z must be [N, d] with N >= 1, got shape {tuple(z.shape)}")
    w, t = resolve_reference_and_temperature(z.shape[-1], n_bins, seed, temperature, calibration,
                                             reference_points)
    p = soft_assign(z, w, t)
    p_bar = p.mean(dim=-2)  # p-hat = (1/N) sum_i p_i (soft-entropy, accumulator.py)
    return _entropy_nats(p_bar) / math.log(w.shape[0])


def soft_mutual_information(
    z: torch.Tensor,
    labels: Any,
    n_bins: int = 100,
    seed: int = 0,
    temperature: float | None = None,
    calibration: str = "exact",
    reference_points: Any = None,
) -> torch.Tensor:
    """Efficiency-normalised soft mutual information ``I(X;Z)/log m`` for one batch.

    ``I = H(Z) - sum_x (n_x/N) H(Z | X = x)`` (soft-entropy, accumulator.py). Negative label values are
    singletons (each such sample is its own label; its conditional entropy is ``H(p_i)``).

    Args:
        z: ``[N, d]`` representations.
        labels: ``[N]`` integer labels (array or tensor; float labels are rejected).
        n_bins, seed, temperature, calibration, reference_points: as in :func:`soft_entropy`.

    Returns:
        0-d tensor, differentiable w.r.t. ``z``; ``0 <= I <= min(H, capacity)`` up to rounding.
    """
    z = as_float_tensor(z)
    if z.dim() != 2 or z.shape[0] < 1:
        raise ValueError(f"z must be [N, d] with N >= 1, got shape {tuple(z.shape)}")
    n = z.shape[0]
    lab = as_label_tensor(labels, n)
    w, t = resolve_reference_and_temperature(z.shape[-1], n_bins, seed, temperature, calibration,
                                             reference_points)
    log_m = math.log(w.shape[0])
    p = soft_assign(z, w, t)  # [N, m]
    h = _entropy_nats(p.mean(dim=0))
    neg = lab < 0
    cond = p.new_zeros(())
    if bool(neg.any()):
        neg_d = neg.to(p.device)
        cond = cond + _entropy_nats(p[neg_d]).sum() / n  # singletons: H(Z|x) = H(p_i)
    pos = ~neg
    if bool(pos.any()):
        uniq, inv = torch.unique(lab[pos], return_inverse=True)
        inv = inv.to(p.device)
        sums = p.new_zeros((uniq.shape[0], p.shape[1])).index_add(0, inv, p[pos.to(p.device)])
        counts = torch.bincount(inv, minlength=uniq.shape[0]).to(p.dtype)
        # sum_x (n_x/N) H(c_x/n_x)  (soft-entropy, accumulator.py)
        cond = cond + (counts * _entropy_nats(sums / counts[:, None])).sum() / n
    return (h - cond) / log_m
