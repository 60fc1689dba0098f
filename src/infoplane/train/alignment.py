"""Gradient alignment between cross-entropy and MBE, and cycle detection in its sign.

Sign convention (Yu 2025, arXiv:2505.08727, abstract; consistent with mod_gpt ``src/gradtracker.py``):
``cos(grad CE, grad MBE) > 0`` means a CE descent step also lowers MBE (compression); ``< 0`` means it raises
MBE (memorisation / expansion). The paper (arXiv:2505.08727, abstract) reports that this sign oscillates under
CE-only training.

Both gradients are taken on the *same* batch with ``torch.autograd.grad`` (the later ``gradtracker.py``
protocol, mod_gpt ``src/gradtracker.py``), not on different micro-batches as in the paper-era logging.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["gradient_alignment", "detect_cycles"]


def _grads(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool) -> list[torch.Tensor | None]:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"losses must be scalar tensors, got {type(loss).__name__}")
    if not loss.requires_grad:
        return [None] * len(params)
    return list(torch.autograd.grad(loss.reshape(()), params, retain_graph=retain_graph, allow_unused=True))


def _dot(a: list[torch.Tensor | None], b: list[torch.Tensor | None], idx: Sequence[int]) -> float:
    """sum_i <a_i, b_i> in float64 over parameter positions ``idx`` (None = zero gradient)."""
    total = 0.0
    for i in idx:
        if a[i] is None or b[i] is None:
            continue
        total += float((a[i].double() * b[i].double()).sum())
    return total


def _cos(dot: float, na: float, nb: float) -> float:
    # cos = <a, b> / (|a| |b|); undefined (NaN) when either gradient is zero
    if na == 0.0 or nb == 0.0:
        return math.nan
    return max(-1.0, min(1.0, dot / (na * nb)))


def gradient_alignment(
    *args: Any,
    params: Any = None,
    per_layer: bool = True,
    retain_graph: bool = True,
    model: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Cosine between the CE gradient and the MBE gradient(s) on the same batch.

    Call as ``gradient_alignment(ce_loss, mbe_losses, params)`` or, equivalently (CONTRACTS form),
    ``gradient_alignment(model, ce_loss, mbe_losses, params=None)`` where ``params=None`` means all
    ``model.parameters()`` that require grad.

    Args:
        ce_loss: 0-d CE loss tensor (graph attached).
        mbe_losses: ``{layer: 0-d MBE_l tensor}`` (a list is read as ``{i: loss_i}``, a single tensor as
            ``{0: loss}``), computed from the same forward pass.
        params: list of parameters, or ``{group_name: [params]}`` (e.g. per block) for per-group cosines too.
        per_layer: also compute ``cos(grad CE, grad MBE_l)`` per layer (one backward per layer; the global MBE
            gradient is then their mean, by linearity). ``False``: two backwards in total.
        retain_graph: keep the autograd graph so the caller can still ``backward()`` afterwards.

    Per-layer cosines use *all* parameters (not only blocks ``<= l``): parameters above ``l`` have zero MBE_l
    gradient, so they only enter through ``|grad CE|``; this keeps every cosine on the same vector space and
    comparable with the global one. Use ``params={group: ...}`` to restrict.

    Returns:
        dict with
        ``cos`` (global: CE vs mean-over-layers MBE), ``ce_grad_norm``, ``mbe_grad_norm``,
        ``cos_layer`` ``{layer: cos}``, ``mbe_grad_norm_layer`` ``{layer: norm}`` (empty if
        ``per_layer=False``), and with grouped params: ``cos_group`` ``{group: cos}``,
        ``cos_group_layer`` ``{group: {layer: cos}}``, ``ce_grad_norm_group``, ``mbe_grad_norm_group``.
        Cosines are floats in ``[-1, 1]``, NaN where a gradient is exactly zero.
        Norms are L2 over the parameter vector.
    """
    rest = list(args)
    if rest and isinstance(rest[0], torch.nn.Module):
        if model is not None:
            raise ValueError("model given both positionally and as a keyword")
        model = rest.pop(0)
    if len(rest) == 3:
        if params is not None:
            raise ValueError("params given both positionally and as a keyword")
        params = rest.pop()
    if len(rest) != 2:
        raise ValueError(
            "expected gradient_alignment(ce_loss, mbe_losses, params) or "
            "gradient_alignment(model, ce_loss, mbe_losses, params=None)"
        )
    ce_loss, mbe_losses = rest
    if params is None and model is not None:
        params = [p for p in model.parameters() if p.requires_grad]
    if params is None:
        raise ValueError(
            "params is required (a list of tensors or {group: [tensors]}) unless a model is given"
        )

    if isinstance(params, Mapping):
        groups = {str(k): list(v) for k, v in params.items()}
        flat: list[torch.Tensor] = []
        group_idx: dict[str, list[int]] = {}
        seen: dict[int, int] = {}
        for name, ps in groups.items():
            group_idx[name] = []
            for p in ps:
                if id(p) not in seen:
                    seen[id(p)] = len(flat)
                    flat.append(p)
                group_idx[name].append(seen[id(p)])
    else:
        flat, group_idx = list(params), {}
    if not flat or not all(isinstance(p, torch.Tensor) and p.requires_grad for p in flat):
        raise ValueError("params must be a non-empty list of tensors that require grad")

    if isinstance(mbe_losses, torch.Tensor):
        mbe_losses = {0: mbe_losses}
    elif isinstance(mbe_losses, Sequence):
        mbe_losses = dict(enumerate(mbe_losses))
    if not isinstance(mbe_losses, Mapping) or len(mbe_losses) == 0:
        raise ValueError("mbe_losses must be a non-empty {layer: 0-d tensor} mapping")

    # one backward for CE, then one per layer (per_layer) or one for the layer mean; only the last may free
    targets: list[tuple[Any, torch.Tensor]] = [("__ce__", ce_loss)]
    if per_layer:
        targets += list(mbe_losses.items())
    else:
        targets.append(("__mean__", torch.stack([v.reshape(()) for v in mbe_losses.values()]).mean()))
    grads: dict[Any, list[torch.Tensor | None]] = {}
    for j, (key, loss) in enumerate(targets):
        grads[key] = _grads(loss, flat, retain_graph=retain_graph or j < len(targets) - 1)
    g_ce = grads.pop("__ce__")
    if per_layer:
        layer_grads = grads
        n = len(layer_grads)
        g_mbe: list[torch.Tensor | None] = []
        for i in range(len(flat)):  # grad of the mean = mean of the grads (linearity)
            parts = [g[i] for g in layer_grads.values() if g[i] is not None]
            g_mbe.append(None if not parts else torch.stack(parts).sum(0) / n)
    else:
        layer_grads = {}
        g_mbe = grads["__mean__"]

    every = range(len(flat))
    n_ce = math.sqrt(_dot(g_ce, g_ce, every))
    n_mbe = math.sqrt(_dot(g_mbe, g_mbe, every))
    out: dict[str, Any] = {
        "cos": _cos(_dot(g_ce, g_mbe, every), n_ce, n_mbe),
        "ce_grad_norm": n_ce,
        "mbe_grad_norm": n_mbe,
        "cos_layer": {},
        "mbe_grad_norm_layer": {},
    }
    for layer, g in layer_grads.items():
        n_l = math.sqrt(_dot(g, g, every))
        out["cos_layer"][layer] = _cos(_dot(g_ce, g, every), n_ce, n_l)
        out["mbe_grad_norm_layer"][layer] = n_l
    if group_idx:
        out["cos_group"], out["ce_grad_norm_group"], out["mbe_grad_norm_group"] = {}, {}, {}
        out["cos_group_layer"] = {}
        for name, idx in group_idx.items():
            nc = math.sqrt(_dot(g_ce, g_ce, idx))
            nm = math.sqrt(_dot(g_mbe, g_mbe, idx))
            out["cos_group"][name] = _cos(_dot(g_ce, g_mbe, idx), nc, nm)
            out["ce_grad_norm_group"][name] = nc
            out["mbe_grad_norm_group"][name] = nm
            out["cos_group_layer"][name] = {
                layer: _cos(_dot(g_ce, g, idx), nc, math.sqrt(_dot(g, g, idx)))
                for layer, g in layer_grads.items()
            }
    return out


