"""Matrix-based (Renyi) entropy of representations, linear kernel.

Definitions follow F. Yu, "Memorization-Compression Cycles Improve Generalization" (arXiv:2505.08727) and its
reference code (fangyuan-ksgk/mod_gpt, ``src/mbe.py``):

* ``Z in R^{N x D}`` (N samples/tokens, D features), ``P = Z Z^T / ||Z||_F^2`` (trace-normalised linear Gram,
  trace 1, eigenvalues ``lambda_i >= 0`` summing to 1).
* ``S_alpha(Z) = log tr(P^alpha) / (1 - alpha)`` (Giraldo / Skean matrix-based Renyi
  entropy), natural log, nats.
* ``alpha = 2`` (the paper's MBE): ``MBE(Z) = 2 log tr(Z Z^T) - log ||Z Z^T||_F^2 = -log sum_i lambda_i^2``.
* ``alpha = 1``: von Neumann limit ``-sum_i lambda_i log lambda_i``.

Range: ``0`` (rank one) ... ``log min(N, D)`` (all non-zero eigenvalues equal); results are clamped to
``[0, log N]`` to remove round-off excursions.

Numerics
--------
* Computation runs in float32 (bf16/fp16 inputs are upcast; float64 inputs stay float64).
* ``||Z Z^T||_F = ||Z^T Z||_F`` and ``tr(Z Z^T) = tr(Z^T Z)``, so the smaller of the ``N x N`` and ``D x D``
  Grams is used (cost ``O(N D min(N, D))``).
* The input is first divided by its (detached) largest absolute entry. The entropy is exactly scale invariant,
  so this changes neither the value nor the gradient, but it keeps ``tr(G) >= 1`` and ``||G||_F^2 >= 1``
  and so rules out under/overflow for tiny or huge activations. Hence no epsilon is needed inside the logs
  (the reference adds 1e-5 to both arguments, which biases small-scale inputs); a defensive clamp at the
  smallest normal float is kept but is never active for valid input.
* Rank-one input gives exactly the maximum of ``sum lambda^2 = 1``, so the value is ~0 and the gradient
  there is finite (it is ~0: rank one is a stationary point).
* For ``alpha != 2`` eigenvalues come from ``torch.linalg.eigvalsh`` (gradient well defined even for repeated
  eigenvalues); eigenvalues below ``min(N, D) * eps_dtype * lambda_max`` are treated as exact zeros with zero
  gradient, so ``lambda^alpha`` (alpha < 1) and ``lambda log lambda`` have finite gradients.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Mapping
from typing import Any

import torch

from .protocol import SyncMixin

__all__ = ["matrix_entropy", "patch_matrix_entropy", "OnlineMatrixEntropy"]

_REMAINDER_POLICIES = ("error", "drop_start", "drop_end")
_REDUCTIONS = ("mean", "none")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32/integer input, float64 for float64 input."""
    if dtype == torch.float64:
        return torch.float64
    return torch.float32


def _no_autocast(device: torch.device):
    """Disable autocast so Gram products really run in float32/float64 (bf16 autocast would round them)."""
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}") from exc
    if not math.isfinite(a) or a <= 0.0:
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    return a


def _entropy_from_gram(gram: torch.Tensor, alpha: float, n_rows: int) -> torch.Tensor:
    """Renyi entropy of a batch of PSD Grams ``[..., k, k]`` (not necessarily trace-normalised).

    ``gram`` must have strictly positive trace. Returns ``[...]`` in nats clamped to ``[0, log n_rows]``.
    """
    trace = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1)
    tiny = torch.finfo(gram.dtype).tiny
    if alpha == 2.0:
        # mod_gpt src/mbe.py: MBE = 2 log tr(G) - log ||G||_F^2
        frob_sq = (gram * gram).sum(dim=(-2, -1))
        h = 2.0 * torch.log(trace.clamp_min(tiny)) - torch.log(frob_sq.clamp_min(tiny))
    else:
        p = gram / trace.clamp_min(tiny)[..., None, None]  # P = G / tr(G), trace one (mod_gpt src/mbe.py)
        p = 0.5 * (p + p.transpose(-2, -1))
        lam = torch.linalg.eigvalsh(p)
        k = lam.shape[-1]
        thresh = k * torch.finfo(lam.dtype).eps * lam.amax(dim=-1, keepdim=True).detach()
        keep = lam > thresh
        lam_safe = torch.where(keep, lam, torch.ones_like(lam))
        if alpha == 1.0:
            # von Neumann limit of S_alpha: -sum lambda log lambda (0 log 0 = 0)
            h = -torch.where(keep, lam_safe * torch.log(lam_safe), torch.zeros_like(lam)).sum(-1)
        else:
            # Renyi: S_alpha = log(sum lambda^alpha) / (1 - alpha) (mod_gpt src/mbe.py)
            s = torch.where(keep, lam_safe.pow(alpha), torch.zeros_like(lam)).sum(-1)
            h = torch.log(s.clamp_min(tiny)) / (1.0 - alpha)
    h = torch.where(trace > 0, h, torch.zeros_like(h))  # undefined (zero matrix, validation off) -> 0
    return h.clamp(min=0.0, max=math.log(n_rows))


