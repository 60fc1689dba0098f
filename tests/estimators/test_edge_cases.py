"""Hostile and degenerate input to the streaming estimators (issue 14, item 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoplane.estimators import OnlineMatrixEntropy, SoftEntropyAccumulator, soft_entropy

L, N, D, M = 2, 80, 6, 10


def _data(seed=0):
    r = np.random.default_rng(seed)
    lab = r.integers(0, 7, N)
    z = torch.from_numpy(r.standard_normal((L, N, D)) + lab[None, :, None] * 0.4)
    return z, {"x": lab, "s": np.where(lab < 2, -1, lab)}


def _acc(**kw):
    kw.setdefault("n_bins", M)
    kw.setdefault("n_layers", L)
    return SoftEntropyAccumulator(D, **kw)


def test_update_accepts_tensors_that_require_grad():
    z, labels = _data()
    ref = _acc()
    ref.update(z, labels)
    acc = _acc()
    acc.update(z.float().requires_grad_(True) * 1.0, labels)  # a non-leaf in the graph, as a hidden state
    pl = acc.prepare_labels(labels)
    for layer in range(L):
        acc.update(z[layer].clone().requires_grad_(True), pl, layer=layer)
    np.testing.assert_allclose(acc.compute().entropy, ref.compute().entropy, atol=1e-6)


def test_merge_with_itself_is_refused():
    z, labels = _data()
    acc = _acc()
    acc.update(z, labels)
    with pytest.raises(ValueError, match="into itself"):
        acc.merge(acc)
    om = OnlineMatrixEntropy(D)
    om.update(z[0])
    with pytest.raises(ValueError, match="into itself"):
        om.merge(om)
    assert om.n == N  # unchanged


@pytest.mark.parametrize("kw, match", [
    (dict(null=True, null_seed=2), "null_seed"),
    (dict(null=False), "null differs"),
    (dict(seed=5), "reference_hash"),
    (dict(temperature=0.5), "temperature"),
    (dict(n_layers=3), "n_layers"),
])
def test_merge_of_different_settings_is_refused(kw, match):
    z, labels = _data()
    acc = _acc(null=True, null_seed=1)
    acc.update(z, labels)
    with pytest.raises(ValueError, match=match):
        acc.merge(_acc(**{"null": True, "null_seed": 1, **kw}))


def _state():
    z, labels = _data()
    acc = _acc(null=True)
    acc.update(z, labels)
    return acc.state_dict()


def _tamper(kind):
    st = _state()
    e = st["label_sets"]["x"]
    if kind == "missing_top":
        del st["counts"]
    elif kind == "missing_set_key":
        del e["row_n"]
    elif kind == "missing_null":
        del e["null_sums"]
    elif kind == "missing_label_set":
        del st["label_sets"]["s"]
    elif kind == "shape":
        e["sums"] = e["sums"][:, :1]
    elif kind == "negative_n":
        st["n_samples"] = -st["n_samples"]
    elif kind == "negative_row":
        e["row_n"][0, 0] = -1.0
    elif kind == "nan":
        e["sums"][0, 0, 0] = float("nan")
    elif kind == "inf":
        st["sample_entropy"][0] = float("inf")
    elif kind == "huge":
        e["sums"][0, 0, 0] = 1e300  # the mass no longer equals the sample count
    elif kind == "counts_off":
        e["row_n"][0, 0] += 5.0
    elif kind == "dtype":
        st["n_samples"] = st["n_samples"].double()
    elif kind == "not_tensor":
        e["keys"] = [1, 2, 3]
    return st


@pytest.mark.parametrize("kind, match", [
    ("missing_top", "missing keys"), ("missing_set_key", "must have keys"), ("missing_null", "null_sums"),
    ("missing_label_set", "one entry per label name"), ("shape", "shape"), ("negative_n", "negative"),
    ("negative_row", "negative"), ("nan", "non-finite"), ("inf", "non-finite"), ("huge", "mass"),
    ("counts_off", "row counts"), ("dtype", "integer"), ("not_tensor", "1-D integer"),
])
def test_tampered_state_dicts_are_rejected_before_anything_changes(kind, match):
    z, labels = _data(1)
    acc = _acc(null=True)
    acc.update(z, labels)
    before = acc.compute()
    with pytest.raises(ValueError, match=match):
        acc.load_state_dict(_tamper(kind))
    np.testing.assert_array_equal(acc.compute().mi["x"], before.mi["x"])  # untouched
    fresh = _acc(null=True)
    fresh.load_state_dict(_state())  # the untampered state still loads
    assert fresh.compute().n_samples == N


def test_state_dict_of_another_null_seed_is_rejected():
    with pytest.raises(ValueError, match="null_seed"):
        _acc(null=True, null_seed=9).load_state_dict(_state())


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s.pop("gram"), "missing keys"),
    (lambda s: s.update(n=-3), "n must be an integer"),
    (lambda s: s.update(n=2.5), "n must be an integer"),
    (lambda s: s.update(gram=torch.zeros(3, 3)), "shapes"),
    (lambda s: s["gram"].__setitem__((0, 0), float("nan")), "non-finite"),
    (lambda s: s["gram"].__setitem__((1, 1), -4.0), "inconsistent"),
    (lambda s: s.update(n=0), "inconsistent"),
])
def test_online_matrix_entropy_rejects_tampered_states(mutate, match):
    om = OnlineMatrixEntropy(D)
    om.update(_data()[0][0])
    state = om.state_dict()
    mutate(state)
    with pytest.raises(ValueError, match=match):
        OnlineMatrixEntropy(D).load_state_dict(state)


@pytest.mark.parametrize("t", [0.0, -0.1, float("nan"), float("inf"), 1e-300, 1e-20, 1e-9])
def test_temperature_outside_the_sane_range_is_rejected(t):
    with pytest.raises(ValueError, match="temperature"):
        _acc(temperature=t)
    with pytest.raises(ValueError, match="temperature"):
        soft_entropy(torch.randn(5, D), n_bins=M, temperature=t)


def test_smallest_accepted_temperature_gives_finite_results_or_a_clear_error():
    z, labels = _data()
    for dtype in (torch.float32, torch.float64):
        acc = _acc(temperature=1e-8)  # a hard argmax: finite results
        acc.update(z.to(dtype), labels)
        res = acc.compute()
        assert np.isfinite(res.mi["x"]).all() and np.isfinite(res.entropy).all()
    with pytest.raises(ValueError, match="too large for temperature"):
        _acc(temperature=1e-8).update(z.float() * 1e31, labels)  # |z| / eps overflows float32


@pytest.mark.parametrize("scale", [1e-25, 1e-30, 1e25])
def test_tiny_and_huge_vectors_are_directions_not_zero_vectors(scale):
    z, labels = _data()
    ref = _acc()
    ref.update(z.float(), labels)
    acc = _acc()
    acc.update(z.float() * scale, labels)  # the float32 norm under/overflows; recomputed in float64
    np.testing.assert_allclose(acc.compute().mi["x"], ref.compute().mi["x"], atol=1e-6)


def test_vectors_below_the_smallest_normal_float_are_called_too_small():
    z, labels = _data()
    with pytest.raises(ValueError, match="too small") as err:
        _acc().update(z.float() * 1e-42, labels)
    assert "zero vector" not in str(err.value)
    with pytest.raises(ValueError, match="too small"):  # the differentiable estimator says so too
        soft_entropy(torch.randn(5, D) * 1e-25, n_bins=M)


def test_zero_vectors_error_names_the_positions():
    z, labels = _data()
    z[1, 7] = 0
    z[0, 42] = 0
    with pytest.raises(ValueError, match=r"2 zero vector\(s\) at \(layer, position\) \(0, 42\), \(1, 7\)"):
        _acc().update(z, labels)
    with pytest.raises(ValueError, match=r"\(1, 7\).*zero_policy='skip'"):
        _acc().update(z[1], labels, layer=1)


def test_zero_policy_skip_leaves_positions_out_and_counts_them():
    z, labels = _data()
    z[1, 7] = 0
    z[1, 9] = 0
    z[0, 42] = 0
    keep0 = np.setdiff1d(np.arange(N), [42])
    keep1 = np.setdiff1d(np.arange(N), [7, 9])
    refs = []
    for layer, keep in ((0, keep0), (1, keep1)):
        ref = SoftEntropyAccumulator(D, n_bins=M)
        ref.update(z[layer, keep], {k: v[keep] for k, v in labels.items()})
        refs.append(ref.compute())
    outs = []
    for mode in ("all_layers", "layerwise", "layerwise_partial_flush", "merged_halves"):
        acc = _acc(zero_policy="skip")
        if mode == "all_layers":
            acc.update(z, labels)
        elif mode.startswith("layerwise"):
            pl = acc.prepare_labels(labels)
            for layer in range(L):
                acc.update(z[layer], pl, layer=layer)
                if mode == "layerwise_partial_flush" and layer == 0:
                    acc.state_dict()  # a flush point with only layer 0 staged
        else:
            other = _acc(zero_policy="skip")
            acc.update(z[:, :40], {k: v[:40] for k, v in labels.items()})
            other.update(z[:, 40:], {k: v[40:] for k, v in labels.items()})
            acc.merge(other)
        outs.append(acc.compute())
    for res in outs:
        assert list(res.n_skipped_zero) == [1, 2]
        assert list(res.n_samples_per_layer) == [N - 1, N - 2]
        for layer in range(L):
            assert res.entropy[layer] == pytest.approx(refs[layer].entropy[0], abs=1e-12)
            for k in labels:
                assert res.mi[k][layer] == pytest.approx(refs[layer].mi[k][0], abs=1e-12)
                assert res.n_labels[k] == refs[0].n_labels[k]
    acc = _acc(zero_policy="skip")
    acc.update(z, labels)
    again = _acc(zero_policy="skip")
    again.load_state_dict(acc.state_dict())
    assert list(again.compute().n_skipped_zero) == [1, 2]
    nolab = _acc(zero_policy="skip")
    nolab.update(z)
    assert list(nolab.compute().n_samples_per_layer) == [N - 1, N - 2]
    with pytest.raises(ValueError, match="zero_policy"):
        _acc(zero_policy="ignore")
