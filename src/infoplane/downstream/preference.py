"""Preference information I(Z; preference) with a text-level permutation null (Conklin et al. 2026, sec. 5).

A preference set (:mod:`infoplane.downstream.tasks`: chosen = real text, label 1; rejected = corrupted text,
label 0) gives every position of a text its text's label. The soft-entropy MI of the hidden states with that
label is inflated by anything that makes positions of one text alike (topic, length, the text's own words),
because all positions of a text share one label. The accumulator's own null (``null=True``) shuffles labels
across the positions of a batch, which breaks that within-text dependence and so is too lenient here. The
text-level null instead permutes the labels across texts (every position of a text keeps one shared label:
:func:`infoplane.stats.label_permutations` with ``groups``) and re-runs the accumulator K times, seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from infoplane.estimators import SoftEntropyAccumulator
from infoplane.stats import compare_to_null, label_permutations

__all__ = ["PreferenceInformation", "text_label_information", "collect_hidden_states",
           "preference_information"]


@dataclass(frozen=True)
class PreferenceInformation:
    """I(Z; label) per layer against two nulls, efficiency-normalised (divided by log m) as the accumulator
    reports it.

    Attributes:
        mi: ``[L]`` observed MI.
        mi_null_position: ``[L]`` the accumulator's within-batch position-shuffle null.
        mi_null_text: ``[K, L]`` MI under K text-level label permutations.
        p_text: ``[L]`` permutation p of ``mi`` against ``mi_null_text`` (Phipson & Smyth 2010, +1 corrected).
        excess_text: ``[L]`` ``mi`` minus the mean of ``mi_null_text``.
        n_texts, n_positions: sample sizes; seed: of the permutations and the position null.
    """

    mi: np.ndarray
    mi_null_position: np.ndarray
    mi_null_text: np.ndarray
    p_text: np.ndarray
    excess_text: np.ndarray
    n_texts: int
    n_positions: int
    seed: int

    def to_records(self, model: str | None = None) -> list[dict[str, Any]]:
        """One row per layer: ``model, layer, mi, mi_null_position, mi_null_text_mean, excess_text, p_text,
        n_texts, n_positions, n_permutations``."""
        return [{"model": model, "layer": layer, "mi": float(self.mi[layer]),
                 "mi_null_position": float(self.mi_null_position[layer]),
                 "mi_null_text_mean": float(self.mi_null_text[:, layer].mean()),
                 "excess_text": float(self.excess_text[layer]), "p_text": float(self.p_text[layer]),
                 "n_texts": self.n_texts, "n_positions": self.n_positions,
                 "n_permutations": int(self.mi_null_text.shape[0])} for layer in range(self.mi.size)]


def _accumulate(z: torch.Tensor, labels: np.ndarray, *, n_bins: int, ref_seed: int, null: bool,
                null_seed: int, chunk: int) -> Any:
    acc = SoftEntropyAccumulator(z.shape[-1], n_bins=n_bins, seed=ref_seed, n_layers=z.shape[0], null=null,
                                 null_seed=null_seed)
    lab = torch.as_tensor(labels, dtype=torch.int64)
    for i in range(0, z.shape[1], chunk):
        acc.update(z[:, i:i + chunk], labels={"pref": lab[i:i + chunk]})
    return acc.compute()


def text_label_information(z: Any, labels: Sequence[int], groups: Sequence[int], *, n_permutations: int = 20,
                           seed: int = 0, n_bins: int = 100, ref_seed: int = 0,
                           chunk: int = 4096) -> PreferenceInformation:
    """MI of hidden states with a per-text label, against the position null and the text-level null.

    Args:
        z: ``[L, N, d]`` (or ``[N, d]``) hidden states of N positions.
        labels: ``[N]`` integer label of each position's text (constant within a text).
        groups: ``[N]`` text index of each position.
        n_permutations: K text-level permutations (each re-runs the accumulator).
        seed: seeds the permutations and the accumulator's position null.
        n_bins, ref_seed: reference points of the soft-entropy estimator.
        chunk: positions per accumulator update (the position null shuffles within a chunk).
    Raises:
        ValueError: shapes disagree, a text carries two labels, fewer than two texts or labels.
    """
    zt = torch.as_tensor(z)
    if zt.ndim == 2:
        zt = zt[None]
    if zt.ndim != 3:
        raise ValueError(f"z must be [L, N, d] or [N, d], got shape {tuple(zt.shape)}")
    lab, grp = np.asarray(labels), np.asarray(groups)
    if lab.shape != (zt.shape[1],) or grp.shape != lab.shape:
        raise ValueError(f"labels and groups must be [N] with N = {zt.shape[1]} positions, got "
                         f"{lab.shape} and {grp.shape}")
    if not (np.issubdtype(lab.dtype, np.integer) and np.issubdtype(grp.dtype, np.integer)):
        raise ValueError(f"labels and groups must be integers, got {lab.dtype} and {grp.dtype}")
    n_texts = int(np.unique(grp).size)
    if n_texts < 2 or np.unique(lab).size < 2:
        raise ValueError(f"need >= 2 texts and >= 2 label values, got {n_texts} texts, labels "
                         f"{sorted(set(lab.tolist()))}")
    if not isinstance(chunk, int) or chunk < 2:
        raise ValueError(f"chunk must be an integer >= 2, got {chunk!r}")
    perms = list(label_permutations(lab, groups=grp, n_permutations=n_permutations, seed=seed))  # validates
    kw = {"n_bins": n_bins, "ref_seed": ref_seed, "chunk": chunk}
    obs = _accumulate(zt, lab, null=True, null_seed=seed, **kw)
    mi = np.asarray(obs.mi["pref"], dtype=np.float64)
    null_text = np.stack([np.asarray(_accumulate(zt, p, null=False, null_seed=seed, **kw).mi["pref"],
                                     dtype=np.float64) for p in perms])
    cmp = [compare_to_null(mi[layer], null_text[:, layer]) for layer in range(mi.size)]
    return PreferenceInformation(mi, np.asarray(obs.mi_null["pref"], dtype=np.float64), null_text,
                                 np.array([c.p_value for c in cmp]), np.array([c.excess for c in cmp]),
                                 n_texts, int(zt.shape[1]), int(seed))


def collect_hidden_states(model: torch.nn.Module, token_ids: Sequence[Sequence[int]], *,
                          max_tokens: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Every hidden state (embedding output, then each block) of each text -> ``(z [L, N, d] float32 CPU,
    groups [N])``; one forward per text (no padding), truncated to ``max_tokens``."""
    from infoplane.probe.capture import HiddenStateCapture, find_hidden_sites, forward_batch

    sites = find_hidden_sites(model)
    layers: list[list[torch.Tensor]] = [[] for _ in sites]
    groups: list[np.ndarray] = []
    device = next(model.parameters()).device

    def sink(layer: int, z: torch.Tensor) -> None:
        layers[layer].append(z.float().cpu())

    with HiddenStateCapture(model, sink, sites):
        for i, ids in enumerate(token_ids):
            ids = list(ids)[:max_tokens] if max_tokens else list(ids)
            if not ids:
                raise ValueError(f"text {i} has no tokens")
            forward_batch(model, torch.tensor([ids], dtype=torch.long, device=device))
            groups.append(np.full(len(ids), i, dtype=np.int64))
    return torch.stack([torch.cat(z) for z in layers]), np.concatenate(groups)


def preference_information(model: torch.nn.Module, token_ids: Sequence[Sequence[int]],
                           labels: Sequence[int], *, max_tokens: int | None = 64, n_permutations: int = 20,
                           seed: int = 0, n_bins: int = 100) -> PreferenceInformation:
    """I(Z; preference) of ``model`` on a preference set: ``token_ids`` of each text, ``labels`` one 0/1
    per text (``preference.jsonl`` of the suite). See :func:`text_label_information`."""
    if len(token_ids) != len(labels):
        raise ValueError(f"one label per text: {len(token_ids)} texts, {len(labels)} labels")
    z, groups = collect_hidden_states(model, token_ids, max_tokens=max_tokens)
    per_pos = np.asarray(labels, dtype=np.int64)[groups]
    return text_label_information(z, per_pos, groups, n_permutations=n_permutations, seed=seed,
                                  n_bins=n_bins)