def matrix_entropy(
    z: torch.Tensor, alpha: float = 2.0, centered: bool = False, *, validate: bool = True
) -> torch.Tensor:
    """Matrix-based Renyi entropy of ``P = Z Z^T / ||Z||_F^2`` (linear kernel), in nats.

    Args:
        z: ``[..., N, D]`` representations: ``N`` rows (tokens / samples) of dimension ``D`` per matrix; any
            leading batch dimensions are kept. Any floating dtype (bf16/fp16 are upcast to float32).
        alpha: Renyi order, ``> 0``; ``2`` is the paper's MBE (closed form), ``1`` the von Neumann entropy.
        centered: subtract each matrix's mean row first (a diagnostic; the paper's MBE is *uncentered*, so a
            shared offset direction "compresses" trivially).
        validate: check finiteness and non-zero matrices (one host sync). Disable only in hot loops where
            inputs are known to be valid; undefined (all-zero) matrices then give 0.

    Returns:
        ``[...]`` tensor (float32, or float64 for float64 input), entries in ``[0, log N]``; differentiable.

    Raises:
        ValueError: ``z`` has fewer than 2 dims, ``N < 1`` or ``D < 1``, non-finite values, a matrix that is
            all zeros (after centering, if requested; entropy undefined), or ``alpha`` not positive/finite.
    """
    a = _check_alpha(alpha)
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"z must be a torch.Tensor of shape [..., N, D], got {type(z).__name__}")
    if z.ndim < 2:
        raise ValueError(f"z must have shape [..., N, D] (ndim >= 2), got shape {tuple(z.shape)}")
    n, d = z.shape[-2], z.shape[-1]
    if n < 1 or d < 1:
        raise ValueError(f"z must have N >= 1 rows and D >= 1 columns, got shape {tuple(z.shape)}")
    if not (z.is_floating_point() or z.is_complex()):
        z = z.to(torch.float32)
    if z.is_complex():
        raise ValueError("z must be real-valued")
    x = z.to(_compute_dtype(z.dtype))
    if validate and not bool(torch.isfinite(x).all()):
        raise ValueError("z must contain only finite values (found NaN or Inf)")
    if x.numel() == 0:  # empty leading batch dimension
        return x.new_zeros(x.shape[:-2])
    if centered:
        raw_scale = x.detach().abs().amax(dim=(-2, -1), keepdim=True)
        x = x - x.mean(dim=-2, keepdim=True)  # per-matrix mean row removed (centering diagnostic)
    # scale invariance: divide by the detached largest |entry| (value and gradient unchanged, no underflow)
    scale = x.detach().abs().amax(dim=(-2, -1), keepdim=True)
    if centered:
        # identical rows leave only round-off after centring (relative to the raw scale): treat as zero
        scale = torch.where(
            scale > 4 * n * torch.finfo(x.dtype).eps * raw_scale, scale, torch.zeros_like(scale)
        )
    if validate and bool((scale == 0).any()):
        what = "all rows identical (zero after centering)" if centered else "all zeros"
        raise ValueError(
            f"matrix entropy is undefined for a matrix that is {what}; got shape {tuple(z.shape)}"
        )
    nonzero = scale > 0
    # safe divide, then zero the undefined matrices (only reachable with validate=False; they give 0)
    x = x / torch.where(nonzero, scale, torch.ones_like(scale)) * nonzero.to(x.dtype)
    with _no_autocast(x.device):
        # ||Z Z^T||_F = ||Z^T Z||_F: use the smaller Gram (reverse-Gram / OnlineMBE form, mod_gpt src/mbe.py)
        gram = x @ x.transpose(-2, -1) if n <= d else x.transpose(-2, -1) @ x
        return _entropy_from_gram(gram, a, n)


def _check_hidden(hidden: torch.Tensor, patch_size: int, remainder: str) -> tuple[int, int]:
    if not isinstance(hidden, torch.Tensor) or hidden.ndim != 3:
        shape = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else type(hidden).__name__
        raise ValueError(f"hidden must be a tensor of shape [B, S, D], got {shape}")
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    if remainder not in _REMAINDER_POLICIES:
        raise ValueError(f"remainder must be one of {_REMAINDER_POLICIES}, got {remainder!r}")
    s = hidden.shape[1]
    n_patches = s // patch_size
    if remainder == "error" and s % patch_size != 0:
        raise ValueError(
            f"sequence length S={s} is not divisible by patch_size p={patch_size} "
            f"(S % p = {s % patch_size}); "
            f"pass remainder='drop_start' (use the last {n_patches * patch_size} tokens, as the reference) "
            f"or remainder='drop_end' (use the first {n_patches * patch_size} tokens)"
        )
    if n_patches == 0:
        raise ValueError(
            f"sequence length S={s} is shorter than patch_size p={patch_size}: no complete patch"
        )
    return s, n_patches


