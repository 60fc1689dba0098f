"""Huge-page backed CPU buffers (estimators.hostmem) and the accumulator's use of them."""

from __future__ import annotations

import gc
import mmap

import numpy as np
import pytest
import torch

from infoplane.estimators import SoftEntropyAccumulator, hostmem

needs_thp = pytest.mark.skipif(not hasattr(mmap, "MADV_HUGEPAGE"), reason="platform without MADV_HUGEPAGE")
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _empty_pool():
    hostmem.release()
    yield
    gc.collect()
    hostmem.release()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE


@needs_thp
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int64])
def test_new_buffers_are_zero_contiguous_and_aligned(dtype):
    shape = (1025, 31, 100)
    t, zeroed = hostmem.buffer(shape, dtype)
    assert zeroed
    assert t.shape == shape and t.dtype == dtype and t.is_contiguous()
    assert t.data_ptr() % (2 * MIB) == 0
    assert int(torch.count_nonzero(t)) == 0
    t[-1, -1, -1] = 7  # the last element is writable: the mapping covers the whole tensor
    assert int(t.sum()) == 7


@needs_thp
def test_a_mapping_is_reused_only_after_its_last_view_is_freed():
    t, _ = hostmem.buffer((4096, 1024), torch.float64)
    ptr = t.data_ptr()
    t.fill_(3.0)
    v = t[100:110]
    del t
    gc.collect()
    other, zeroed = hostmem.buffer((4096, 1024), torch.float64)  # the view still holds the first mapping
    assert zeroed and other.data_ptr() != ptr
    v.fill_(2.0)
    assert float(v.sum()) == 2.0 * 10 * 1024
    del v, other
    gc.collect()
    again, zeroed = hostmem.buffer((4000, 1024), torch.float64)  # fits the idle first mapping
    assert not zeroed and again.data_ptr() == ptr
    assert float(again[0, 0]) == 3.0  # stale contents: the caller was told (zeroed=False)
    del again
    z = hostmem.zeros((4096, 1024), torch.float64)  # zeros() clears a reused mapping
    assert int(torch.count_nonzero(z)) == 0


@needs_thp
def test_idle_mappings_are_bounded_and_released(monkeypatch):
    before = _rss_bytes()
    for _ in range(40):  # 40 x 64 MiB written and dropped: one mapping, reused
        t = hostmem.zeros((8 * MIB,), torch.float64)
        t.fill_(1.0)
        del t
    gc.collect()
    assert hostmem.idle_bytes() >= 64 * MIB
    assert _rss_bytes() - before < 512 * MIB
    monkeypatch.setenv("INFOPLANE_HOSTMEM_RETAIN", str(100 * MIB))
    for k in range(1, 8):  # growing sizes never fit an idle mapping; at most 100 MiB stay idle
        t = hostmem.zeros((k * 4 * MIB,), torch.float64)
        t.fill_(1.0)
        del t
        gc.collect()
        assert hostmem.idle_bytes() <= 100 * MIB + k * 32 * MIB + 2 * MIB
    assert hostmem.release() > 0
    assert hostmem.idle_bytes() == 0
    assert _rss_bytes() - before < 512 * MIB
    monkeypatch.setenv("INFOPLANE_HOSTMEM_RETAIN", "lots")
    with pytest.raises(ValueError, match="INFOPLANE_HOSTMEM_RETAIN"):
        hostmem.retain_limit()


@needs_thp
def test_a_new_mapping_takes_the_place_of_idle_ones_when_memory_is_short(monkeypatch):
    t = hostmem.zeros((4 * MIB,), torch.float64)
    del t
    gc.collect()
    assert hostmem.idle_bytes() >= 32 * MIB
    u, zeroed = hostmem.buffer((2 * MIB,), torch.float64)  # fits the idle mapping: reused, not new
    assert not zeroed
    del u
    monkeypatch.setattr(hostmem, "mem_available", lambda: 64 * MIB)  # less than twice the new 80 MiB
    v, zeroed = hostmem.buffer((10 * MIB,), torch.float64)  # does not fit: a new mapping
    assert zeroed and hostmem.idle_bytes() == 0  # the idle 32 MiB were given back first
    del v


