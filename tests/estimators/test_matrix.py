"""Known-answer, property and consistency tests for matrix-based entropy (MBE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.estimators import OnlineMatrixEntropy, matrix_entropy, patch_matrix_entropy


def _np_eig_entropy(z: np.ndarray, alpha: float) -> float:
    """Independent oracle: Renyi entropy from the eigenvalues of P = Z Z^T / ||Z||_F^2 (N x N form)."""
    g = z @ z.T
    p = g / np.trace(g)
    lam = np.clip(np.linalg.eigvalsh(p), 0.0, None)
    lam = lam[lam > 1e-15]
    if alpha == 1.0:
        return float(-(lam * np.log(lam)).sum())
    return float(np.log((lam**alpha).sum()) / (1.0 - alpha))


def _np_closed_form_dxd(z: np.ndarray) -> float:
    """Independent oracle: alpha = 2 closed form through the D x D Gram Z^T Z."""
    g = z.T @ z
    return float(2.0 * np.log(np.trace(g)) - np.log((g * g).sum()))


def _rand(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_closed_form_equals_eigen_and_reverse_gram(n, d, seed):
    z = _rand((n, d), seed)
    h = float(matrix_entropy(z))
    zn = z.numpy()
    assert h == pytest.approx(_np_eig_entropy(zn, 2.0), abs=1e-9)
    assert h == pytest.approx(min(max(_np_closed_form_dxd(zn), 0.0), math.log(n)), abs=1e-9)
    # the library's own eigenvalue path (alpha close to 2) agrees with its closed form
    assert float(matrix_entropy(z, alpha=2.0 + 1e-9)) == pytest.approx(h, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 10),
    d=st.integers(1, 10),
    seed=st.integers(0, 10_000),
    alpha=st.sampled_from([0.5, 1.0, 1.5, 3.0]),
)
def test_general_alpha_matches_numpy_eigen(n, d, seed, alpha):
    z = _rand((n, d), seed)
    assert float(matrix_entropy(z, alpha=alpha)) == pytest.approx(_np_eig_entropy(z.numpy(), alpha), abs=1e-7)


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 3),
    n=st.integers(1, 16),
    d=st.integers(1, 16),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-6, 1.0, 1e4]),
    centered=st.booleans(),
)
def test_range_zero_to_log_n(b, n, d, seed, scale, centered):
    z = _rand((b, n, d), seed, dtype=torch.float32) * scale
    if centered and n == 1:
        centered = False  # a single centred row is all zeros (undefined)
    h = matrix_entropy(z, centered=centered)
    assert h.shape == (b,)
    assert h.dtype == torch.float32
    assert torch.all(h >= 0.0)
    assert torch.all(h <= math.log(n) + 1e-6)


def test_renyi_order_is_monotone_non_increasing():
    z = _rand((8, 5), 3)
    vals = [float(matrix_entropy(z, alpha=a)) for a in (0.5, 1.0, 2.0, 3.0)]
    assert all(x >= y - 1e-12 for x, y in zip(vals, vals[1:]))
    assert vals[0] > vals[-1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.5])
def test_rank_one_is_zero_with_finite_gradient(dtype, alpha):
    u, v = _rand((8,), 1), _rand((16,), 2)
    z = torch.outer(u, v).to(dtype).requires_grad_(True)
    h = matrix_entropy(z, alpha=alpha)
    assert float(h.detach()) == pytest.approx(0.0, abs=1e-5)
    h.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    # rank one is the minimum of the entropy: stationary point, gradient ~ 0 relative to the input scale
    assert float(z.grad.float().abs().max()) * float(z.detach().float().abs().max()) < 1e-3


@pytest.mark.parametrize("n,d", [(1, 1), (1, 7), (5, 1)])
def test_degenerate_shapes_are_rank_one(n, d):
    z = _rand((n, d), 0).requires_grad_(True)
    h = matrix_entropy(z)
    assert float(h.detach()) == pytest.approx(0.0, abs=1e-12)
    h.backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("n,d", [(4, 4), (8, 16), (3, 50)])
def test_orthonormal_rows_give_log_n(n, d):
    q, _ = torch.linalg.qr(_rand((d, n), 5))  # d x n with orthonormal columns
    z = q.T.contiguous()  # n orthonormal rows
    for alpha in (0.5, 1.0, 2.0, 3.0):
        assert float(matrix_entropy(z, alpha=alpha)) == pytest.approx(math.log(n), abs=1e-9)
    # float32 as well (value is clamped to log N)
    assert float(matrix_entropy(z.float())) == pytest.approx(math.log(n), abs=1e-5)


def test_known_value_two_unequal_directions():
    # rows e1 (x2) and e2: P eigenvalues 4/5, 1/5 -> MBE = -log(16/25 + 1/25) = log(25/17)
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert float(matrix_entropy(z)) == pytest.approx(math.log(25 / 17), abs=1e-12)
    vn = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert float(matrix_entropy(z, alpha=1.0)) == pytest.approx(vn, abs=1e-12)


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e-3, 1e3, 1e12, 1e30])
def test_scale_invariance_value_and_gradient(scale):
    z = _rand((8, 12), 7, dtype=torch.float32)
    zs = (z * scale).requires_grad_(True)
    z1 = z.clone().requires_grad_(True)
    h1, hs = matrix_entropy(z1), matrix_entropy(zs)
    assert float(hs.detach()) == pytest.approx(float(h1.detach()), abs=1e-5)
    hs.backward()
    h1.backward()
    assert torch.isfinite(zs.grad).all()
    # H(cz) = H(z)  =>  grad H(cz) = grad H(z) / c
    torch.testing.assert_close(zs.grad * scale, z1.grad, rtol=1e-3, atol=1e-5)


def test_gradcheck_float64():
    z = _rand((6, 4), 11).requires_grad_(True)
    for alpha in (2.0, 1.0, 1.5):
        assert torch.autograd.gradcheck(lambda t, a=alpha: matrix_entropy(t, alpha=a), (z,))
    assert torch.autograd.gradcheck(lambda t: matrix_entropy(t, centered=True), (z,))
    zb = _rand((2, 3, 5), 12).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: matrix_entropy(t).sum(), (zb,))


def test_centered_removes_shared_offset():
    z = _rand((8, 16), 13)
    shifted = z + 5.0  # common +5 offset on every entry (reference measurement: ~2.07 -> ~0.06)
    h_plain, h_shift = float(matrix_entropy(z)), float(matrix_entropy(shifted))
    assert h_plain > 1.5 and h_shift < 0.2
    c_plain = float(matrix_entropy(z, centered=True))
    c_shift = float(matrix_entropy(shifted, centered=True))
    assert c_shift == pytest.approx(c_plain, abs=1e-9)
    # arbitrary per-matrix offset vector, batched
    zb = _rand((3, 8, 16), 14)
    off = _rand((3, 1, 16), 15) * 10
    torch.testing.assert_close(matrix_entropy(zb + off, centered=True), matrix_entropy(zb, centered=True))
    # centring equals subtracting the mean row by hand
    assert c_plain == pytest.approx(float(matrix_entropy(z - z.mean(0, keepdim=True))), abs=1e-12)


def test_batched_equals_loop_and_low_precision_upcast():
    z = _rand((2, 3, 8, 5), 17)
    h = matrix_entropy(z)
    assert h.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert float(h[i, j]) == pytest.approx(float(matrix_entropy(z[i, j])), abs=1e-12)
    hb = matrix_entropy(z.to(torch.bfloat16))
    assert hb.dtype == torch.float32
    torch.testing.assert_close(hb.double(), h, atol=0.05, rtol=0)
    assert matrix_entropy(torch.zeros(0, 4, 3)).shape == (0,)


@pytest.mark.parametrize(
    "z,kwargs,match",
    [
        (torch.ones(5), {}, "ndim >= 2"),
        (torch.ones(0, 3), {}, "N >= 1"),
        (torch.ones(3, 0), {}, "D >= 1"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), {}, "finite"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), {}, "finite"),
        (torch.zeros(4, 3), {}, "all zeros"),
        (torch.stack([torch.ones(4, 3), torch.zeros(4, 3)]), {}, "all zeros"),
        (torch.ones(4, 3), {"centered": True}, "identical"),
        (torch.full((3, 4), 0.1), {"centered": True}, "identical"),
        (torch.full((7, 5), 0.1, dtype=torch.float64), {"centered": True}, "identical"),
        (torch.ones(4, 3), {"alpha": 0.0}, "alpha"),
        (torch.ones(4, 3), {"alpha": -1.0}, "alpha"),
        (torch.ones(4, 3), {"alpha": float("inf")}, "alpha"),
    ],
)
def test_validation_errors(z, kwargs, match):
    with pytest.raises(ValueError, match=match):
        matrix_entropy(z, **kwargs)


# ----------------------------------------------------------------------------- patches


def test_patch_mean_and_none_match_manual_patches():
    h = _rand((2, 24, 6), 21)
    per = patch_matrix_entropy(h, patch_size=8, reduction="none")
    assert per.shape == (2, 3)
    for b in range(2):
        for k in range(3):
            ref = matrix_entropy(h[b, 8 * k : 8 * (k + 1)])
            assert float(per[b, k]) == pytest.approx(float(ref), abs=1e-12)
    assert float(patch_matrix_entropy(h, patch_size=8)) == pytest.approx(float(per.mean()), abs=1e-12)
    assert float(patch_matrix_entropy(h, patch_size=8, centered=True)) == pytest.approx(
        float(matrix_entropy(h.reshape(2, 3, 8, 6), centered=True).mean()), abs=1e-12
    )


def test_patch_remainder_policies():
    h = _rand((2, 19, 5), 22)  # 19 = 2 * 8 + 3
    start = patch_matrix_entropy(h, 8, remainder="drop_start", reduction="none")
    end = patch_matrix_entropy(h, 8, remainder="drop_end", reduction="none")
    torch.testing.assert_close(start, patch_matrix_entropy(h[:, 3:], 8, reduction="none"))
    torch.testing.assert_close(end, patch_matrix_entropy(h[:, :16], 8, reduction="none"))
    assert not torch.allclose(start, end)
    with pytest.raises(ValueError) as info:
        patch_matrix_entropy(h, 8)
    msg = str(info.value)
    assert "S=19" in msg and "p=8" in msg and "drop_start" in msg and "drop_end" in msg


@pytest.mark.parametrize(
    "hidden,kwargs,match",
    [
        (torch.randn(4, 8), {}, r"\[B, S, D\]"),
        (torch.randn(1, 4, 8), {"patch_size": 8, "remainder": "drop_start"}, "shorter than patch_size"),
        (torch.randn(1, 8, 8), {"patch_size": 0}, "patch_size"),
        (torch.randn(1, 8, 8), {"remainder": "pad"}, "remainder"),
        (torch.randn(1, 8, 8), {"reduction": "sum"}, "reduction"),
    ],
)
def test_patch_validation(hidden, kwargs, match):
    with pytest.raises(ValueError, match=match):
        patch_matrix_entropy(hidden, **kwargs)


def test_patch_gradient_flows():
    h = _rand((2, 16, 4), 23, dtype=torch.float32).requires_grad_(True)
    patch_matrix_entropy(h, 8).backward()
    assert torch.isfinite(h.grad).all() and float(h.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------- online


@pytest.mark.parametrize("centered", [False, True])
def test_online_equals_batch_and_merge_equals_concat(centered):
    dim = 6
    chunks = [_rand((n, dim), 30 + i, dtype=torch.float32) + 0.5 for i, n in enumerate([3, 7, 1, 12])]
    full = torch.cat(chunks).double()
    acc = OnlineMatrixEntropy(dim, centered=centered)
    for c in chunks:
        acc.update(c)
    assert acc.n == full.shape[0]
    for alpha in (2.0, 1.0, 0.5):
        expected = float(matrix_entropy(full, alpha=alpha, centered=centered))
        assert acc.compute(alpha) == pytest.approx(expected, abs=1e-9)
    a, b = OnlineMatrixEntropy(dim, centered), OnlineMatrixEntropy(dim, centered)
    a.update(torch.cat(chunks[:2]))
    b.update(torch.cat(chunks[2:]))
    assert a.merge(b).compute() == pytest.approx(acc.compute(), abs=1e-12)
    # [B, T, D] input is flattened into rows
    acc3 = OnlineMatrixEntropy(dim, centered)
    acc3.update(full[:20].reshape(4, 5, dim))
    acc3.update(full[20:])
    assert acc3.compute() == pytest.approx(acc.compute(), abs=1e-12)


def test_online_state_dict_roundtrip_and_reset():
    acc = OnlineMatrixEntropy(4)
    acc.update(_rand((10, 4), 40))
    sd = acc.state_dict()
    other = OnlineMatrixEntropy(4)
    other.load_state_dict(sd)
    assert other.compute() == acc.compute() and other.n == 10
    extra = _rand((5, 4), 41)
    acc.update(extra)
    other.update(extra)
    assert other.compute() == pytest.approx(acc.compute(), abs=1e-15)
    acc.reset()
    assert acc.n == 0
    with pytest.raises(ValueError, match="before any update"):
        acc.compute()
    with pytest.raises(ValueError, match="dim"):
        OnlineMatrixEntropy(5).load_state_dict(sd)


def test_online_validation():
    with pytest.raises(ValueError, match="dim"):
        OnlineMatrixEntropy(0)
    acc = OnlineMatrixEntropy(3)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        acc.update(torch.ones(4, 2))
    with pytest.raises(ValueError, match="finite"):
        acc.update(torch.tensor([[1.0, float("nan"), 0.0]]))
    acc.update(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="zero"):
        acc.compute()
    with pytest.raises(ValueError, match="merge"):
        acc.merge(OnlineMatrixEntropy(4))
    same = OnlineMatrixEntropy(3, centered=True)
    same.update(torch.full((5, 3), 0.1))
    with pytest.raises(ValueError, match="identical"):
        same.compute()


def test_autocast_does_not_lower_precision():
    z = _rand((4, 8, 32), 50, dtype=torch.float32) + 0.3
    ref = matrix_entropy(z.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = matrix_entropy(z)
        acc = OnlineMatrixEntropy(32)
        acc.update(z[0])
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.double(), ref, atol=1e-5, rtol=0)
    assert acc.compute() == pytest.approx(float(ref[0]), abs=1e-9)


@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.5, 3.0])
def test_validate_false_gives_zero_for_undefined_and_finite_grads(alpha):
    z = torch.stack([torch.zeros(4, 3), torch.ones(4, 3), _rand((4, 3), 60, dtype=torch.float32)])
    z.requires_grad_(True)
    h = matrix_entropy(z, alpha=alpha, centered=True, validate=False)
    assert float(h[0].detach()) == 0.0 and float(h[1].detach()) == 0.0
    assert float(h[2].detach()) == pytest.approx(
        float(matrix_entropy(z[2].detach(), alpha=alpha, centered=True))
    )
    h.sum().backward()
    assert torch.isfinite(z.grad).all()
