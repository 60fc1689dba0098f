"""Metrics of the forgetting experiment: separation and its two parts, selectivity, MBE, the softplus floor.

The separation of mod_gpt ``forget.py`` is a ratio,
``||mu_pos - mu_neg|| / sqrt((tr Var_pos + tr Var_neg) / 2)``; it rises when the task means move apart *or*
when each task's cloud tightens. :func:`separation_parts` reports the numerator (between-task distance) and
the denominator (within-task spread) separately. Both are invariant to a shift shared by all rows, so
centering the hidden states on their pooled mean does not change them; what centering does change is the
matrix-based entropy (the papers' MBE is uncentered: a common mean direction lowers it), so the MBE is
reported both ways, together with the norm of each task's mean activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infoplane.estimators import patch_matrix_entropy

__all__ = ["FLOORS", "separation", "separation_parts", "selectivity", "sample_mbe", "floored_penalty"]

FLOORS = ("none", "softplus")


def _check_pair(h_pos: torch.Tensor, h_neg: torch.Tensor) -> None:
    for name, h in (("h_pos", h_pos), ("h_neg", h_neg)):
        if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[0] < 2:
            raise ValueError(f"{name} must be a [N, H] tensor with N >= 2, got "
                             f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")
    if h_pos.shape[1] != h_neg.shape[1]:
        raise ValueError(f"h_pos and h_neg need the same width H, got {h_pos.shape[1]} and {h_neg.shape[1]}")


def separation_parts(h_pos: torch.Tensor, h_neg: torch.Tensor) -> dict[str, float]:
    """Between-task distance, within-task spread and their ratio (the separation) of ``[N, H]`` activations.

    Returns ``between = ||mu_pos - mu_neg||``, ``spread = sqrt((tr Var_pos + tr Var_neg) / 2)`` (unbiased
    variances), ``separation = between / spread`` (mod_gpt ``forget.py``), and ``norm_pos``, ``norm_neg``: the
    norms of the two task means (what an uncentered MBE sees).
    """
    _check_pair(h_pos, h_neg)
    mu_p, mu_n = h_pos.double().mean(0), h_neg.double().mean(0)
    between = (mu_p - mu_n).norm()
    # pooled within-task spread: sqrt of the mean of the two total variances (mod_gpt forget.py)
    tv = 0.5 * (h_pos.double().var(0, unbiased=True).sum() + h_neg.double().var(0, unbiased=True).sum())
    spread = tv.clamp_min(1e-24).sqrt()
    return {"between": float(between), "spread": float(spread), "separation": float(between / spread),
            "norm_pos": float(mu_p.norm()), "norm_neg": float(mu_n.norm())}


def separation(h_pos: torch.Tensor, h_neg: torch.Tensor) -> float:
    """||mu_pos - mu_neg|| / sqrt((tr Var_pos + tr Var_neg) / 2) of ``[N, H]`` activations (forget.py)."""
    return separation_parts(h_pos, h_neg)["separation"]


def selectivity(h_pos: torch.Tensor, h_neg: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of units with |(m1 - m2) / (m1 + m2)| > threshold (m = mean activation; forget.py)."""
    m1, m2 = h_pos.mean(0), h_neg.mean(0)
    denom = (m1 + m2).abs().clamp_min(1e-12)
    return float((((m1 - m2).abs() / denom) > threshold).float().mean())


def sample_mbe(h: torch.Tensor, patch: int, centered: bool = False) -> torch.Tensor:
    """MBE across samples of ``[N, H]`` activations: one sequence of N samples in patches of ``patch``
    consecutive samples (mod_gpt ``forget.py``), the first ``N mod patch`` rows dropped."""
    if h.dim() != 2 or h.shape[0] < patch:
        raise ValueError(f"sample_mbe expects [N, H] with N >= patch ({patch}), got {tuple(h.shape)}")
    return patch_matrix_entropy(h.unsqueeze(0), patch_size=patch, remainder="drop_start", centered=centered)


def floored_penalty(term: torch.Tensor, floor: str, clamp: float = 1e-5, width: float = 0.1) -> torch.Tensor:
    """The compression term ``L_a = lambda * MBE`` as it enters the loss.

    ``floor="none"``: ``L_a`` unchanged. ``floor="softplus"``: ``clamp + width * softplus((L_a - clamp) /
    width)`` (mod_gpt ``src/gapt.py``, softplus option; ``clamp`` = ``min_a`` 1e-5): equal to ``L_a`` well
    above the floor, its gradient fading smoothly as ``L_a`` approaches it.
    """
    if floor not in FLOORS:
        raise ValueError(f"floor must be one of {FLOORS}, got {floor!r}")
    if floor == "none":
        return term
    # L_a -> min_a + 0.1 softplus((L_a - min_a) / 0.1)  (mod_gpt src/gapt.py, softplus variant)
    return clamp + width * F.softplus((term - clamp) / width)