def test_small_buffers_other_devices_and_switch_off_use_torch(monkeypatch):
    assert hostmem.buffer((10, 10), torch.float64) is None  # below MIN_BYTES
    assert hostmem.buffer((4096, 1024), torch.float64, device="meta") is None
    monkeypatch.setenv("INFOPLANE_HUGE_PAGES", "0")
    assert not hostmem.huge_pages_enabled()
    assert hostmem.buffer((4096, 1024), torch.float64) is None
    z = hostmem.zeros((4096, 1024), torch.float64)
    assert z.shape == (4096, 1024) and int(torch.count_nonzero(z)) == 0


def _stream_state(seed: int, layerwise: bool) -> tuple[dict, bool]:
    """A stream whose label rows grow across batches (doubling), with the permutation null."""
    rng = np.random.default_rng(seed)
    L, d, n = 3, 16, 600
    acc = SoftEntropyAccumulator(d, n_bins=32, n_layers=L, null=True, null_seed=3)
    for _ in range(4):
        z = torch.from_numpy(rng.standard_normal((L, n, d)))
        lab = {"a": rng.integers(0, 900, n), "b": np.where(rng.random(n) < 0.3, -1, rng.integers(0, 300, n))}
        if layerwise:
            prepared = acc.prepare_labels(lab)
            for layer in range(L):
                acc.update(z[layer], prepared, layer=layer)
        else:
            acc.update(z, lab)
    rows = acc._labels.sets["a"]
    mapped = all(t.data_ptr() % (2 * MIB) == 0 for t in (rows.sums, rows.null_sums, rows.row_n))
    return acc.state_dict(), mapped


@pytest.mark.parametrize("layerwise", [False, True])
def test_accumulator_state_is_bitwise_the_same_with_fresh_reused_and_plain_buffers(monkeypatch, layerwise):
    monkeypatch.setattr(hostmem, "MIN_BYTES", 1 << 12)  # every row buffer and scratch buffer mapped
    first, was_mapped = _stream_state(0, layerwise)
    gc.collect()
    idle = hostmem.idle_bytes()  # the first run's buffers, stale, for the second run to reuse
    mapped, _ = _stream_state(0, layerwise)
    monkeypatch.setenv("INFOPLANE_HUGE_PAGES", "0")
    plain, _ = _stream_state(0, layerwise)
    assert was_mapped == hasattr(mmap, "MADV_HUGEPAGE")  # the first run did use mapped buffers
    assert (idle > 0) == hasattr(mmap, "MADV_HUGEPAGE")
    for key in ("n_samples", "counts", "sample_entropy"):
        assert torch.equal(first[key], plain[key]), key
    assert mapped["label_names"] == plain["label_names"] == ["a", "b"]
    for name in ("a", "b"):
        for key, value in plain["label_sets"][name].items():
            assert torch.equal(mapped["label_sets"][name][key], value), (name, key)
    for key in ("n_samples", "counts", "sample_entropy"):
        assert torch.equal(mapped[key], plain[key]), key


def test_available_memory_counts_idle_mappings_and_falls_back_to_physical_memory(monkeypatch):
    from infoplane.estimators.memory import available_memory

    monkeypatch.setattr(hostmem, "mem_available", lambda: 1000 * MIB)
    monkeypatch.setattr(hostmem, "idle_bytes", lambda: 200 * MIB)
    assert available_memory("cpu", fraction=0.5) == 600 * MIB
    monkeypatch.setattr(hostmem, "mem_available", lambda: None)
    monkeypatch.setattr(hostmem, "physical_memory", lambda: 4000 * MIB)
    assert available_memory("cpu", fraction=0.25) == 1000 * MIB
    monkeypatch.setattr(hostmem, "physical_memory", lambda: None)
    assert available_memory("cpu", fraction=1.0) == 8 << 30