def detect_cycles(series: Sequence[float], steps: Sequence[float] | None = None) -> dict[str, Any]:
    """Sign-change statistics and dominant period of a (cosine) time series.

    Definitions:
        * Valid points: finite and non-zero values (NaNs and exact zeros are dropped before sign analysis).
        * A sign change is a pair of consecutive valid points with opposite signs; its location
          (``sign_change_steps``) is the linear-interpolation zero crossing between their steps.
        * ``period_zero_crossing``: mean spacing of *alternate* sign changes, ``mean(c[k+2] - c[k])`` (one
          full cycle has two sign changes); NaN with fewer than 3 sign changes.
        * ``period_fft``: the finite values (zeros kept) are linearly interpolated onto a uniform grid of
          spacing ``median(diff(steps))``, demeaned, and the peak of ``|rfft|^2`` over frequencies
          ``k >= 1`` gives ``n * dt / k`` (``k`` refined by parabolic interpolation of the log power); NaN
          with < 4 points or a flat series.
        * ``frac_positive``: fraction of valid points that are > 0 (NaN if none).

    Args:
        series: values (e.g. cosines) in step order.
        steps: their step numbers (strictly increasing); default ``0, 1, 2, ...``.

    Returns:
        dict ``n_sign_changes``, ``sign_change_steps`` (list of floats), ``period_zero_crossing``,
        ``period_fft``, ``frac_positive``, ``n_valid``; plus aliases ``sign_changes`` (= n_sign_changes) and
        ``period`` (= period_zero_crossing, else period_fft).
    """
    y = np.asarray(series, dtype=np.float64).reshape(-1)
    t = (
        np.arange(len(y), dtype=np.float64)
        if steps is None
        else np.asarray(steps, dtype=np.float64).reshape(-1)
    )
    if t.shape != y.shape:
        raise ValueError(f"steps has {t.size} entries, series has {y.size}")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("steps must be strictly increasing")
    finite = np.isfinite(y)
    valid = finite & (y != 0.0)
    yv, tv = y[valid], t[valid]
    crossings: list[float] = []
    for i in range(len(yv) - 1):
        if (yv[i] > 0) != (yv[i + 1] > 0):
            # zero crossing by linear interpolation between the two valid points
            frac = yv[i] / (yv[i] - yv[i + 1])
            crossings.append(float(tv[i] + frac * (tv[i + 1] - tv[i])))
    c = np.asarray(crossings)
    period_zc = float(np.mean(c[2:] - c[:-2])) if len(c) >= 3 else math.nan  # two sign changes per cycle

    period_fft = math.nan
    yf, tf = y[finite], t[finite]
    if yf.size >= 4:
        dt = float(np.median(np.diff(tf)))
        grid = tf[0] + dt * np.arange(int(round((tf[-1] - tf[0]) / dt)) + 1)
        u = np.interp(grid, tf, yf)
        u = u - u.mean()
        power = np.abs(np.fft.rfft(u)) ** 2
        if power.size > 2 and power[1:].max() > 1e-24 * max(1.0, float(np.sum(u * u))):
            k = int(np.argmax(power[1:])) + 1
            kf = float(k)
            if 1 <= k - 1 and k + 1 < power.size:  # parabolic refinement on log power
                lp = np.log(power[k - 1 : k + 2] + 1e-300)
                denom = lp[0] - 2 * lp[1] + lp[2]
                if denom < 0:
                    kf = k + 0.5 * (lp[0] - lp[2]) / denom
            period_fft = float(len(u) * dt / kf)
    frac_pos = float(np.mean(yv > 0)) if yv.size else math.nan
    return {
        "n_sign_changes": len(crossings),
        "sign_change_steps": crossings,
        "period_zero_crossing": period_zc,
        "period_fft": period_fft,
        "frac_positive": frac_pos,
        "n_valid": int(yv.size),
        "sign_changes": len(crossings),
        "period": period_zc if math.isfinite(period_zc) else period_fft,
    }
