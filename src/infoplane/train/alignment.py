"""Gradient alignment between cross-entropy and MBE, and cycle detection in its sign.

Sign convention (Yu 2025, arXiv:2505.08727, abstract; consistent with mod_gpt ``src/gradtracker.py``):
``cos(grad CE, grad MBE) > 0`` means a CE descent step also lowers MBE (compression); ``< 0`` means it raises
MBE (memorisation / expansion). The paper (arXiv:2505.08727, abstract) reports that this sign oscillates under
CE-only training.

Both gradients are taken on the *same* batch with ``torch.autograd.grad`` (the later ``gradtracker.py``
protocol, mod_gpt ``src/gradtracker.py``), not on different micro-batches as in the paper-era logging.

:func:`family_alignment` shares one CE gradient between several families of per-layer losses (the MBE and a
control); :func:`probe_alignment` applies it to each of K fixed probe batches and :func:`mean_se` gives the
mean and standard error over those batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["gradient_alignment", "family_alignment", "probe_alignment", "mean_se", "detect_cycles"]


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


def family_alignment(
    ce_loss: torch.Tensor,
    families: Mapping[str, Mapping[Any, torch.Tensor]],
    params: Sequence[torch.Tensor],
    retain_graph: bool = False,
) -> dict[str, dict[str, Any]]:
    """Cosines between one CE gradient and several families of per-layer losses on the same graph.

    Args:
        ce_loss: 0-d CE loss tensor.
        families: ``{name: {layer: 0-d loss}}`` (e.g. ``{"mbe": {...}, "frob": {...}}``), non-empty each.
        params: parameters (all require grad).
        retain_graph: keep the graph after the last backward.

    One backward for CE and one per (family, layer); the family's layer-mean gradient is the mean of its layer
    gradients (linearity). Returns ``{name: {"cos", "cos_layer" {layer: cos}, "grad_norm",
    "grad_norm_layer" {layer: norm}}}`` plus ``"__ce__": {"grad_norm"}``; cosines in [-1, 1], NaN where a
    gradient is exactly zero. Agrees with :func:`gradient_alignment` family by family.
    """
    flat = list(params)
    if not flat or not all(isinstance(p, torch.Tensor) and p.requires_grad for p in flat):
        raise ValueError("params must be a non-empty list of tensors that require grad")
    if not isinstance(families, Mapping) or not families:
        raise ValueError("families must be a non-empty {name: {layer: 0-d loss}} mapping")
    for name, fam in families.items():
        if not isinstance(fam, Mapping) or not fam:
            raise ValueError(f"family {name!r} must be a non-empty {{layer: 0-d loss}} mapping, got {fam!r}")
    targets = [(name, layer, loss) for name, fam in families.items() for layer, loss in fam.items()]
    g_ce = _grads(ce_loss, flat, retain_graph=True)
    every = range(len(flat))
    n_ce = math.sqrt(_dot(g_ce, g_ce, every))
    out: dict[str, dict[str, Any]] = {"__ce__": {"grad_norm": n_ce}}
    sums: dict[str, list[torch.Tensor | None]] = {name: [None] * len(flat) for name in families}
    for j, (name, layer, loss) in enumerate(targets):
        g = _grads(loss, flat, retain_graph=retain_graph or j < len(targets) - 1)
        fam_out = out.setdefault(name, {"cos_layer": {}, "grad_norm_layer": {}})
        n_l = math.sqrt(_dot(g, g, every))
        fam_out["cos_layer"][layer] = _cos(_dot(g_ce, g, every), n_ce, n_l)
        fam_out["grad_norm_layer"][layer] = n_l
        acc = sums[name]
        for i, gi in enumerate(g):
            if gi is not None:
                acc[i] = gi.detach().clone() if acc[i] is None else acc[i] + gi
    for name, fam in families.items():
        g_mean = [None if a is None else a / len(fam) for a in sums[name]]  # grad of the layer mean
        n_m = math.sqrt(_dot(g_mean, g_mean, every))
        out[name]["cos"] = _cos(_dot(g_ce, g_mean, every), n_ce, n_m)
        out[name]["grad_norm"] = n_m
    return out


def mean_se(values: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error ``std(ddof=1) / sqrt(K)`` over ``axis`` (K = its length, K >= 2 required).

    NaN entries make that position's mean and SE NaN (a zero gradient is not silently dropped)."""
    a = np.asarray(values, dtype=np.float64)
    k = a.shape[axis] if a.ndim else 0
    if k < 2:
        raise ValueError(
            f"need at least 2 values along axis {axis} for a standard error, got shape {a.shape}"
        )
    # standard error of the mean over K independent probe batches: s / sqrt(K)
    return a.mean(axis=axis), a.std(axis=axis, ddof=1) / math.sqrt(k)


def probe_alignment(
    model: torch.nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    patch_size: int = 8,
    control_per_layer: bool = True,
) -> dict[str, np.ndarray]:
    """Per fixed probe batch: cos(grad CE, grad MBE) and the Frobenius control, layer mean and per layer.

    ``model(x, y)`` must return ``.loss`` (CE) and ``.hidden_states`` (list of L ``[B, T, D]`` block outputs).
    MBE_l = patch MBE (uncentered, as mod_gpt ``src/mbe.py``) of block l's output; the control is its mean
    squared activation ``||H_l||_F^2 / (B T D)``, a representation-size loss with no entropy content.
    The model is put in eval mode for the probe and restored; its ``.grad`` fields are not touched.

    Cost per batch: one forward, one CE backward, L MBE backwards, and L control backwards
    (``control_per_layer``) or one (the control's layer mean only).

    Returns (K = number of batches, L = layers): ``mbe`` / ``frob`` ``[K]`` layer-mean cosines,
    ``mbe_layer`` ``[K, L]``, ``frob_layer`` ``[K, L]`` (only with ``control_per_layer``), ``ce`` ``[K]``
    (nats/token), ``mbe_value`` ``[K, L]`` (nats).
    """
    from infoplane.estimators import patch_matrix_entropy

    if len(batches) < 1:
        raise ValueError("probe_alignment needs at least one (x, y) batch")
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    rows: dict[str, list] = {k: [] for k in ("mbe", "frob", "mbe_layer", "frob_layer", "ce", "mbe_value")}
    try:
        for x, y in batches:
            out = model(x, y)
            hidden = list(out.hidden_states)
            mbe = {i: patch_matrix_entropy(h, patch_size=patch_size, remainder="drop_start")
                   for i, h in enumerate(hidden)}
            frob = {i: h.pow(2).mean() for i, h in enumerate(hidden)}  # control: ||H_l||_F^2 / (B T D)
            if not control_per_layer:  # one backward: the layer mean's gradient directly
                frob = {"mean": torch.stack(list(frob.values())).mean()}
            res = family_alignment(out.loss, {"mbe": mbe, "frob": frob}, params)
            n = len(hidden)
            rows["ce"].append(float(out.loss.detach()))
            rows["mbe_value"].append([float(mbe[i].detach()) for i in range(n)])
            for fam in ("mbe", "frob"):
                rows[fam].append(res[fam]["cos"])
                if fam == "mbe" or control_per_layer:
                    rows[f"{fam}_layer"].append([res[fam]["cos_layer"][i] for i in range(n)])
    finally:
        model.train(was_training)
    return {k: np.asarray(v, dtype=np.float64) for k, v in rows.items() if v}


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
