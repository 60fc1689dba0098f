"""The streaming protocol and its sync semantics (torchmetrics-style): sync never overwrites local
statistics, is idempotent, and updates after a sync are counted once. Two gloo processes vs one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp

from infoplane.estimators import OnlineMatrixEntropy, SoftEntropyAccumulator, StreamingEstimator

L, N, D, M = 2, 160, 6, 12


def _data():
    r = np.random.default_rng(3)
    lab = r.integers(0, 9, N)
    z = torch.from_numpy(r.standard_normal((L, N, D)) + lab[None, :, None] * 0.3)
    return z, {"x": lab, "y": np.where(lab % 4 == 0, -1, lab // 2)}


def _soft():
    return SoftEntropyAccumulator(D, n_bins=M, n_layers=L, null=True, null_seed=5)


def _shard(z, labels, idx):
    return z[:, idx], {k: v[idx] for k, v in labels.items()}


def _phase_indices(rank: int, world: int):
    """Phase A: the first 100 samples split by rank; phase B (after the sync): the rest."""
    return np.arange(rank, 100, world), np.arange(100 + rank, N, world)


def _worker(rank: int, world: int, path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}/rendezvous", rank=rank, world_size=world)
    try:
        z, labels = _data()
        a_idx, b_idx = _phase_indices(rank, world)
        acc, om = _soft(), OnlineMatrixEntropy(D)
        acc.update(*_shard(z, labels, a_idx))
        om.update(z[0, a_idx])
        out: dict = {"local_n_before": int(acc.compute().n_samples)}
        acc.sync()
        acc.sync()  # idempotent: not the total times the world size
        om.sync()
        om.sync()
        out["a_sync_twice"] = acc.state_dict()
        out["a_om"] = om.compute()
        out["a_om_n"] = om.state_dict()["n"]
        out["local_om_n"] = om.n  # the local rows are untouched by sync
        # update after sync: the view is dropped, the local statistics grow, a new sync counts all once
        acc.update(*_shard(z, labels, b_idx))
        om.update(z[0, b_idx])
        out["local_n_after"] = int(acc.compute().n_samples)
        out["b_compute_sync"] = acc.compute(sync=True).n_samples
        out["b_om_compute_sync"] = om.compute(sync=True)
        out["b_local_after_compute_sync"] = int(acc.compute().n_samples)  # compute(sync=True) left it local
        acc.sync()
        om.sync()
        out["b_state"] = acc.state_dict()
        out["b_om"] = om.compute()
        out["b_om_n"] = om.state_dict()["n"]
        torch.save(out, f"{path}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _single(idx):
    z, labels = _data()
    acc, om = _soft(), OnlineMatrixEntropy(D)
    acc.update(*_shard(z, labels, idx))
    om.update(z[0, idx])
    return acc, om


def _from_state(state):
    acc = _soft()
    acc.load_state_dict(state)
    return acc


def _assert_results_equal(a, b, tol=1e-12, null=False):
    """Equal counts and estimates; the permutation null only with ``null`` (it depends on which samples
    share a batch, so a sharded run has a different, equally valid, null)."""
    assert list(a.n_samples_per_layer) == list(b.n_samples_per_layer)
    np.testing.assert_allclose(a.entropy, b.entropy, rtol=0, atol=tol)
    for k in b.label_sets:
        np.testing.assert_allclose(a.mi[k], b.mi[k], rtol=0, atol=tol)
        if null:
            np.testing.assert_allclose(a.mi_null[k], b.mi_null[k], rtol=0, atol=tol)
        assert a.n_labels[k] == b.n_labels[k]


def test_two_gloo_processes_sync_twice_update_after_sync_compute_with_sync(tmp_path):
    world = 2
    tmp.spawn(_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    ref_a, om_a = _single(np.arange(100))
    ref_b, om_b = _single(np.arange(N))
    outs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for rank, out in enumerate(outs):
        a_idx, b_idx = _phase_indices(rank, world)
        assert out["local_n_before"] == len(a_idx)
        assert out["local_om_n"] == len(a_idx)
        _assert_results_equal(_from_state(out["a_sync_twice"]).compute(), ref_a.compute())
        assert out["a_om_n"] == 100 and out["a_om"] == pytest.approx(om_a.compute(), abs=1e-12)
        assert out["local_n_after"] == len(a_idx) + len(b_idx)
        assert out["b_compute_sync"] == N
        assert out["b_local_after_compute_sync"] == len(a_idx) + len(b_idx)
        assert out["b_om_compute_sync"] == pytest.approx(om_b.compute(), abs=1e-12)
        _assert_results_equal(_from_state(out["b_state"]).compute(), ref_b.compute())
        assert out["b_om_n"] == N and out["b_om"] == pytest.approx(om_b.compute(), abs=1e-12)
    # every rank holds the identical total, bitwise
    s0, s1 = (_from_state(o["b_state"]).compute() for o in outs)
    np.testing.assert_array_equal(s0.mi["x"], s1.mi["x"])
    np.testing.assert_array_equal(s0.mi_null["x"], s1.mi_null["x"])


def test_both_estimators_implement_the_protocol():
    for est in (_soft(), OnlineMatrixEntropy(D)):
        assert isinstance(est, StreamingEstimator)
        assert est.sync() is est and not est.is_synced  # no process group: a no-op
        assert est.unsync() is est


def test_sync_without_process_group_reports_local_statistics():
    z, labels = _data()
    acc = _soft()
    acc.update(z, labels)
    before = acc.compute()
    acc.sync()
    acc.sync()
    _assert_results_equal(acc.compute(sync=True), before, tol=0, null=True)
    _assert_results_equal(acc.compute(), before, tol=0, null=True)
    om = OnlineMatrixEntropy(D)
    om.update(z[0])
    assert om.sync().compute(sync=True) == om.compute() and om.n == N


def test_synced_view_is_dropped_by_update_and_refused_by_merge():
    """With a (simulated) synced view: reads report it; update / reset drop it; merging it is refused."""
    z, labels = _data()
    acc, total = _soft(), _soft()
    acc.update(*_shard(z, labels, np.arange(50)))
    total.update(*_shard(z, labels, np.arange(100)))
    acc._synced_view = total  # what sync() installs on a rank
    assert acc.is_synced and acc.compute().n_samples == 100 and acc.state_dict()["n_samples"][0] == 100
    other = _soft()
    with pytest.raises(ValueError, match="synced"):
        other.merge(acc)
    acc.update(*_shard(z, labels, np.arange(50, 60)))
    assert not acc.is_synced and acc.compute().n_samples == 60
    om, om_total = OnlineMatrixEntropy(D), OnlineMatrixEntropy(D)
    om.update(z[0, :5])
    om_total.update(z[0, :9])
    om._synced_view = om_total
    assert om.state_dict()["n"] == 9 and om.n == 5
    with pytest.raises(ValueError, match="synced"):
        OnlineMatrixEntropy(D).merge(om)
    om.reset()
    assert not om.is_synced
