"""Per-text labels: the permutation null permutes labels across texts (groups), not positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoplane.estimators import SoftEntropyAccumulator


def _clustered(n_texts=24, per_text=16, d=16, seed=0):
    """Hidden states clustered by text; per-text labels drawn independently of the content."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_texts, d, generator=g) * 3.0
    text = torch.arange(n_texts).repeat_interleave(per_text)
    z = centers[text] + 0.3 * torch.randn(n_texts * per_text, d, generator=g, dtype=torch.float32)
    label_of_text = torch.randint(0, 2, (n_texts,), generator=g)
    return z, label_of_text[text], text


def _mi(z, lab, groups=None, batch=None):
    acc = SoftEntropyAccumulator(dim=z.shape[1], n_bins=16, seed=0, null=True, null_seed=3)
    n = z.shape[0]
    step = batch or n
    for s in range(0, n, step):
        sl = slice(s, s + step)
        g = None if groups is None else {"y": groups[sl]}
        acc.update(z[sl], acc.prepare_labels({"y": lab[sl]}, groups=g))
    r = acc.compute()
    return float(r.mi["y"][0]), float(r.mi_null["y"][0])


def test_group_null_is_not_fooled_by_text_clusters():
    z, lab, text = _clustered()
    mi, null_pos = _mi(z, lab)
    _, null_grp = _mi(z, lab, groups=text)
    # labels independent of content: the position-shuffle null is far below the observed MI (a false
    # "MI above null"), the across-text null is not
    assert mi - null_pos > 0.025 and mi > 10 * null_pos
    assert abs(mi - null_grp) < 0.5 * (mi - null_pos)


def test_group_null_equals_position_null_when_groups_are_single_positions():
    z, lab, _ = _clustered(seed=1)
    single = torch.arange(z.shape[0])
    mi_a, _ = _mi(z, lab)
    mi_b, null_b = _mi(z, lab, groups=single)
    assert mi_a == mi_b  # the observed MI never depends on the null
    assert 0.0 <= null_b <= mi_b + 1e-9


def test_group_null_is_seeded_and_batch_local():
    z, lab, text = _clustered(seed=2)
    assert _mi(z, lab, text, batch=64) == _mi(z, lab, text, batch=64)


def test_groups_must_hold_constant_labels_and_name_a_set():
    acc = SoftEntropyAccumulator(dim=4, n_bins=8, seed=0, null=True)
    with pytest.raises(ValueError, match="not constant within group"):
        acc.prepare_labels({"y": np.array([0, 1, 1])}, groups={"y": np.array([0, 0, 1])})
    with pytest.raises(ValueError, match="no label set"):
        acc.prepare_labels({"y": np.array([0, 1])}, groups={"x": np.array([0, 1])})
