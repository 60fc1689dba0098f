"""The soft-assignment kernel of the streaming estimator and its scratch workspace.

``z [Lb, N, d]`` -> ``p [N, Lb, m]`` (float64) and the per-sample entropies ``H(p_i)`` ``[N, Lb]`` (nats),
``p_i = softmax(zbar_i W^T / eps)`` with ``zbar_i = z_i / ||z_i||`` (soft-entropy, accumulator.py).

Numerics: the GEMM and the softmax run in float32 (float64 for float64 input); the assignments are
normalised and accumulated in float64, so bf16/fp16 input loses no mass. Row norms are computed in float32
and recomputed in float64 only for rows whose float32 norm under- or overflowed (so a vector scaled by
1e-25 is still a valid direction; the common path is unchanged). Scratch buffers of about ``8 * L * N * m``
bytes (CPU: the float64 assignments, plus one layer's logits) are kept between calls
(:meth:`Workspace.clear` drops them).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import torch

from .hostmem import buffer
from .validation import row_norms

__all__ = ["Workspace", "AssignmentKernel", "cpu_threads", "entr_sum", "layer_workers", "run_parallel"]

_MAX_LISTED = 8  # positions named in an error message
_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_OUTER = threading.local()  # .threads: torch's thread setting outside the active cpu_threads blocks


def layer_workers(device: torch.device, threads: int | None, tasks: int) -> int:
    """Python worker threads for ``tasks`` independent pieces of CPU work (layers, label sets): with
    ``cpu_threads=1`` every op runs single-threaded and the pieces run concurrently on torch's
    ``get_num_threads()`` workers (no thread-pool barrier between the GEMM and the memory-bound ops, so
    one layer's softmax overlaps another's GEMM); 1 otherwise (``cpu_threads=None`` or > 1: intra-op
    threads as set; other devices)."""
    if device.type != "cpu" or threads != 1:
        return 1
    pool = getattr(_OUTER, "threads", None) or torch.get_num_threads()
    return max(1, min(tasks, pool))


def run_parallel(fn: Callable[[int], None], items: Iterable[int], workers: int) -> None:
    """``fn(i)`` for every item, on ``workers`` threads of a shared pool (in order on this thread for one
    worker). The calls must touch disjoint data; after all of them finished, the first exception (in item
    order) is re-raised here."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for i in items:
            fn(i)
        return
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < workers:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infoplane")
            _POOL_SIZE = workers
        pool = _POOL
    futures = [pool.submit(fn, i) for i in items]
    wait(futures)  # nothing keeps running after an error is raised here
    for f in futures:
        f.result()


