"""Tests for the MBE penalty and the layer schedules."""

from __future__ import annotations

import math

import pytest
import torch

from infoplane.estimators.matrix import patch_matrix_entropy
from infoplane.train.regularizer import LayerSchedule, mbe_penalty, resolve_layers


def _hidden(n_layers: int, b: int = 2, t: int = 16, d: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(b, t, d, generator=g, dtype=torch.float64).requires_grad_(True) for _ in range(n_layers)
    ]


def test_layer_schedule_modes():
    assert LayerSchedule(6, "middle").layers(0) == [1, 2, 3, 4]
    assert LayerSchedule(6, "middle").layers(17) == [1, 2, 3, 4]
    assert LayerSchedule(6, "all").layers(3) == [0, 1, 2, 3, 4, 5]
    rot = LayerSchedule(6, "rotate")
    assert [rot.layers(k) for k in range(9)] == [[1], [2], [3], [4], [1], [2], [3], [4], [1]]
    # paper-era rotation over 2 ... L-3 at L = 12 (skip 2 at each end)
    rot12 = LayerSchedule(12, "rotate", skip_first=2, skip_last=2)
    assert [rot12.layers(k)[0] for k in range(8)] == [2, 3, 4, 5, 6, 7, 8, 9] and rot12.layers(8) == [2]
    assert LayerSchedule(6, [0, 5]).layers(4) == [0, 5]
    assert LayerSchedule(6, [-1, 2]).layers(0) == [5, 2]
    assert LayerSchedule(4, "middle", skip_first=0, skip_last=2).layers(0) == [0, 1]
    assert LayerSchedule(3, "middle").layers(0) == [1]


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((2, "middle"), {}, "no layer"),
        ((6, "bottleneck"), {}, "mode"),
        ((6, [0, 6]), {}, "out of range"),
        ((6, [1, 1]), {}, "duplicate"),
        ((6, []), {}, "empty"),
        ((6, [1.5]), {}, "ints"),
        ((0, "all"), {}, "n_layers"),
        ((6, "middle"), {"skip_first": -1}, "skip_first"),
    ],
)
def test_layer_schedule_validation(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerSchedule(*args, **kwargs)


def test_layer_schedule_step_validation():
    with pytest.raises(ValueError, match="step"):
        LayerSchedule(6, "rotate").layers(-1)


def test_resolve_layers_strings():
    assert resolve_layers(5, "all") == [0, 1, 2, 3, 4]
    assert resolve_layers(5, "middle") == [1, 2, 3]
    with pytest.raises(ValueError, match="layers"):
        resolve_layers(5, "first")


def test_penalty_is_mean_of_selected_layers_and_per_layer_values():
    hs = _hidden(5, t=19)  # T = 19: default remainder drops the first 3 tokens
    penalty, per = mbe_penalty(hs, [1, 3], patch_size=8)
    expected = {i: float(patch_matrix_entropy(hs[i][:, 3:].detach(), 8)) for i in (1, 3)}
    assert set(per) == {1, 3}
    for i in (1, 3):
        assert per[i] == pytest.approx(expected[i], abs=1e-12)
        assert isinstance(per[i], float)
    assert penalty.ndim == 0 and float(penalty.detach()) == pytest.approx(
        (expected[1] + expected[3]) / 2, abs=1e-12
    )
    penalty.backward()
    # only the selected layers receive gradient
    assert hs[1].grad is not None and hs[3].grad is not None
    assert hs[0].grad is None and hs[2].grad is None and hs[4].grad is None
    mid, per_mid = mbe_penalty(hs, "middle", patch_size=8)
    assert sorted(per_mid) == [1, 2, 3]
    _, per_all = mbe_penalty(hs, "all", patch_size=8)
    assert sorted(per_all) == [0, 1, 2, 3, 4]


def test_penalty_known_values():
    # layer 0: each 4-token patch has orthonormal rows -> log 4; layer 1: rank-one patches -> 0
    eye = torch.eye(4, 6, dtype=torch.float64)
    h0 = eye.repeat(1, 2, 1)  # [1, 8, 6]: two patches, each the 4 orthonormal rows
    h1 = torch.ones(1, 8, 6, dtype=torch.float64)
    penalty, per = mbe_penalty([h0, h1], "all", patch_size=4)
    assert per[0] == pytest.approx(math.log(4), abs=1e-12) and per[1] == pytest.approx(0.0, abs=1e-12)
    assert float(penalty) == pytest.approx(math.log(4) / 2, abs=1e-12)
    # a shared offset makes the uncentered MBE collapse; the centered option removes it
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, 16, 32, generator=g, dtype=torch.float64)
    p_unc, _ = mbe_penalty([base + 5.0], [0])
    p_cen, _ = mbe_penalty([base + 5.0], [0], centered=True)
    p_ref, _ = mbe_penalty([base], [0], centered=True)
    assert float(p_unc) < 0.2 < float(p_cen)
    assert float(p_cen) == pytest.approx(float(p_ref), abs=1e-12)


def test_penalty_validation():
    hs = _hidden(3, t=12)
    with pytest.raises(ValueError, match="list"):
        mbe_penalty(torch.stack([h.detach() for h in hs]), "all")
    with pytest.raises(ValueError, match="empty"):
        mbe_penalty([], "all")
    with pytest.raises(ValueError, match="out of range"):
        mbe_penalty(hs, [3])
    with pytest.raises(ValueError, match="S=12"):
        mbe_penalty(hs, "all", patch_size=8, remainder="error")


def test_penalty_on_gpt_block_outputs():
    from infoplane.train.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=17, n_layer=4, n_head=2, d_model=16, block_size=16))
    idx = torch.randint(0, 17, (2, 16), generator=torch.Generator().manual_seed(1))
    out = model(idx, targets=idx)
    sched = LayerSchedule(len(out.hidden_states), "rotate")
    penalty, per = mbe_penalty(out.hidden_states, sched.layers(0), patch_size=8)
    assert list(per) == [1] and 0.0 <= float(penalty.detach()) <= math.log(8) + 1e-6
    (out.loss + penalty).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
