"""Large CPU buffers in transparent huge pages, kept for reuse after they are freed.

A fresh accumulator writes hundreds of MiB of new state (label rows ``[K, L, m]`` float64, the ``[N, L, m]``
assignment scratch); a sweep builds a fresh one per checkpoint. With 4 KiB pages the first write costs one
page fault per 4 KiB, which on a 2-core machine took longer than the soft assignment itself (414 MiB: 0.17 s
for ``torch.zeros``, 0.02-0.03 s in 2 MiB pages). On virtual machines that hand freed memory back to the host
(free page reporting), faulting it in again can stall for a second. So:

* :func:`buffer` maps anonymous memory, aligned to 2 MiB, with ``madvise(MADV_HUGEPAGE)`` (honoured where
  transparent huge pages are set to ``madvise`` or ``always``, the common Linux defaults). A new mapping is
  zero-filled by the kernel and faulted in on first write only, so reserved capacity that is never written
  costs no memory (at 2 MiB granularity).
* When the last tensor viewing a mapping is freed, the mapping is kept (up to :func:`retain_limit` bytes of
  idle mappings, oldest dropped first) and handed to the next request of a fitting size, already faulted in;
  its contents are then stale, and :func:`buffer` says so (``zeroed=False``). A request that needs a new
  mapping first gives idle ones back (all of them when the system is short of memory), so idle memory never
  stands in the way of new state. :func:`release` unmaps every idle mapping; :func:`idle_bytes` reports them
  (the memory planner counts them as available).

Everywhere else (other devices, buffers under :data:`MIN_BYTES`, platforms without ``MADV_HUGEPAGE``, or
``INFOPLANE_HUGE_PAGES=0`` in the environment) callers use torch's allocator: same values, same dtype.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import threading

import torch

__all__ = ["buffer", "zeros", "huge_pages_enabled", "retain_limit", "idle_bytes", "release", "mem_available",
           "physical_memory", "MIN_BYTES"]

MIN_BYTES = 8 << 20  # buffers below 8 MiB use torch's allocator
_HUGE = 2 << 20  # transparent huge page size on x86-64 and most arm64 kernels


class _Mapping:
    """One mapping. ``base`` is the reference count of ``buf`` while only this object holds it, measured
    by the same call as :meth:`idle` (what the interpreter counts for a call argument varies by version)."""

    __slots__ = ("buf", "size", "base")

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf, self.size, self.base = buf, size, 0

    def refs(self) -> int:
        return sys.getrefcount(self.buf)

    def idle(self) -> bool:
        """No tensor views it: every ``torch.frombuffer`` export holds one reference to ``buf``."""
        return self.refs() <= self.base


_LOCK = threading.Lock()
_MAPPINGS: list[_Mapping] = []  # every mapping made here that is still mapped, oldest first


def huge_pages_enabled() -> bool:
    """Whether :func:`buffer` serves large CPU buffers (platform support, and not switched off with
    ``INFOPLANE_HUGE_PAGES=0``)."""
    if os.environ.get("INFOPLANE_HUGE_PAGES", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return all(hasattr(mmap, a) for a in ("MADV_HUGEPAGE", "MAP_PRIVATE", "MAP_ANONYMOUS"))


def physical_memory() -> int | None:
    """Bytes of physical memory (``None`` where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def mem_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (``None`` where unreadable)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def retain_limit() -> int:
    """Bytes of idle mappings kept for reuse: ``INFOPLANE_HOSTMEM_RETAIN`` (bytes) if set, else a quarter of
    physical memory."""
    env = os.environ.get("INFOPLANE_HOSTMEM_RETAIN")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError as exc:
            raise ValueError(f"INFOPLANE_HOSTMEM_RETAIN must be a number of bytes, got {env!r}") from exc
    total = physical_memory()
    return total // 4 if total is not None else 2 << 30


def idle_bytes() -> int:
    """Bytes held in idle mappings (free for reuse, resident in memory)."""
    with _LOCK:
        return sum(m.size for m in _MAPPINGS if m.idle())


def release() -> int:
    """Unmap every idle mapping; returns the bytes given back to the system."""
    with _LOCK:
        return _trim(0)


def _trim(limit: int) -> int:
    """Drop the oldest idle mappings until at most ``limit`` idle bytes remain (caller holds the lock)."""
    idle = [m for m in _MAPPINGS if m.idle()]
    excess, dropped = sum(m.size for m in idle) - limit, 0
    for m in idle:  # oldest first
        if excess <= 0:
            break
        _MAPPINGS.remove(m)
        excess -= m.size
        dropped += m.size
    return dropped


def _make_room(size: int) -> None:
    """Before a new mapping of ``size`` bytes: idle mappings plus the new one stay within
    :func:`retain_limit`, and every idle mapping is given back when the system has less than twice ``size``
    available (idle memory is counted as available by the memory planner, so it must yield to new state;
    caller holds the lock)."""
    _trim(max(0, retain_limit() - size))
    avail = mem_available()
    if avail is not None and avail < 2 * size:
        _trim(0)


def _view(m: _Mapping, nbytes: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    raw = torch.frombuffer(m.buf, dtype=torch.uint8)  # one export: ``m`` is busy until the last view dies
    skip = (-raw.data_ptr()) % _HUGE  # start on a 2 MiB boundary so every full huge page can be used
    return raw[skip : skip + nbytes].view(dtype).view(shape)


def buffer(shape: tuple[int, ...], dtype: torch.dtype,
           device: torch.device | str = "cpu") -> tuple[torch.Tensor, bool] | None:
    """A contiguous CPU tensor of ``shape`` and ``dtype`` in huge-page backed memory and whether it is
    zero-filled (``True`` for a new mapping, ``False`` for a reused one), or ``None`` where this does not
    apply (not the CPU, below :data:`MIN_BYTES`, no platform support, switched off): the caller then
    allocates with torch."""
    device = torch.device(device)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if device.type != "cpu" or nbytes < MIN_BYTES or not huge_pages_enabled():
        return None
    size = nbytes + _HUGE  # room to align the start
    with _LOCK:
        # reuse the smallest idle mapping that fits without wasting more than half of it
        fits = [m for m in _MAPPINGS if size <= m.size <= 2 * size and m.idle()]
        if fits:
            m = min(fits, key=lambda x: x.size)
            _MAPPINGS.remove(m)
            _MAPPINGS.append(m)  # most recently used last: trimmed last
            return _view(m, nbytes, dtype, shape), False
        _make_room(size)
        try:
            buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except OSError:  # out of address space: give idle mappings back and try once more
            _trim(0)
            try:
                buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            except OSError:
                return None  # torch's allocator then fails with its own clear error
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # kernel without THP: still zero-filled anonymous memory, just small pages
            pass
        m = _Mapping(buf, size)
        del buf
        m.base = m.refs()
        _MAPPINGS.append(m)
        return _view(m, nbytes, dtype, shape), True


def zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """A contiguous zero tensor of ``shape`` and ``dtype`` on ``device`` (from :func:`buffer` where it
    applies, zeroed here if reused; else ``torch.zeros``)."""
    got = buffer(shape, dtype, device)
    if got is None:
        return torch.zeros(shape, dtype=dtype, device=device)
    t, zeroed = got
    return t if zeroed else t.zero_()