@contextlib.contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run the enclosed CPU ops with ``threads`` intra-op threads (restored afterwards); no-op for
    ``threads=None``, on other devices, or when the setting already matches."""
    if threads is None or device.type != "cpu" or torch.get_num_threads() == threads:
        yield
        return
    old = torch.get_num_threads()
    outer = getattr(_OUTER, "threads", None)
    _OUTER.threads = outer or old  # torch's setting outside every cpu_threads block (see layer_workers)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
        _OUTER.threads = outer


def entr_sum(p: torch.Tensor) -> torch.Tensor:
    """-sum_j p_j log p_j over the last axis (nats), 0 log 0 = 0."""
    return torch.special.entr(p).sum(-1)  # H(p) = -sum_j p_j log p_j (soft-entropy, accumulator.py)


class Workspace:
    """Named scratch buffers reused between updates (fresh 100 MB allocations cost more in page faults
    than the math)."""

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
        """A buffer of ``shape`` (contents undefined), grown only when too small."""
        numel = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != dtype or buf.device != device or buf.numel() < numel:
            got = buffer((numel,), dtype, device)  # huge pages for large CPU buffers, reused when freed
            buf = got[0] if got is not None else torch.empty(numel, dtype=dtype, device=device)
            self._bufs[name] = buf
        return buf[:numel].view(shape)

    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(b.numel() * b.element_size() for b in self._bufs.values())

    def clear(self) -> None:
        """Drop every buffer."""
        self._bufs = {}


def _positions(mask: torch.Tensor, layers: Sequence[int]) -> str:
    """``(layer, position)`` pairs of the True entries of ``mask [Lb, N]`` (the first few)."""
    idx = mask.nonzero().tolist()
    shown = ", ".join(f"({layers[a]}, {b})" for a, b in idx[:_MAX_LISTED])
    more = f", ... ({len(idx) - _MAX_LISTED} more)" if len(idx) > _MAX_LISTED else ""
    return shown + more


class AssignmentKernel:
    """Soft assignment of directions to ``m`` reference points at temperature ``eps``.

    Args:
        reference_points: ``[m, d]`` float64 CPU unit rows ``W``.
        temperature: ``eps`` (validated by the caller).
        cpu_threads: intra-op threads for the memory-bound CPU work (``None``: torch's setting).
    """

    def __init__(self, reference_points: torch.Tensor, temperature: float, cpu_threads: int | None) -> None:
        self.reference_points = reference_points
        self.temperature = float(temperature)
        self.n_bins = int(reference_points.shape[0])
        self.cpu_threads = cpu_threads
        self.workspace = Workspace()
        self._w_cache: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def wt(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``W^T / eps`` ``[d, m]`` on ``device`` in ``dtype`` (cached)."""
        key = (str(device), dtype)
        if key not in self._w_cache:
            # W^T / eps, so that logits = (z W^T / eps) / ||z|| (soft-entropy, accumulator.py)
            wt = (self.reference_points.T / self.temperature).to(device=device, dtype=dtype)
            self._w_cache[key] = wt.contiguous()
        return self._w_cache[key]

    def norms(self, z: torch.Tensor, zc: torch.Tensor, layers: Sequence[int], skip_zero: bool,
              workers: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Row norms ``[Lb, N]`` of ``zc`` (``z`` cast to the compute dtype) and the mask of exact zero rows
        (``None`` when there is none). One device synchronisation in the good case.

        Raises ``ValueError`` for non-finite entries, rows too small or too large to normalise in the compute
        dtype (``|z| / eps`` must stay finite), and exact zero rows unless ``skip_zero``.
        """
        if workers > 1:  # contiguous layer blocks, one per worker thread
            norms = torch.empty(zc.shape[:-1], dtype=torch.promote_types(zc.dtype, torch.float32),
                                device=zc.device)
            cuts = [round(k * zc.shape[0] / workers) for k in range(workers + 1)]

            def block(k: int) -> None:
                norms[cuts[k] : cuts[k + 1]] = row_norms(zc[cuts[k] : cuts[k + 1]])

            run_parallel(block, range(workers), workers)
        else:
            norms = row_norms(zc)
        fin = torch.finfo(zc.dtype)
        limit = fin.max * self.temperature * 0.5  # |logit| <= ||z|| / eps must not overflow the GEMM
        bad = ~(torch.isfinite(norms) & (norms > 0) & (norms < limit))
        if not bool(bad.any()):
            return norms, None
        if not bool(torch.isfinite(z).all()):
            n_bad = int((~torch.isfinite(z)).sum())
            raise ValueError(f"z must be finite; got {n_bad} NaN/Inf entries")
        zero = (z == 0).all(-1)
        # float32 norms under/overflow for |z| ~ 1e-23 or 1e19: recompute those rows in float64
        n64 = torch.linalg.vector_norm(z.to(torch.float64), dim=-1)
        small = bad & ~zero & (n64 < fin.tiny)
        if bool(small.any()):
            raise ValueError(
                f"z rows too small to normalise in {zc.dtype} (norm below {fin.tiny:.3g}, not zero) at "
                f"(layer, position) {_positions(small, layers)}; rescale z or pass float64"
            )
        large = bad & ~zero & (n64 >= limit)
        if bool(large.any()):
            raise ValueError(
                f"z rows too large for temperature={self.temperature!r} in {zc.dtype}: |z| / temperature "
                f"overflows at (layer, position) {_positions(large, layers)}; rescale z or raise the "
                "temperature"
            )
        norms = torch.where(bad, n64.to(norms.dtype), norms)
        if not bool(zero.any()):
            return norms, None
        if not skip_zero:
            raise ValueError(
                f"z rows must have nonzero norm (direction is undefined); got {int(zero.sum())} zero "
                f"vector(s) at (layer, position) {_positions(zero, layers)}; pass zero_policy='skip' to "
                "skip and count such positions"
            )
        return torch.where(zero, torch.ones_like(norms), norms), zero

    def assign(
        self,
        z: torch.Tensor,
        layers: Sequence[int],
        out: tuple[torch.Tensor, torch.Tensor] | None = None,
        skip_zero: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """z ``[Lb, N, d]`` -> (p float64 ``[N, Lb, m]``, per-sample entropy float64 ``[N, Lb]`` nats,
        zero-row mask ``[Lb, N]`` or ``None``).

        ``layers`` names the layer of each of the ``Lb`` slices (for error messages). Written into ``out``
        when given, else ``p`` is a scratch buffer, valid until the next call. With ``skip_zero`` exact zero
        rows get ``p = 0`` and ``H = 0`` and are flagged in the mask. The per-element operations do not
        depend on how the layers are split (the same numbers).
        """
        lb, n, _ = z.shape
        dt = torch.float64 if z.dtype == torch.float64 else torch.float32
        zc = z.to(dt)
        wt = self.wt(zc.device, dt)
        m = self.n_bins
        ws = self.workspace
        workers = layer_workers(zc.device, self.cpu_threads, lb)
        with cpu_threads(zc.device, self.cpu_threads):  # memory-bound: see cpu_threads
            norms, zero = self.norms(z, zc, layers, skip_zero, workers)  # [Lb, N]
        if out is not None:
            p, ent = out
        else:
            p = ws.get("p64", (n, lb, m), torch.float64, zc.device)
            ent = torch.empty(n, lb, dtype=torch.float64, device=zc.device)
        # on the CPU one GEMM per layer (faster than one tall GEMM), each followed at once by its softmax
        # while the [N, m] logits are still in cache (no [L, N, m] logits buffer to fill and fault in), the
        # layers spread over layer_workers threads; elsewhere one GEMM and one softmax over all layers. The
        # per-element operations are the same either way (the same numbers).
        per_layer = zc.device.type == "cpu"
        if per_layer:
            bufs = [(ws.get(f"logits{k}", (1, n, m), dt, zc.device),
                     ws.get(f"exp{k}", (1, n, m), dt, zc.device)) for k in range(workers)]

            def layers_of(k: int) -> None:  # worker k: layers k, k + workers, ...; its own logits buffers
                t, e = bufs[k]
                for a in range(k, lb, workers):
                    torch.mm(zc[a], wt, out=t[0])
                    normalise(t, e, norms[a : a + 1], p[:, a : a + 1, :].transpose(0, 1), ent[:, a : a + 1].T)

            if workers > 1:
                with cpu_threads(zc.device, 1):  # single-threaded ops, layers in parallel
                    run_parallel(layers_of, range(workers), workers)
            else:
                for a in range(lb):
                    t, e = bufs[0]
                    torch.mm(zc[a], wt, out=t[0])
                    with cpu_threads(zc.device, self.cpu_threads):
                        normalise(t, e, norms[a : a + 1], p[:, a : a + 1, :].transpose(0, 1),
                                  ent[:, a : a + 1].T)
        else:
            t = ws.get("logits", (lb, n, m), dt, zc.device)
            e = ws.get("exp", (lb, n, m), dt, zc.device)
            torch.mm(zc.reshape(lb * n, -1), wt, out=t.view(lb * n, m))
            normalise(t, e, norms, p.transpose(0, 1), ent.T)
        with cpu_threads(zc.device, self.cpu_threads):
            if zero is not None:  # skipped positions carry no mass and no entropy
                p.masked_fill_(zero.T.unsqueeze(-1), 0.0)
                ent.masked_fill_(zero.T, 0.0)
        return p, ent, zero


def normalise(t: torch.Tensor, e: torch.Tensor, norms: torch.Tensor, p: torch.Tensor,
              ent: torch.Tensor) -> None:
    """Raw logits ``t = z W^T / eps`` ``[k, N, m]`` (overwritten; ``e`` is scratch) -> ``p`` float64
    ``[k, N, m]`` (written; a view of ``[N, L, m]``) and the per-sample entropy ``ent`` float64 ``[k, N]``
    nats (written)."""
    inv = norms.reciprocal_().unsqueeze(-1)  # [k, N, 1]
    shift = t.amax(-1, keepdim=True).mul_(inv)  # row max of cosine / eps
    # t = cos/eps - max_j cos/eps <= 0: the shifted softmax logits (soft-entropy, accumulator.py)
    torch.addcmul(shift.neg_(), t, inv, out=t)
    torch.exp(t, out=e)  # unnormalised softmax, max entry exactly 1
    z_sum = e.sum(-1)  # Z_i = sum_j e^{t_ij}
    # H(p_i) = -sum_j p_ij log p_ij = log Z_i - sum_j e_ij t_ij / Z_i  (log p_ij = t_ij - log Z_i);
    # no per-element logarithm and no cancellation, as t <= 0
    et = t.mul_(e).sum(-1)
    ent.copy_(torch.log(z_sum).sub_(et.div_(z_sum)))
    # float64 assignments in the [N, L, m] layout, so one index_add_ row covers all layers;
    # normalised in float64 so every row sums to 1 to float64 precision (no mass lost or gained)
    p.copy_(e)
    p.div_(p.sum(-1, keepdim=True))
