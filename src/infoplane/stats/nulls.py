"""Permutation nulls for mutual information: per-position labels are shuffled over positions, per-text
labels across texts (all positions of a text keep one shared label)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import NAN, as_1d, check_alternative

__all__ = ["label_permutations", "NullComparison", "compare_to_null"]


def label_permutations(labels: Any, *, groups: Any = None, n_permutations: int = 100,
                       seed: int = 0) -> Iterator[np.ndarray]:
    """Permuted label vectors for a permutation null of I(labels; Z), one ``[N]`` array per permutation.

    Args:
        labels: ``[N]`` integer label per position.
        groups: None for per-position labels (positions are exchangeable: a plain shuffle of positions), or
            ``[N]`` text index per position for per-text labels: every text must carry one label on all
            its positions, and the texts' labels are shuffled across texts, so all positions of a text keep
            one shared label (positions of one text are not exchangeable, and a position shuffle would
            break that dependence and make the null too lenient).
        n_permutations: how many permutations to yield. seed: seeds the generator.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty [N] integer array, got shape {lab.shape}, "
                         f"dtype {lab.dtype}")
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations!r}")
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(int(n_permutations)):
            yield lab[rng.permutation(lab.size)]
        return
    grp = np.asarray(groups)
    if grp.shape != lab.shape or not np.issubdtype(grp.dtype, np.integer):
        raise ValueError(f"groups must be an integer [N] array like labels {lab.shape}, got shape "
                         f"{grp.shape}, dtype {grp.dtype}")
    uniq, first, inverse = np.unique(grp, return_index=True, return_inverse=True)
    text_labels = lab[first]
    mixed = np.flatnonzero(text_labels[inverse] != lab)
    if mixed.size:
        g = grp[mixed[0]]
        raise ValueError(f"per-text labels must be constant within a text; text {g} carries labels "
                         f"{sorted(set(lab[grp == g].tolist()))[:5]}")
    for _ in range(int(n_permutations)):
        yield text_labels[rng.permutation(uniq.size)][inverse]


@dataclass(frozen=True)
class NullComparison:
    """An observed statistic against its permutation null: observed, null_mean, null_sd, excess =
    observed - null_mean (the null-corrected value, same units), p_value (+1 corrected), n_permutations."""

    observed: float
    null_mean: float
    null_sd: float
    excess: float
    p_value: float
    n_permutations: int


def compare_to_null(observed: float, null_values: Sequence[float], *,
                    alternative: str = "greater") -> NullComparison:
    """Null-corrected value and permutation p of ``observed`` against ``null_values`` (e.g. MI under
    :func:`label_permutations`); p = (1 + #{null >= observed}) / (1 + P) (Phipson & Smyth 2010)."""
    alternative = check_alternative(alternative)
    null = as_1d(null_values, "null_values")
    obs = float(observed)
    if null.size == 0 or not np.all(np.isfinite(null)) or not math.isfinite(obs):
        raise ValueError(f"need a finite observed value and >= 1 finite null values, got {obs!r} and "
                         f"{null.size} values")
    mu = float(null.mean())
    if alternative == "greater":
        hits = np.count_nonzero(null >= obs)
    elif alternative == "less":
        hits = np.count_nonzero(null <= obs)
    else:
        hits = np.count_nonzero(np.abs(null - mu) >= abs(obs - mu))
    sd = float(null.std(ddof=1)) if null.size > 1 else NAN
    return NullComparison(obs, mu, sd, obs - mu, (int(hits) + 1) / (null.size + 1), int(null.size))
