"""Streaming accumulator: known answers, exact identities, invariances, merge/state/sync, bad input."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.estimators import (
    PreparedLabels,
    SoftEntropyAccumulator,
    calibrate_temperature,
    reference_points,
    soft_entropy,
)

L, N, D, M = 3, 240, 8, 20


def _data(seed=0, n=N, d=D, n_layers=L, k=15):
    r = np.random.default_rng(seed)
    centers = r.standard_normal((k, d))
    lab = r.integers(0, k, n)
    z = np.stack([centers[lab] * (layer + 1) * 0.5 + r.standard_normal((n, d)) for layer in range(n_layers)])
    labels = {
        "uni": lab,
        "bi": lab * 1000 + r.integers(0, 4, n),
        "neg": np.where(r.random(n) < 0.3, -1, lab % 5),
    }
    return torch.from_numpy(z), labels


def _acc(**kw):
    kw.setdefault("n_bins", M)
    kw.setdefault("n_layers", L)
    return SoftEntropyAccumulator(D, **kw)


def _assert_same(a, b, tol=1e-10):
    np.testing.assert_allclose(a.entropy, b.entropy, rtol=0, atol=tol)
    np.testing.assert_allclose(a.capacity, b.capacity, rtol=0, atol=tol)
    assert a.label_sets == b.label_sets
    for k in a.label_sets:
        np.testing.assert_allclose(a.mi[k], b.mi[k], rtol=0, atol=tol)
        np.testing.assert_allclose(a.conditional_entropy[k], b.conditional_entropy[k], rtol=0, atol=tol)
        assert a.n_labels[k] == b.n_labels[k]
        assert a.singleton_mass[k] == pytest.approx(b.singleton_mass[k], abs=1e-15)


def test_matches_numpy_oracle(oracle):
    z, labels = _data()
    acc = _acc()
    acc.update(z, labels)
    res = acc.compute()
    w = reference_points(M, D).numpy()
    eps = calibrate_temperature(M, D)
    for layer in range(L):
        p = oracle.assign(z[layer].numpy(), w, eps)
        assert res.entropy[layer] == pytest.approx(oracle.h(p.sum(0)) / math.log(M), abs=1e-12)
        mse = np.mean([oracle.h(row) for row in p]) / math.log(M)
        assert res.mean_sample_entropy[layer] == pytest.approx(mse, abs=1e-12)
        for name, lab in labels.items():
            assert res.mi[name][layer] == pytest.approx(oracle.mi(p, lab), abs=1e-12)
            assert res.regularity[name][layer] == pytest.approx(res.mi[name][layer] / res.entropy[layer])
    assert res.n_samples == N and res.label_sets == ["bi", "neg", "uni"]
    assert res.n_labels["uni"] == len(np.unique(labels["uni"]))
    neg = labels["neg"]
    assert res.n_labels["neg"] == len(np.unique(neg[neg >= 0])) + int((neg < 0).sum())
    vals, counts = np.unique(labels["bi"], return_counts=True)
    assert res.singleton_mass["bi"] == pytest.approx((counts == 1).sum() / N)
    assert res.singleton_mass["neg"] == pytest.approx((neg < 0).sum() / N)
    assert res.temperature == eps and res.n_bins == M and len(res.reference_hash) == 16


def test_uniform_sphere_and_capacity():
    g = torch.Generator().manual_seed(0)
    acc = SoftEntropyAccumulator(64, n_bins=100)
    for _ in range(4):
        acc.update(torch.randn(5000, 64, generator=g))
    res = acc.compute()
    assert res.entropy[0] > 0.999
    assert 0.5 < res.capacity[0] < 0.7  # capacity of uniform directions at (d, m) = (64, 100) is ~0.61
    assert res.label_sets == [] and res.mi == {}
    rec = res.to_records()
    assert rec == [
        {
            "layer": 0,
            "label_set": "",
            "entropy": res.entropy[0],
            "capacity": res.capacity[0],
            "n_samples": 20000,
        }
    ]


def test_point_mass_mi_zero(oracle):
    z = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0, 0.2, -0.7], dtype=torch.float64).repeat(L, 90, 1)
    acc = _acc()
    acc.update(z, {"a": np.arange(90) % 7, "b": np.arange(90)})
    res = acc.compute()
    p = oracle.assign(z[0, :1].numpy(), reference_points(M, D).numpy(), calibrate_temperature(M, D))[0]
    np.testing.assert_allclose(res.entropy, oracle.h(p) / math.log(M), atol=1e-13)
    for k in ("a", "b"):
        np.testing.assert_allclose(res.mi[k], 0.0, atol=1e-13)
    np.testing.assert_allclose(res.capacity, 0.0, atol=1e-13)


def test_identity_labels_reach_capacity():
    z, _ = _data()
    acc = _acc()
    acc.update(z, {"ids": np.arange(N) * 13 + 5, "singletons": -np.ones(N, dtype=np.int64)})
    res = acc.compute()
    np.testing.assert_allclose(res.mi["ids"], res.capacity, atol=1e-12)
    np.testing.assert_allclose(res.mi["singletons"], res.capacity, atol=1e-12)
    assert res.singleton_mass["ids"] == 1.0 == res.singleton_mass["singletons"]
    assert res.n_labels["ids"] == N == res.n_labels["singletons"]


def _cond_mi_direct(oracle, p, x1, x2):
    """I(X2; B | X1) / log m computed directly: sum_x1 P(x1) [H(B|x1) - sum_x2 P(x2|x1) H(B|x1,x2)]."""
    n = len(x1)
    out = 0.0
    for a in np.unique(x1):
        sel = x1 == a
        h1 = oracle.h(p[sel].sum(0))
        inner = sum(
            (x2[sel] == b).sum() / sel.sum() * oracle.h(p[sel][x2[sel] == b].sum(0))
            for b in np.unique(x2[sel])
        )
        out += sel.sum() / n * (h1 - inner)
    return out / math.log(p.shape[1])


def test_refinement_chain_rule_and_coarsening(oracle):
    z, labels = _data()
    uni, bi = labels["uni"], labels["bi"]
    acc = _acc()
    acc.update(z, {"uni": uni, "bi": bi, "coarse": uni // 3})
    res = acc.compute()
    assert np.all(res.mi["bi"] >= res.mi["uni"] - 1e-14)  # a refinement never has lower MI
    assert np.all(res.mi["coarse"] <= res.mi["uni"] + 1e-14)  # merging labels never adds MI
    w, eps = reference_points(M, D).numpy(), calibrate_temperature(M, D)
    for layer in range(L):
        p = oracle.assign(z[layer].numpy(), w, eps)
        direct = _cond_mi_direct(oracle, p, uni, bi % 1000)
        assert res.mi["bi"][layer] - res.mi["uni"][layer] == pytest.approx(direct, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), k=st.integers(1, 30), merge_to=st.integers(1, 10))
def test_bounds_and_coarsening_property(seed, k, merge_to):
    r = np.random.default_rng(seed)
    z = torch.from_numpy(r.standard_normal((2, 60, D)))
    lab = r.integers(0, k, 60)
    acc = _acc(n_layers=2)
    acc.update(z, {"x": lab, "merged": lab % merge_to})
    res = acc.compute()
    bound = np.minimum(np.minimum(res.entropy, res.capacity), math.log(len(np.unique(lab))) / math.log(M))
    assert np.all(res.mi["x"] >= -1e-12) and np.all(res.mi["x"] <= bound + 1e-12)
    assert np.all(res.mi["merged"] <= res.mi["x"] + 1e-12)


def test_split_invariance_batches_layers_shards_merge():
    z, labels = _data()
    one = _acc()
    one.update(z, labels)
    ref = one.compute()
    # batches of uneven size, layer-by-layer with prepared labels
    acc = _acc()
    for a, b in [(0, 17), (17, 18), (18, 150), (150, N)]:
        pl = acc.prepare_labels({k: v[a:b] for k, v in labels.items()})
        assert isinstance(pl, PreparedLabels)
        for layer in (2, 0, 1):
            acc.update(z[layer, a:b], pl, layer=layer)
    _assert_same(acc.compute(), ref)
    # shards merged (shuffled order of samples as well)
    perm = np.random.default_rng(1).permutation(N)
    shards = []
    for idx in np.array_split(perm, 3):
        s = _acc()
        s.update(z[:, idx], {k: v[idx] for k, v in labels.items()})
        shards.append(s)
    merged = _acc()
    for s in shards:
        merged.merge(s)
    _assert_same(merged.compute(), ref)
    shards[0].merge(shards[1]).merge(shards[2])
    _assert_same(shards[0].compute(), ref)


def test_many_batches_growth_and_duplication():
    z, labels = _data(n=600)
    ref_acc = _acc()
    ref_acc.update(z, labels)
    ref = ref_acc.compute()
    acc = _acc()
    for a in range(0, 600, 7):  # many tiny batches: label rows grow many times
        acc.update(z[:, a : a + 7], {k: v[a : a + 7] for k, v in labels.items()})
    _assert_same(acc.compute(), ref)
    dup = _acc()
    dup.update(torch.cat([z, z], 1), {k: np.concatenate([v, v]) for k, v in labels.items()})
    res = dup.compute()
    np.testing.assert_allclose(res.entropy, ref.entropy, atol=1e-12)  # dataset duplication invariance
    np.testing.assert_allclose(res.mi["uni"], ref.mi["uni"], atol=1e-12)


def test_invariances():
    z, labels = _data()
    acc = _acc()
    acc.update(z, labels)
    ref = acc.compute()
    r = np.random.default_rng(3)
    scaled = _acc()
    scaled.update(z * torch.from_numpy(r.uniform(0.01, 100, (L, N, 1))), labels)
    _assert_same(scaled.compute(), ref, 1e-12)
    q, _ = torch.linalg.qr(torch.from_numpy(r.standard_normal((D, D))))
    rot = _acc(reference_points=reference_points(M, D) @ q)
    rot.update(z @ q, labels)
    _assert_same(rot.compute(), ref, 1e-12)
    relabel = {k: np.where(v >= 0, (v * 7919 + 2**40) % (2**62), v) for k, v in labels.items()}
    rel = _acc()
    rel.update(z, relabel)
    _assert_same(rel.compute(), ref, 1e-12)


def test_state_dict_round_trip_weights_only():
    z, labels = _data()
    full = _acc(null=True)
    full.update(z, labels)
    ref = full.compute()
    half = _acc(null=True)
    half.update(z[:, :100], {k: v[:100] for k, v in labels.items()})
    buf = io.BytesIO()
    torch.save(half.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = _acc(null=True)
    resumed.load_state_dict(state)
    resumed.update(z[:, 100:], {k: v[100:] for k, v in labels.items()})
    out = resumed.compute()
    _assert_same(out, ref)
    # the split changes the permutation null (documented), the real statistics do not
    assert set(out.mi_null) == set(labels)
    with pytest.raises(ValueError, match="temperature"):
        _acc(temperature=0.3, null=True).load_state_dict(state)
    with pytest.raises(ValueError, match="n_layers"):
        SoftEntropyAccumulator(D, n_bins=M, n_layers=2, null=True).load_state_dict(state)


def test_bf16_counts_sum_to_n():
    g = torch.Generator().manual_seed(0)
    acc = SoftEntropyAccumulator(32, n_bins=100)
    n = 0
    for _ in range(20):
        zb = torch.randn(2000, 32, generator=g).to(torch.bfloat16)
        acc.update(zb, torch.randint(0, 50, (2000,), generator=g))
        n += 2000
    st_ = acc.state_dict()
    assert st_["counts"].dtype == torch.float64
    assert abs(float(st_["counts"].sum()) - n) / n < 1e-9
    rows = st_["label_sets"]["labels"]
    assert abs(float(rows["sums"].sum()) - n) / n < 1e-9 and float(rows["row_n"].sum()) == n
    res = acc.compute()
    f32 = SoftEntropyAccumulator(32, n_bins=100)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        zb = torch.randn(2000, 32, generator=g).to(torch.bfloat16).float()
        f32.update(zb, torch.randint(0, 50, (2000,), generator=g))
    assert res.entropy[0] == pytest.approx(f32.compute().entropy[0], abs=1e-9)


def test_null_is_seeded_and_near_zero_for_independent_labels():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(1, 4000, D, generator=g, dtype=torch.float64)
    lab = torch.randint(0, 4, (4000,), generator=g)
    res = []
    for _ in range(2):
        acc = _acc(n_layers=1, null=True, null_seed=11)
        acc.update(z, {"x": lab})
        res.append(acc.compute())
    assert res[0].mi_null["x"][0] == res[1].mi_null["x"][0]  # deterministic given the seed
    assert 0 <= res[0].mi_null["x"][0] < 5e-3
    assert abs(res[0].mi["x"][0] - res[0].mi_null["x"][0]) < 5e-3  # labels independent of z
    rec = res[0].to_records()
    assert rec[0]["mi_null"] == res[0].mi_null["x"][0]
    assert set(rec[0]) == {
        "layer",
        "label_set",
        "entropy",
        "mi",
        "mi_null",
        "conditional_entropy",
        "regularity",
        "capacity",
        "n_labels",
        "singleton_mass",
        "n_samples",
    }


def test_state_nbytes_and_reset():
    z, labels = _data()
    acc = _acc()
    small = acc.state_nbytes()
    acc.update(z, labels)
    assert acc.state_nbytes() > small
    pl = acc.prepare_labels({k: v[:10] for k, v in labels.items()})
    acc.reset()
    with pytest.raises(ValueError, match="prepare_labels again"):
        acc.update(z[:, :10], pl)
    acc.update(z[:, :10])  # after reset, label sets can change
    assert acc.compute().n_samples == 10


def _bad_updates():
    z, labels = _data()
    zz = z.clone()
    zz[1, 3, 2] = float("nan")
    zero = z.clone()
    zero[0, 5] = 0
    return [
        (dict(z=zz, labels=labels), "finite"),
        (dict(z=zero, labels=labels), "nonzero norm"),
        (dict(z=z[:, :0], labels={k: v[:0] for k, v in labels.items()}), "empty batch"),
        (dict(z=z, labels={"uni": labels["uni"][:-1]}), "length N=240"),
        (dict(z=z, labels={"uni": labels["uni"].astype(float)}), "integer"),
        (dict(z=z[..., :5], labels=labels), "d=8"),
        (dict(z=z[:2], labels=labels), "L=n_layers=3"),
        (dict(z=z[0], labels=labels), "pass layer=l"),
        (dict(z=z[0], labels=labels, layer=3), r"layer must be an integer in \[0, 3\)"),
        (dict(z=z[0], labels=labels, layer=-1), "layer must be"),
        (dict(z=z, labels=labels, layer=0), "layer must be None"),
        (dict(z=z[0, 0], labels=None), r"\[N, d\] or \[L, N, d\]"),
        (dict(z=z.long(), labels=None), "floating"),
    ]


@pytest.mark.parametrize("case", range(13))
def test_bad_input(case):
    kwargs, match = _bad_updates()[case]
    with pytest.raises(ValueError, match=match):
        _acc().update(**kwargs)


def test_bad_sequences_and_config():
    z, labels = _data()
    acc = _acc()
    acc.update(z, labels)
    with pytest.raises(ValueError, match="same in every update"):
        acc.update(z, {"uni": labels["uni"]})
    with pytest.raises(ValueError, match="labels are required"):
        acc.update(z)
    other = _acc()
    with pytest.raises(ValueError, match="another accumulator"):
        acc.update(z, other.prepare_labels(labels))
    with pytest.raises(ValueError, match="N=10"):
        acc.update(z, acc.prepare_labels({k: v[:10] for k, v in labels.items()}))
    with pytest.raises(ValueError, match="reference_hash"):
        acc.merge(_acc(seed=1))
    with pytest.raises(ValueError, match="temperature"):
        acc.merge(_acc(temperature=0.5))
    with pytest.raises(ValueError, match="dim"):
        acc.merge(SoftEntropyAccumulator(D + 1, n_bins=M, n_layers=L))
    no_labels = _acc()
    no_labels.update(z)
    with pytest.raises(ValueError, match="label sets differ"):
        acc.merge(no_labels)
    for kw, match in [
        (dict(dim=1), "dim"),
        (dict(dim=D, n_bins=1), "n_bins"),
        (dict(dim=D, n_layers=0), "n_layers"),
        (dict(dim=D, reference_points=torch.ones(4, D + 1)), "d=8"),
        (dict(dim=D, reference_points=torch.zeros(4, D)), "nonzero"),
    ]:
        with pytest.raises(ValueError, match=match):
            SoftEntropyAccumulator(**kw)


def _sync_worker(rank: int, world: int, path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}/rendezvous", rank=rank, world_size=world)
    try:
        z, labels = _data()
        idx = np.arange(rank, N, world)
        acc = _acc()
        acc.update(z[:, idx], {k: v[idx] for k, v in labels.items()})
        acc.sync()
        torch.save(acc.state_dict(), f"{path}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sync_two_process_gloo(tmp_path):
    tmp.spawn(_sync_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    z, labels = _data()
    one = _acc()
    one.update(z, labels)
    ref = one.compute()
    results = []
    for rank in range(2):
        acc = _acc()
        acc.load_state_dict(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True))
        results.append(acc.compute())
        _assert_same(results[-1], ref)
    np.testing.assert_array_equal(results[0].mi["bi"], results[1].mi["bi"])  # ranks agree bitwise
    assert _acc().sync() is not None  # no-op without an initialised process group


def test_functional_and_accumulator_agree():
    z, labels = _data()
    acc = _acc()
    acc.update(z, labels)
    res = acc.compute()
    for layer in range(L):
        assert res.entropy[layer] == pytest.approx(float(soft_entropy(z[layer], n_bins=M)), abs=1e-12)


def test_scratch_buffers_reused_across_batch_sizes():
    z, labels = _data()
    one = _acc()
    one.update(z, labels)
    acc = _acc()
    for a, b in [(0, 200), (200, 210), (210, N)]:  # a large batch, then smaller ones, then a free
        acc.update(z[:, a:b], {k: v[a:b] for k, v in labels.items()})
        acc.free_workspace()
    _assert_same(acc.compute(), one.compute())


@settings(max_examples=10, deadline=None)
@given(cuts=st.lists(st.integers(1, N - 1), max_size=5, unique=True), layerwise=st.booleans())
def test_any_split_equals_one_batch_property(cuts, layerwise):
    z, labels = _data()
    one = _acc(null=False)
    one.update(z, labels)
    acc = _acc()
    edges = [0, *sorted(cuts), N]
    for a, b in zip(edges, edges[1:]):
        part = {k: v[a:b] for k, v in labels.items()}
        if layerwise:
            pl = acc.prepare_labels(part)
            for layer in range(L):
                acc.update(z[layer, a:b], pl, layer=layer)
        else:
            acc.update(z[:, a:b], part)
    _assert_same(acc.compute(), one.compute())


def test_layer_by_layer_staging_partial_and_flush_points():
    z, labels = _data()
    part = {k: v[:100] for k, v in labels.items()}
    rest = {k: v[100:] for k, v in labels.items()}
    acc = _acc()
    acc.update(z[:, :100], part)
    pl = acc.prepare_labels(rest)
    acc.update(z[1, 100:], pl, layer=1)  # only layer 1 of the second batch: staged, then flushed
    state = acc.state_dict()  # flush point
    res = acc.compute()
    assert list(res.n_samples_per_layer) == [100, N, 100]
    for layer in range(L):
        single = SoftEntropyAccumulator(D, n_bins=M)
        stop = N if layer == 1 else 100
        single.update(z[layer, :stop], {k: v[:stop] for k, v in labels.items()})
        one = single.compute()
        assert res.entropy[layer] == pytest.approx(one.entropy[0], abs=1e-12)
        for k in labels:
            assert res.mi[k][layer] == pytest.approx(one.mi[k][0], abs=1e-12)
    again = _acc()
    again.load_state_dict(state)
    _assert_same(again.compute(), res)
    # layer-by-layer updates (interleaved with another accumulator) merge like one [L, N, d] update
    a, b = _acc(), _acc()
    pb = b.prepare_labels(labels)
    for layer in range(L):
        b.update(z[layer], pb, layer=layer)
        if layer == 0:
            a.update(z, labels)
    a.merge(b)
    both = _acc()
    both.update(torch.cat([z, z], 1), {k: np.concatenate([v, v]) for k, v in labels.items()})
    _assert_same(a.compute(), both.compute())


def test_cpu_threads_setting_does_not_change_results():
    z, labels = _data()
    ref = _acc()
    ref.update(z, labels)
    before = torch.get_num_threads()
    pool = _acc(cpu_threads=None)
    pool.update(z, labels)
    two = _acc(cpu_threads=2)
    two.update(z, labels)
    assert torch.get_num_threads() == before  # restored
    _assert_same(pool.compute(), ref.compute(), 1e-12)
    _assert_same(two.compute(), ref.compute(), 1e-12)
    with pytest.raises(ValueError, match="cpu_threads"):
        _acc(cpu_threads=0)


@pytest.mark.parametrize("threads", [1, 3])
def test_layer_and_label_set_workers_give_the_same_state_bitwise(threads):
    """cpu_threads=1 spreads layers and label sets over torch.get_num_threads() worker threads; the state
    equals the one-thread run and the layer-by-layer run to the last bit."""
    z, labels = _data()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        par = _acc(null=True)
        par.update(z, labels)
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    torch.set_num_threads(1)
    try:
        serial = _acc(null=True)
        serial.update(z, labels)
    finally:
        torch.set_num_threads(before)
    layerwise = _acc(null=True)
    prepared = layerwise.prepare_labels(labels)
    for layer in range(L):
        layerwise.update(z[layer], prepared, layer=layer)
    a, b, c = par.state_dict(), serial.state_dict(), layerwise.state_dict()
    for key in ("n_samples", "counts", "sample_entropy"):
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]), key
    for name in a["label_sets"]:
        for key, value in a["label_sets"][name].items():
            assert torch.equal(value, b["label_sets"][name][key]), (name, key)
            assert torch.equal(value, c["label_sets"][name][key]), (name, key)


def test_a_worker_error_reaches_the_caller():
    from infoplane.estimators.kernel import run_parallel

    seen = []

    def work(i):
        if i == 2:
            raise ValueError("worker 2 failed")
        seen.append(i)

    with pytest.raises(ValueError, match="worker 2 failed"):
        run_parallel(work, range(4), 2)
    assert sorted(seen) == [0, 1, 3]  # the other items still ran


def test_null_depends_on_batch_content_not_order_or_shard():
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(64, 8, generator=g), torch.randint(0, 6, (64,), generator=g)) for _ in range(3)]
    one = SoftEntropyAccumulator(8, n_bins=16, null=True, null_seed=3)
    for z, y in batches:
        one.update(z, {"x": y})
    rev = SoftEntropyAccumulator(8, n_bins=16, null=True, null_seed=3)
    for z, y in reversed(batches):
        rev.update(z, {"x": y})
    shards = [SoftEntropyAccumulator(8, n_bins=16, null=True, null_seed=3) for _ in range(2)]
    for i, (z, y) in enumerate(batches):
        shards[i % 2].update(z, {"x": y})
    shards[0].merge(shards[1])
    want = one.compute().mi_null["x"][0]
    assert rev.compute().mi_null["x"][0] == pytest.approx(want, abs=1e-12)
    assert shards[0].compute().mi_null["x"][0] == pytest.approx(want, abs=1e-12)
    other_seed = SoftEntropyAccumulator(8, n_bins=16, null=True, null_seed=4)
    for z, y in batches:
        other_seed.update(z, {"x": y})
    assert other_seed.compute().mi_null["x"][0] != pytest.approx(want, abs=1e-9)