def patch_matrix_entropy(
    hidden: torch.Tensor,
    patch_size: int = 8,
    remainder: str = "error",
    centered: bool = False,
    reduction: str = "mean",
    *,
    alpha: float = 2.0,
    validate: bool = True,
) -> torch.Tensor:
    """MBE over non-overlapping patches of ``patch_size`` consecutive tokens (mod_gpt src/mbe.py).

    ``(B, S, D) -> (B * S/p, p, D)``, :func:`matrix_entropy` per patch, then the mean.

    Args:
        hidden: ``[B, S, D]`` hidden states.
        patch_size: ``p`` tokens per patch (reference default 8: 8 x 8 Grams).
        remainder: what to do when ``S % p != 0``: ``"error"`` (raise), ``"drop_start"`` (use the last
            ``floor(S/p) * p`` tokens, as the reference code), ``"drop_end"`` (use the first ones).
        centered: per-patch mean-row removal (diagnostic; the paper's MBE is uncentered).
        reduction: ``"mean"`` -> 0-d tensor (mean over all ``B * floor(S/p)`` patches); ``"none"`` ->
            ``[B, floor(S/p)]``.
        alpha: Renyi order (2 = MBE).
        validate: forwarded to :func:`matrix_entropy`.

    Returns:
        nats; 0-d tensor or ``[B, S // p]``. Each patch value lies in ``[0, log p]``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    s, n_patches = _check_hidden(hidden, patch_size, remainder)
    used = n_patches * patch_size
    x = hidden[:, s - used :] if remainder == "drop_start" else hidden[:, :used]
    b, _, d = x.shape
    patches = x.reshape(b, n_patches, patch_size, d)  # (B, S, D) -> (B, S/p, p, D), mod_gpt src/mbe.py
    h = matrix_entropy(patches, alpha=alpha, centered=centered, validate=validate)
    return h.mean() if reduction == "mean" else h


class OnlineMatrixEntropy(SyncMixin):
    """Streaming matrix entropy of a large row set via the ``D x D`` Gram ``G = sum_i z_i z_i^T``.

    Memory ``O(D^2)`` float64, kept on the device of the first :meth:`update` (CPU before that).

    The entropy of the concatenation of all rows passed to :meth:`update` equals :func:`matrix_entropy` of the
    concatenated ``[N_total, D]`` matrix (same non-zero spectrum of ``Z Z^T`` and ``Z^T Z``; reference code's
    ``OnlineMBE``). Statistics are float64. Implements the streaming contract of
    :mod:`infoplane.estimators.protocol` (``sync`` and ``compute(sync=True)`` never overwrite the local rows).

    Args:
        dim: feature dimension ``D``.
        centered: if True, :meth:`compute` uses the Gram of the mean-centred concatenation
            (``G - n mu mu^T``; a running row sum is kept).
    """

    def __init__(self, dim: int, centered: bool = False) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.centered = bool(centered)
        self.reset()

    def reset(self) -> None:
        """Forget all rows (and any synced view)."""
        self._drop_view()
        self.gram = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        self.row_sum = torch.zeros(self.dim, dtype=torch.float64)
        self.n = 0

    @torch.no_grad()
    def update(self, z: torch.Tensor) -> None:
        """Add rows. ``z``: ``[N, D]`` (leading dims ``[..., D]`` are flattened into rows), finite values."""
        if not isinstance(z, torch.Tensor) or z.ndim < 2 or z.shape[-1] != self.dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor of shape [N, {self.dim}], got {shape}")
        if self.n == 0 and self.gram.device != z.device and z.device.type != "mps":  # no float64 on MPS
            self.gram, self.row_sum = self.gram.to(z.device), self.row_sum.to(z.device)
        x = z.detach().reshape(-1, self.dim).to(device=self.gram.device, dtype=torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("z must contain only finite values (found NaN or Inf)")
        self._drop_view()
        with _no_autocast(x.device):
            self.gram += x.T @ x  # G = sum_i z_i z_i^T (OnlineMBE, mod_gpt src/mbe.py)
        self.row_sum += x.sum(0)
        self.n += x.shape[0]

    def merge(self, other: OnlineMatrixEntropy) -> OnlineMatrixEntropy:
        """Add another accumulator's rows (same ``dim`` and ``centered``). Refuses ``self`` and accumulators
        holding a synced view (both would count rows twice). Returns ``self``."""
        if not isinstance(other, OnlineMatrixEntropy):
            raise ValueError(f"can only merge another OnlineMatrixEntropy, got {type(other).__name__}")
        self._refuse_merge(other)
        if other.dim != self.dim or other.centered != self.centered:
            raise ValueError(
                f"cannot merge OnlineMatrixEntropy(dim={other.dim}, centered={other.centered}) into "
                f"OnlineMatrixEntropy(dim={self.dim}, centered={self.centered})"
            )
        self._drop_view()
        self.gram += other.gram.to(self.gram.device)
        self.row_sum += other.row_sum.to(self.row_sum.device)
        self.n += other.n
        return self

    def compute(self, alpha: float = 2.0, *, sync: bool = False, group: Any = None) -> float:
        """Entropy (nats) of all rows seen so far, in ``[0, log N_total]``.

        ``sync=True`` all-gathers every rank's rows into a temporary total (``torch.distributed`` collective
        on ``group``); the local state is untouched. After :meth:`sync` the synced total is reported.

        Raises:
            ValueError: no rows yet, or all rows zero (after centering if enabled).
        """
        a = _check_alpha(alpha)
        src = self._source(sync, group)
        if src is not self:
            return src.compute(a)
        if self.n == 0:
            raise ValueError("OnlineMatrixEntropy.compute() called before any update()")
        g = self.gram
        if self.centered:
            mu = self.row_sum / self.n
            g = g - self.n * torch.outer(mu, mu)  # centred Gram: sum (z - mu)(z - mu)^T
            g = 0.5 * (g + g.T)
        tr = float(torch.diagonal(g).sum())
        raw_tr = float(torch.diagonal(self.gram).sum())
        # centring identical rows leaves only round-off (relative to the raw trace): treat as zero
        if not raw_tr > 0.0 or not tr > 1e-12 * raw_tr:
            what = "identical (zero after centering)" if self.centered else "zero"
            raise ValueError(f"matrix entropy is undefined: all accumulated rows are {what}")
        return float(_entropy_from_gram(g / tr, a, self.n))

    def state_dict(self) -> dict[str, Any]:
        """Serializable state: tensors on CPU plus plain ints/bools (the synced total while a synced view is
        held, see :meth:`sync`)."""
        return self._source(False, None)._local_state_dict()

    def _local_state_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "centered": self.centered,
            "n": self.n,
            "gram": self.gram.detach().cpu().clone(),
            "row_sum": self.row_sum.detach().cpu().clone(),
        }

    def _empty_like(self) -> OnlineMatrixEntropy:
        return OnlineMatrixEntropy(self.dim, centered=self.centered)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (``dim`` must match). Raises ``ValueError`` for missing keys,
        wrong shapes, a negative or non-integer ``n``, or non-finite / inconsistent statistics."""
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a mapping from state_dict(), got {type(state).__name__}")
        missing = [k for k in ("dim", "n", "gram", "row_sum") if k not in state]
        if missing:
            raise ValueError(f"state is missing keys {missing} (expected dim, centered, n, gram, row_sum)")
        if int(state["dim"]) != self.dim:
            raise ValueError(f"state dim {state['dim']} does not match accumulator dim {self.dim}")
        try:
            n = -1 if isinstance(state["n"], bool) else operator.index(state["n"])
        except TypeError:
            n = -1
        if n < 0:
            raise ValueError(f"state n must be an integer >= 0 (rows seen), got {state['n']!r}")
        gram = torch.as_tensor(state["gram"], dtype=torch.float64)
        row_sum = torch.as_tensor(state["row_sum"], dtype=torch.float64)
        if gram.shape != (self.dim, self.dim) or row_sum.shape != (self.dim,):
            raise ValueError(
                f"state tensors have shapes {tuple(gram.shape)}, {tuple(row_sum.shape)}; "
                f"expected ({self.dim}, {self.dim}) and ({self.dim},)"
            )
        if not (bool(torch.isfinite(gram).all()) and bool(torch.isfinite(row_sum).all())):
            raise ValueError("state gram/row_sum have non-finite values (NaN or Inf)")
        # G = sum_i z_i z_i^T has a non-negative diagonal and is zero exactly when no row was added
        if bool((torch.diagonal(gram) < 0).any()) or (n == 0 and bool(gram.any())):
            raise ValueError("state gram is inconsistent (negative diagonal, or rows without n > 0)")
        self.reset()
        self.centered = bool(state.get("centered", self.centered))
        self.n = n
        self.gram = gram.clone()
        self.row_sum = row_sum.clone()

    def __repr__(self) -> str:
        synced = ", synced" if self.is_synced else ""
        return f"OnlineMatrixEntropy(dim={self.dim}, centered={self.centered}, n={self.n}{synced})"
