"""Streaming soft entropy / mutual information over many batches, layers and label sets.

Sufficient statistics (reference doc section 5, "additive statistics"), per layer ``l``:

* ``n_l``: samples seen; ``c_l = sum_i p_i`` (float64 ``[m]``); ``s_l = sum_i H(p_i)`` (nats);
* per label set and label value ``x`` (one *row*): ``C_x = sum_{i: x_i = x} p_i`` (float64 ``[m]``) and
  ``n_x``; negative label values are singletons, kept without rows as ``n_neg`` and ``sum H(p_i)``.

Everything reported is a function of these sums, so any split of the data into batches, shards or
merged accumulators gives the one-batch result up to float64 rounding.

Memory: every label row costs ``L * m * 8`` bytes (24.8 KB at L = 31, m = 100), so label values that
occur once in the whole data set should be passed as negative values (a label pre-pass): they are then
exact singletons without rows. ``state_nbytes()`` reports the state; scratch buffers of about
``12 * L * N * m`` bytes on the CPU (16 on other devices; 8 with layer-by-layer updates) are kept between
updates (``free_workspace()`` drops them).

CPU threading: the GEMM uses torch's intra-op threads; the memory-bound rest (row norms, softmax, input
checks, ``index_add_`` segment sums) runs with ``cpu_threads`` threads (default 1, set temporarily and
restored), which was several times faster than a stalled thread pool on a shared machine.

Layout: the row sums of a label set live in one float64 buffer ``[rows, L, m]`` (row 0 is a
trash row that absorbs the singleton samples), so one ``index_add_`` per label set and batch covers
all layers; rows grow by doubling. Label values (arbitrary int64) are mapped to rows once per batch
(:meth:`SoftEntropyAccumulator.prepare_labels`) with a sorted key table + ``searchsorted``.
The soft assignment runs in float32 (float64 for float64 input) and is accumulated in float64,
so bf16/fp16 input loses no mass.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .reference import reference_hash
from .soft import resolve_reference_and_temperature
from .validation import (
    as_float_tensor,
    as_label_tensor,
    check_dim,
    check_finite_nonzero,
    labels_as_dict,
    row_norms,
)

__all__ = ["SoftEntropyAccumulator", "SoftEntropyResult", "PreparedLabels"]

_FORMAT = "infoplane.SoftEntropyAccumulator/1"
_EPOCHS = itertools.count(1)  # globally unique ids: PreparedLabels are bound to one accumulator state


@contextlib.contextmanager
def _cpu_threads(device: torch.device, threads: int | None):
    """Run the enclosed CPU ops with ``threads`` intra-op threads (restored afterwards); no-op for
    ``threads=None``, on other devices, or when the setting already matches."""
    if threads is None or device.type != "cpu" or torch.get_num_threads() == threads:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _entr_sum(p: torch.Tensor) -> torch.Tensor:
    """-sum_j p_j log p_j over the last axis (nats), 0 log 0 = 0."""
    return torch.special.entr(p).sum(-1)  # H(p) = -sum p log p (reference doc 1, step 4)


@dataclass
class SoftEntropyResult:
    """Results of :meth:`SoftEntropyAccumulator.compute`. All entropies/MI are divided by ``log m``.

    Arrays are float64 with one entry per layer ``[L]``.
    """

    entropy: np.ndarray
    mean_sample_entropy: np.ndarray
    capacity: np.ndarray
    n_samples: int
    label_sets: list[str]
    mi: dict[str, np.ndarray]
    conditional_entropy: dict[str, np.ndarray]
    regularity: dict[str, np.ndarray]
    mi_null: dict[str, np.ndarray]
    n_labels: dict[str, int]
    singleton_mass: dict[str, float]
    temperature: float
    n_bins: int
    reference_hash: str
    n_samples_per_layer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def to_records(self) -> list[dict[str, Any]]:
        """Tidy rows: one per (layer, label_set); one per layer with ``label_set=""`` if no labels."""
        out: list[dict[str, Any]] = []
        for layer in range(len(self.entropy)):
            n = int(self.n_samples_per_layer[layer]) if len(self.n_samples_per_layer) else self.n_samples
            base = {
                "layer": layer,
                "entropy": float(self.entropy[layer]),
                "capacity": float(self.capacity[layer]),
                "n_samples": n,
            }
            if not self.label_sets:
                out.append({"layer": layer, "label_set": "", **{k: base[k] for k in base if k != "layer"}})
                continue
            for name in self.label_sets:
                null = self.mi_null.get(name)
                out.append(
                    {
                        "layer": layer,
                        "label_set": name,
                        "entropy": base["entropy"],
                        "mi": float(self.mi[name][layer]),
                        "mi_null": float(null[layer]) if null is not None else float("nan"),
                        "conditional_entropy": float(self.conditional_entropy[name][layer]),
                        "regularity": float(self.regularity[name][layer]),
                        "capacity": base["capacity"],
                        "n_labels": self.n_labels[name],
                        "singleton_mass": self.singleton_mass[name],
                        "n_samples": n,
                    }
                )
        return out


@dataclass
class PreparedLabels:
    """Label values of one batch mapped to an accumulator's internal rows (reusable for all layers).

    ``rows[name]``: int64 ``[N]`` row ids (0 for negative/singleton labels); ``neg[name]``: bool ``[N]``
    or ``None`` when the set has no negative labels; ``perm``: the within-batch permutation used for the
    permutation-null label sets (``None`` without ``null``).
    """

    names: tuple[str, ...]
    n: int
    rows: dict[str, torch.Tensor]
    neg: dict[str, torch.Tensor | None]
    perm: torch.Tensor | None
    epoch: int
    _on_device: dict[Any, tuple] = field(default_factory=dict, repr=False)

    def on(self, device: torch.device) -> tuple[dict, dict, torch.Tensor | None]:
        """(rows, neg, perm) moved to ``device`` (cached)."""
        key = str(device)
        if key not in self._on_device:
            rows = {k: v.to(device, non_blocking=True) for k, v in self.rows.items()}
            neg = {k: (v.to(device) if v is not None else None) for k, v in self.neg.items()}
            perm = self.perm.to(device) if self.perm is not None else None
            self._on_device[key] = (rows, neg, perm)
        return self._on_device[key]


class _LabelSet:
    """Key table (CPU) and float64 row statistics (state device) for one label set."""

    def __init__(self, n_layers: int, n_bins: int, device: torch.device, null: bool) -> None:
        self.n_layers, self.n_bins, self.device, self.null = n_layers, n_bins, device, null
        self.keys_sorted = np.zeros(0, dtype=np.int64)
        self.rows_sorted = np.zeros(0, dtype=np.int64)
        self._keys_by_row = np.zeros(16, dtype=np.int64)  # row 0 = trash/singletons, key unused
        self.n_rows = 1
        self.cap = 0
        self.zeroed = 0  # rows [0, zeroed) are initialised
        self.sums = torch.zeros(0, n_layers, n_bins, dtype=torch.float64, device=device)
        self.row_n = torch.zeros(0, n_layers, dtype=torch.float64, device=device)
        self.null_sums = (
            torch.zeros(0, n_layers, n_bins, dtype=torch.float64, device=device) if null else None
        )
        self.neg_n = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self.neg_sent = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self.null_neg_sent = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self.ensure_capacity(16)

    # -- key table (numpy on the CPU: single-threaded, no thread-pool stalls on tiny arrays) -------------
    @property
    def keys_by_row(self) -> np.ndarray:
        """int64 ``[n_rows]``: the label value of each row (row 0 is the singleton/trash row)."""
        return self._keys_by_row[: self.n_rows]

    def _append_keys(self, new_keys: np.ndarray) -> None:
        need = self.n_rows + len(new_keys)
        if need > len(self._keys_by_row):  # amortised doubling
            grown = np.zeros(max(need, 2 * len(self._keys_by_row)), dtype=np.int64)
            grown[: self.n_rows] = self._keys_by_row[: self.n_rows]
            self._keys_by_row = grown
        self._keys_by_row[self.n_rows : need] = new_keys
        self.n_rows = need

    def map_keys(self, values: np.ndarray) -> np.ndarray:
        """Rows for int64 ``values >= 0`` (new keys get new rows; vectorised, no loop over values)."""
        if values.size == 0:
            return np.zeros(0, dtype=np.int64)
        uniq, inv = np.unique(values, return_inverse=True)
        k = len(self.keys_sorted)
        pos = np.searchsorted(self.keys_sorted, uniq)
        if k:
            found = (pos < k) & (self.keys_sorted[np.minimum(pos, k - 1)] == uniq)
        else:
            found = np.zeros(uniq.shape, dtype=bool)
        row_u = np.empty_like(uniq)
        row_u[found] = self.rows_sorted[pos[found]]
        new = ~found
        n_new = int(new.sum())
        if n_new:
            new_rows = np.arange(self.n_rows, self.n_rows + n_new, dtype=np.int64)
            row_u[new] = new_rows
            new_keys = uniq[new]
            # merge the sorted new keys into the sorted table: O(K + n_new), vectorised
            self.keys_sorted = np.insert(self.keys_sorted, pos[new], new_keys)
            self.rows_sorted = np.insert(self.rows_sorted, pos[new], new_rows)
            self._append_keys(new_keys)
        return row_u[inv.reshape(-1)]

    def set_keys(self, keys_by_row: np.ndarray, name: str = "") -> None:
        """Install a key table whose row ``r`` (1-based) holds ``keys_by_row[r - 1]`` (state loading)."""
        k = len(keys_by_row)
        order = np.argsort(keys_by_row, kind="stable")
        ks = keys_by_row[order]
        if k > 1 and bool((ks[1:] == ks[:-1]).any()):
            raise ValueError(f"state dict label set {name!r} has duplicate keys")
        if k and int(ks[0]) < 0:
            raise ValueError(f"state dict label set {name!r} has negative keys (singletons have no rows)")
        self.keys_sorted, self.rows_sorted = ks, (order + 1).astype(np.int64)
        self._keys_by_row = np.concatenate([np.zeros(1, dtype=np.int64), keys_by_row])
        self.n_rows = k + 1

    def ensure_capacity(self, n_rows: int) -> None:
        """Make rows ``[0, n_rows)`` available and zeroed. Capacity doubles (amortised); rows beyond the
        used ones stay uninitialised and untouched (no page faults for the overshoot on the CPU)."""
        if n_rows > self.cap:
            new_cap = max(n_rows, 2 * self.cap, 16)  # amortised doubling
            self.sums = self._grow(self.sums, new_cap, self.zeroed)
            self.row_n = self._grow(self.row_n, new_cap, self.zeroed)
            if self.null_sums is not None:
                self.null_sums = self._grow(self.null_sums, new_cap, self.zeroed)
            self.cap = new_cap
        if n_rows > self.zeroed:
            for t in (self.sums, self.row_n, self.null_sums):
                if t is not None:
                    t[self.zeroed : n_rows].zero_()
            self.zeroed = n_rows

    @staticmethod
    def _grow(t: torch.Tensor, cap: int, used: int) -> torch.Tensor:
        out = torch.empty((cap, *t.shape[1:]), dtype=t.dtype, device=t.device)
        out[:used] = t[:used]  # copy the rows in use only
        return out

    def nbytes(self, reserved: bool = False) -> int:
        rows = self.cap if reserved else self.n_rows
        ts = [self.sums[:rows], self.row_n[:rows], self.neg_n, self.neg_sent, self.null_neg_sent]
        if self.null_sums is not None:
            ts.append(self.null_sums[:rows])
        tables = self.keys_sorted.nbytes + self.rows_sorted.nbytes + self._keys_by_row.nbytes
        return sum(t.numel() * t.element_size() for t in ts) + tables


class SoftEntropyAccumulator:
    """Streaming soft entropy H(Z), conditional entropies and I(X;Z) for one or more layers.

    Args:
        dim: representation dimension ``d`` (>= 2).
        n_bins: number of reference points ``m`` (ignored if ``reference_points`` is given).
        seed: seed of the reference points (numpy PCG64, see :func:`reference_points`).
        temperature: softmax temperature; ``None`` calibrates with ``calibration``.
        calibration: ``"exact"`` | ``"bounds"`` | ``"leading_order"``.
        reference_points: optional ``[m, d]`` points (overrides ``n_bins``/``seed``).
        n_layers: number of layers ``L`` tracked (updates with ``z [L, N, d]`` or ``z [N, d], layer=l``).
        null: also track a permutation-null MI per label set: the labels of each batch are permuted within
            the batch by a generator seeded with ``null_seed`` and a hash of the batch's labels, so the null
            depends only on which samples share a batch -- not on batch order, process or shard -- but it
            is *not* invariant to re-batching (the permutation never crosses a batch boundary).
        null_seed: seed of the permutation.
        cpu_threads: intra-op threads for the memory-bound work on the CPU (norms, softmax, segment sums);
            the GEMM always uses torch's setting. Default 1: on a shared machine a thread pool that waits
            for a descheduled thread made these ops 2-6x slower (``index_add_`` in particular). ``None``
            keeps torch's setting (try it on a dedicated many-core machine).

    Label sets: the first update that carries labels fixes the set names; every later update must carry
    the same names (all samples of a set must be labelled, or H and the conditional terms would refer
    to different data). Negative label values are singletons (the probe's label pre-pass marks labels
    that occur once in the whole data set this way): no row is stored and their conditional entropy is
    the sample's own entropy ``H(p_i)``.

    Statistics live on the device of the first ``z`` (later inputs are moved there); label mapping runs
    on the CPU once per batch.
    """

    def __init__(
        self,
        dim: int,
        n_bins: int = 100,
        seed: int = 0,
        temperature: float | None = None,
        calibration: str = "exact",
        reference_points: Any = None,
        n_layers: int = 1,
        null: bool = False,
        null_seed: int = 0,
        cpu_threads: int | None = 1,
    ) -> None:
        self.dim = check_dim(dim)
        if cpu_threads is not None and (not isinstance(cpu_threads, int) or cpu_threads < 1):
            raise ValueError(f"cpu_threads must be None or an integer >= 1, got {cpu_threads!r}")
        self.cpu_threads = cpu_threads
        if not isinstance(n_layers, (int, np.integer)) or isinstance(n_layers, bool) or n_layers < 1:
            raise ValueError(f"n_layers must be an integer >= 1, got {n_layers!r}")
        self.n_layers = int(n_layers)
        self.seed = seed
        self.calibration = calibration
        w, t = resolve_reference_and_temperature(self.dim, n_bins, seed, temperature, calibration,
                                                 reference_points)
        self.reference_points = w  # [m, d] float64 CPU
        self.temperature = float(t)
        self.n_bins = int(w.shape[0])
        self.reference_hash = reference_hash(w)
        self.null = bool(null)
        self.null_seed = int(null_seed)
        self._w_cache: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._ws: dict[str, torch.Tensor] = {}
        self._device: torch.device | None = None
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Clear all statistics and label tables (keeps W and temperature)."""
        self._epoch = next(_EPOCHS)
        self._stage: dict[str, Any] | None = None  # layer-by-layer batch waiting for its other layers
        self._label_names: tuple[str, ...] | None = None
        self._sets: dict[str, _LabelSet] = {}
        self._alloc_base(self._device or torch.device("cpu"))

    def _alloc_base(self, device: torch.device) -> None:
        L, m = self.n_layers, self.n_bins
        self._n = torch.zeros(L, dtype=torch.int64, device=device)
        self._counts = torch.zeros(L, m, dtype=torch.float64, device=device)
        self._sent = torch.zeros(L, dtype=torch.float64, device=device)

    def _bind_device(self, device: torch.device) -> torch.device:
        if self._device is None:
            self._device = device
            self._alloc_base(device)
            for s in self._sets.values():
                self._move_set(s, device)
        return self._device

    @staticmethod
    def _move_set(s: _LabelSet, device: torch.device) -> None:
        for name in ("sums", "row_n", "null_sums", "neg_n", "neg_sent", "null_neg_sent"):
            t = getattr(s, name)
            if t is not None:
                setattr(s, name, t.to(device))
        s.device = device

    def total_counts(self) -> torch.Tensor:
        """``c = sum_i p_i`` per layer, float64 ``[L, m]`` (sums to the number of samples per layer)."""
        self._flush()
        if self._label_names:
            s = self._sets[self._label_names[0]]
            return self._counts + s.sums[: s.n_rows].sum(0)
        return self._counts.clone()

    def state_nbytes(self, reserved: bool = False) -> int:
        """Bytes of the statistics: label rows in use plus key tables (``reserved=True``: the allocated
        capacity, up to 2x the rows in use; on the CPU the unused part is never touched)."""
        base = sum(t.numel() * t.element_size() for t in (self._n, self._counts, self._sent))
        return base + sum(s.nbytes(reserved) for s in self._sets.values())

    # ------------------------------------------------------------------ labels
    def _check_names(self, names: tuple[str, ...]) -> None:
        if self._label_names is not None and names != self._label_names:
            raise ValueError(
                f"label sets must be the same in every update: expected {list(self._label_names)}, "
                f"got {list(names)}"
            )

    def _get_set(self, name: str) -> _LabelSet:
        if name not in self._sets:
            self._sets[name] = _LabelSet(self.n_layers, self.n_bins, self._device or torch.device("cpu"),
                                         self.null)
        return self._sets[name]

    def prepare_labels(self, labels: Any, n: int | None = None) -> PreparedLabels:
        """Map one batch's labels to internal rows, once for all layers.

        Args:
            labels: 1-D integer array/tensor ``[N]`` or ``dict[str, [N]]`` (arbitrary int64 values;
                negative = singleton).
            n: expected batch size ``N`` (defaults to the length of the first label array).
        """
        sets = labels_as_dict(labels)
        if not sets:
            raise ValueError("labels must contain at least one label set, got an empty dict")
        names = tuple(sorted(sets))
        self._check_names(names)
        if n is None:
            first = sets[names[0]]
            n = int(first.shape[0]) if hasattr(first, "shape") and len(first.shape) else len(first)
        rows: dict[str, torch.Tensor] = {}
        negs: dict[str, torch.Tensor | None] = {}
        arrays = {name: as_label_tensor(sets[name], n, f"labels[{name!r}]").numpy() for name in names}
        for name in names:
            lab = arrays[name]
            s = self._get_set(name)
            neg = lab < 0
            if neg.any():
                r = np.zeros(n, dtype=np.int64)
                r[~neg] = s.map_keys(lab[~neg])
                negs[name] = torch.from_numpy(neg)
            else:
                r = s.map_keys(lab)
                negs[name] = None
            rows[name] = torch.from_numpy(r)
        self._label_names = names
        perm = self._null_permutation(arrays, n) if self.null else None
        return PreparedLabels(names=names, n=n, rows=rows, neg=negs, perm=perm, epoch=self._epoch)

    def _null_permutation(self, arrays: dict[str, np.ndarray], n: int) -> torch.Tensor:
        """Permutation of a batch for the null label sets, seeded by ``null_seed`` and its labels."""
        h = hashlib.blake2b(str(self.null_seed).encode(), digest_size=8)
        for name in sorted(arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(arrays[name], dtype=np.int64).tobytes())
        seed = int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    # ------------------------------------------------------------------ update
    def _wt(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._w_cache:
            # W^T / eps, so that logits = (z W^T / eps) / ||z|| (reference doc 1, step 3)
            wt = (self.reference_points.T / self.temperature).to(device=device, dtype=dtype)
            self._w_cache[key] = wt.contiguous()
        return self._w_cache[key]

    def _workspace(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
        """A reusable scratch buffer (fresh 100 MB allocations cost more in page faults than the math)."""
        numel = math.prod(shape)
        buf = self._ws.get(name)
        if buf is None or buf.dtype != dtype or buf.device != device or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._ws[name] = buf
        return buf[:numel].view(shape)

    def free_workspace(self) -> None:
        """Drop the scratch buffers kept between updates (about 12 bytes per element of ``[L, N, m]``)."""
        self._flush()
        self._ws = {}

    def _assign(
        self, z: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z ``[Lb, N, d]`` -> (p float64 ``[N, Lb, m]``, per-sample entropy float64 ``[N, Lb]`` nats).

        Written into ``out`` when given, else ``p`` is a scratch buffer, valid until the next call.
        The per-element operations do not depend on how the layers are split (the same numbers).
        """
        lb, n, _ = z.shape
        dt = torch.float64 if z.dtype == torch.float64 else torch.float32
        zc = z.to(dt)
        wt = self._wt(zc.device, dt)
        m = self.n_bins
        with _cpu_threads(zc.device, self.cpu_threads):  # memory-bound: see cpu_threads
            norms = row_norms(zc)  # [Lb, N]
            check_finite_nonzero(norms, z)
        t = self._workspace("logits", (lb, n, m), dt, zc.device)
        # on the CPU one GEMM per layer (torch's intra-op threads; faster than one tall GEMM) and the
        # softmax one layer at a time (in cache); elsewhere one GEMM and one softmax over all layers
        step = 1 if zc.device.type == "cpu" else lb
        if step == 1:
            for layer in range(lb):
                torch.mm(zc[layer], wt, out=t[layer])
        else:
            torch.mm(zc.reshape(lb * n, -1), wt, out=t.view(lb * n, m))
        if out is not None:
            p, ent = out
        else:
            p = self._workspace("p64", (n, lb, m), torch.float64, zc.device)
            ent = torch.empty(n, lb, dtype=torch.float64, device=zc.device)
        e = self._workspace("exp", (step, n, m), dt, zc.device)
        with _cpu_threads(zc.device, self.cpu_threads):
            for a in range(0, lb, step):
                b = a + step
                self._normalise(t[a:b], e, norms[a:b], p[:, a:b, :].transpose(0, 1), ent[:, a:b].T)
        return p, ent

    @staticmethod
    def _normalise(t: torch.Tensor, e: torch.Tensor, norms: torch.Tensor, p: torch.Tensor,
                   ent: torch.Tensor) -> None:
        """Raw logits ``t = z W^T / eps`` ``[k, N, m]`` (overwritten; ``e`` is scratch) -> ``p`` float64
        ``[k, N, m]`` (written; a view of ``[N, L, m]``) and the per-sample entropy ``ent`` float64
        ``[k, N]`` nats (written)."""
        inv = norms.reciprocal_().unsqueeze(-1)  # [k, N, 1]
        shift = t.amax(-1, keepdim=True).mul_(inv)  # row max of cosine / eps
        torch.addcmul(shift.neg_(), t, inv, out=t)  # t = cos/eps - max_j cos/eps <= 0 (ref. doc 1, step 3)
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

    def update(self, z: Any, labels: Any = None, layer: int | None = None) -> None:
        """Accumulate one batch.

        Args:
            z: ``[N, d]`` (one layer; pass ``layer=l`` when ``n_layers > 1``) or ``[L, N, d]`` (all layers).
            labels: ``None``, a 1-D int array ``[N]``, a ``dict[str, [N]]`` or a :class:`PreparedLabels`
                from :meth:`prepare_labels` (map once, update every layer).
            layer: layer index for a 2-D ``z``.
        """
        z = as_float_tensor(z)
        if z.dim() == 2:
            if layer is None:
                if self.n_layers != 1:
                    raise ValueError(
                        f"z is [N, d] but the accumulator tracks n_layers={self.n_layers}: pass layer=l "
                        f"(0 <= l < {self.n_layers}) or z as [L={self.n_layers}, N, d]"
                    )
                layer = 0
            if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not (
                0 <= layer < self.n_layers
            ):
                raise ValueError(f"layer must be an integer in [0, {self.n_layers}), got {layer!r}")
            layer = int(layer)
            z3 = z.unsqueeze(0)
        elif z.dim() == 3:
            if layer is not None:
                raise ValueError(f"layer must be None when z is [L, N, d]; got layer={layer!r}")
            if z.shape[0] != self.n_layers:
                raise ValueError(f"z is [L, N, d] with L={z.shape[0]}, expected L=n_layers={self.n_layers}")
            z3 = z
        else:
            raise ValueError(f"z must be [N, d] or [L, N, d], got shape {tuple(z.shape)}")
        n, d = z3.shape[1], z3.shape[2]
        if d != self.dim:
            raise ValueError(f"z must have d={self.dim} features (last axis), got d={d}")
        if n == 0:
            raise ValueError("z is an empty batch (N=0); expected at least one sample")
        if labels is None:
            if self._label_names:
                raise ValueError(
                    f"labels are required: earlier updates carried label sets {list(self._label_names)}"
                )
            self._label_names = ()
            prepared = None
        elif isinstance(labels, PreparedLabels):
            if labels.epoch != self._epoch:
                raise ValueError("these PreparedLabels came from another accumulator or before a reset(); "
                                 "call prepare_labels again")
            if labels.n != n:
                raise ValueError(f"prepared labels are for N={labels.n} samples, z has N={n}")
            self._check_names(labels.names)
            prepared = labels
        else:
            prepared = self.prepare_labels(labels, n=n)

        device = self._bind_device(z3.device)
        z3 = z3.to(device)
        # layer-by-layer updates with labels: the softmax is written straight into the staging buffer
        staged = prepared is not None and z.dim() == 2 and self.n_layers > 1
        p, ent = self._assign(z3, self._stage_slot(prepared, layer, n, device) if staged else None)
        lsel = slice(None) if z.dim() == 3 else layer
        self._n[lsel] += n
        self._sent[lsel] += ent.sum(0).squeeze(0) if z.dim() == 2 else ent.sum(0)  # sum_i H(p_i)
        if prepared is None:
            self._counts[lsel] += p.sum(0).squeeze(0) if z.dim() == 2 else p.sum(0)  # c = sum_i p_i
            return
        # with labels, c = sum_i p_i is the sum of any label set's rows (row 0 holds the singletons)
        if staged:
            self._stage["done"][layer] = True
            if all(self._stage["done"]):
                self._flush()
            return
        self._flush()
        with _cpu_threads(device, self.cpu_threads):  # index_add_ is much slower with a stalled pool
            self._add_rows(prepared, p, ent, layer if z.dim() == 2 else None, lsel)

    def _stage_slot(
        self, prepared: PreparedLabels, layer: int, n: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-by-layer updates of one prepared batch are staged in ``[N, L, m]`` and added to the label
        rows in one pass once every layer has arrived (same result, bitwise, as one ``[L, N, d]`` update).
        Returns the (p ``[N, 1, m]``, entropy ``[N, 1]``) slots of ``layer``; the caller marks it done."""
        st = self._stage
        if st is not None and (st["prepared"] is not prepared or st["done"][layer]):
            self._flush()
            st = None
        if st is None:
            st = {
                "prepared": prepared,
                "p": self._workspace("stage_p", (n, self.n_layers, self.n_bins), torch.float64, device),
                "ent": torch.zeros(n, self.n_layers, dtype=torch.float64, device=device),
                "done": [False] * self.n_layers,
            }
            self._stage = st
        return st["p"][:, layer : layer + 1, :], st["ent"][:, layer : layer + 1]

    def _flush(self) -> None:
        """Add a staged (possibly incomplete) layer-by-layer batch to the label rows."""
        st, self._stage = self._stage, None
        if st is None:
            return
        prepared, p, ent = st["prepared"], st["p"], st["ent"]
        with _cpu_threads(p.device, self.cpu_threads):
            if all(st["done"]):
                self._add_rows(prepared, p, ent, None, slice(None))
                return
            for layer, done in enumerate(st["done"]):
                if done:
                    self._add_rows(prepared, p[:, layer : layer + 1].contiguous(),
                                   ent[:, layer : layer + 1], layer, layer)

    def _add_rows(
        self, prepared: PreparedLabels, p: torch.Tensor, ent: torch.Tensor, layer: int | None, lsel: Any
    ) -> None:
        """Segment sums of ``p [N, Lb, m]`` into every label set's float64 rows (one index_add_ per set).

        ``layer`` is the layer of a single-layer update (``None`` when all layers are updated).
        """
        device = p.device
        n, lb = p.shape[0], p.shape[1]

        def total(x: torch.Tensor) -> torch.Tensor:  # sum over samples, shaped like the lsel slot
            return x.sum(0).squeeze(0) if layer is not None else x.sum(0)

        rows_d, neg_d, perm_d = prepared.on(device)
        ones = torch.ones(n, lb, dtype=torch.float64, device=device)
        flat = p.view(n, lb * self.n_bins)
        for name in prepared.names:
            s = self._sets[name]
            s.ensure_capacity(s.n_rows)
            rows = rows_d[name]
            if lb == self.n_layers:
                s.sums.view(s.cap, -1).index_add_(0, rows, flat)  # C_x += sum_{i: x_i = x} p_i
                s.row_n.index_add_(0, rows, ones)  # n_x
            else:
                s.sums[:, layer, :].index_add_(0, rows, flat)
                s.row_n[:, layer].index_add_(0, rows, ones[:, 0])
            neg = neg_d[name]
            if neg is not None:  # singletons: no rows, H(Z|x) = H(p_i)
                s.neg_n[lsel] += neg.sum().to(torch.float64)
                s.neg_sent[lsel] += total(ent[neg])
            if s.null_sums is not None:
                prow = rows[perm_d]  # permuted labels: sample i gets the label of sample perm[i]
                if lb == self.n_layers:
                    s.null_sums.view(s.cap, -1).index_add_(0, prow, flat)
                else:
                    s.null_sums[:, layer, :].index_add_(0, prow, flat)
                if neg is not None:
                    s.null_neg_sent[lsel] += total(ent[neg[perm_d]])

    # ------------------------------------------------------------------ results
    def compute(self) -> SoftEntropyResult:
        """Finalise: entropies / MI per layer and label set (all divided by log m)."""
        self._flush()
        log_m = math.log(self.n_bins)
        n = self._n.to("cpu", torch.float64)
        counts = self.total_counts().cpu()
        with np.errstate(invalid="ignore", divide="ignore"):
            tot = counts.sum(-1, keepdim=True)
            h = _entr_sum(counts / tot) / log_m  # H(p-hat), p-hat = c / sum(c)
            mse = self._sent.cpu() / n / log_m  # mean_i H(p_i) / log m
        names = list(self._label_names or ())
        mi, cond, reg, mi_null, n_labels, smass = {}, {}, {}, {}, {}, {}
        ref_layer = int(torch.argmax(n)) if n.numel() else 0
        for name in names:
            s = self._sets[name]
            c_nats, null_nats = self._conditional_nats(s)
            ce = (c_nats + s.neg_sent.cpu()) / n / log_m  # sum_x (n_x/N) H(Z|x) + singletons
            cond[name] = ce.numpy()
            mi[name] = (h - ce).numpy()  # I(X;Z) = H(Z) - H(Z|X) (reference doc 1, step 5)
            with np.errstate(invalid="ignore", divide="ignore"):
                reg[name] = mi[name] / h.numpy()  # regularity = I/H
            if null_nats is not None:
                mi_null[name] = (h - (null_nats + s.null_neg_sent.cpu()) / n / log_m).numpy()
            rn = s.row_n[1 : s.n_rows, ref_layer].cpu()
            nneg = float(s.neg_n[ref_layer])
            n_labels[name] = int((rn > 0).sum()) + int(round(nneg))
            nl = float(n[ref_layer])
            smass[name] = (float((rn == 1).sum()) + nneg) / nl if nl > 0 else float("nan")
        return SoftEntropyResult(
            entropy=h.numpy(),
            mean_sample_entropy=mse.numpy(),
            capacity=(h - mse).numpy(),
            n_samples=int(n.max()) if n.numel() else 0,
            label_sets=names,
            mi=mi,
            conditional_entropy=cond,
            regularity=reg,
            mi_null=mi_null,
            n_labels=n_labels,
            singleton_mass=smass,
            temperature=self.temperature,
            n_bins=self.n_bins,
            reference_hash=self.reference_hash,
            n_samples_per_layer=self._n.cpu().numpy(),
        )

    def _conditional_nats(self, s: _LabelSet) -> tuple[torch.Tensor, torch.Tensor | None]:
        """sum_x n_x H(C_x / |C_x|) per layer (nats, float64 CPU), for the labels and their null."""
        L = self.n_layers
        out = torch.zeros(L, dtype=torch.float64)
        out_null = torch.zeros(L, dtype=torch.float64) if s.null_sums is not None else None
        chunk = max(1, (1 << 22) // (L * self.n_bins))
        with _cpu_threads(s.sums.device, self.cpu_threads):
            for a in range(1, s.n_rows, chunk):
                b = min(s.n_rows, a + chunk)
                rn = s.row_n[a:b]
                used = rn > 0
                for buf, acc in ((s.sums, out), (s.null_sums, out_null)):
                    if buf is None:
                        continue
                    x = buf[a:b]
                    tot = x.sum(-1)
                    xlogx = x.clamp_min(1e-300).log_().mul_(x).sum(-1)
                    # H(C_x / T_x) = log T_x - sum_j C_xj log C_xj / T_x   (nats; H(Z | X = x))
                    hx = torch.where(used, tot.clamp_min(1e-300).log() - xlogx / tot.clamp_min(1e-300), 0.0)
                    acc += (rn * hx).sum(0).cpu()
        return out, out_null

    # ------------------------------------------------------------------ merge / state
    def _check_compatible(self, other: SoftEntropyAccumulator) -> None:
        if not isinstance(other, SoftEntropyAccumulator):
            raise ValueError(f"can only merge a SoftEntropyAccumulator, got {type(other).__name__}")
        for attr in ("dim", "n_bins", "n_layers", "reference_hash", "null"):
            a, b = getattr(self, attr), getattr(other, attr)
            if a != b:
                raise ValueError(f"cannot merge: {attr} differs (this accumulator: {a!r}, other: {b!r})")
        if not math.isclose(self.temperature, other.temperature, rel_tol=1e-12, abs_tol=0.0):
            raise ValueError(
                f"cannot merge: temperature differs (this: {self.temperature!r}, "
                f"other: {other.temperature!r})"
            )

    def merge(self, other: SoftEntropyAccumulator) -> SoftEntropyAccumulator:
        """Add ``other``'s statistics to this accumulator (same W, temperature, d, m, L). Returns self."""
        self._check_compatible(other)
        self._flush()
        other._flush()
        o_names = other._label_names
        if o_names is None:
            return self
        if self._label_names is not None and self._label_names != o_names:
            raise ValueError(
                f"cannot merge: label sets differ (this: {list(self._label_names)}, other: {list(o_names)})"
            )
        device = self._bind_device(other._device or torch.device("cpu"))
        self._n += other._n.to(device)
        self._counts += other._counts.to(device)
        self._sent += other._sent.to(device)
        self._label_names = o_names
        for name in o_names:
            os_ = other._sets[name]
            s = self._get_set(name)
            k = os_.n_rows - 1
            rows_np = np.zeros(k + 1, dtype=np.int64)
            rows_np[1:] = s.map_keys(os_.keys_by_row[1:])
            s.ensure_capacity(s.n_rows)
            rows = torch.from_numpy(rows_np).to(device)
            s.sums.index_add_(0, rows, os_.sums[: k + 1].to(device))
            s.row_n.index_add_(0, rows, os_.row_n[: k + 1].to(device))
            if s.null_sums is not None:
                s.null_sums.index_add_(0, rows, os_.null_sums[: k + 1].to(device))
            s.neg_n += os_.neg_n.to(device)
            s.neg_sent += os_.neg_sent.to(device)
            s.null_neg_sent += os_.null_neg_sent.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and Python scalars (loadable with ``torch.load(weights_only=True)``)."""
        self._flush()
        sets = {}
        for name in self._label_names or ():
            s = self._sets[name]
            k = s.n_rows
            entry = {
                "keys": torch.from_numpy(s.keys_by_row[1:k].copy()),
                "singleton_sums": s.sums[0].cpu().clone(),
                "sums": s.sums[1:k].cpu().clone(),
                "row_n": s.row_n[1:k].cpu().clone(),
                "neg_n": s.neg_n.cpu().clone(),
                "neg_sent": s.neg_sent.cpu().clone(),
                "null_neg_sent": s.null_neg_sent.cpu().clone(),
            }
            if s.null_sums is not None:
                entry["null_sums"] = s.null_sums[1:k].cpu().clone()
            sets[name] = entry
        return {
            "format": _FORMAT,
            "dim": self.dim,
            "n_bins": self.n_bins,
            "n_layers": self.n_layers,
            "temperature": self.temperature,
            "reference_hash": self.reference_hash,
            "reference_points": self.reference_points.clone(),
            "null": self.null,
            "null_seed": self.null_seed,
            "label_names": list(self._label_names) if self._label_names is not None else None,
            "n_samples": self._n.cpu().clone(),
            "counts": self.total_counts().cpu(),
            "sample_entropy": self._sent.cpu().clone(),
            "label_sets": sets,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the statistics with ``state`` (from :meth:`state_dict` of a compatible accumulator)."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"expected a state dict with format {_FORMAT!r}, got {type(state).__name__} "
                             f"with format {state.get('format') if isinstance(state, dict) else None!r}")
        for attr in ("dim", "n_bins", "n_layers", "reference_hash", "null"):
            if state[attr] != getattr(self, attr):
                raise ValueError(f"state dict {attr}={state[attr]!r} does not match this accumulator's "
                                 f"{attr}={getattr(self, attr)!r}")
        if not math.isclose(state["temperature"], self.temperature, rel_tol=1e-12, abs_tol=0.0):
            raise ValueError(f"state dict temperature={state['temperature']!r} does not match "
                             f"{self.temperature!r}")
        device = self._device or torch.device("cpu")
        self.reset()
        self._device = device
        self._alloc_base(device)
        self._n += state["n_samples"].to(device)
        if not state["label_names"]:
            self._counts += state["counts"].to(device)  # with labels, c is derived from the label rows
        self._sent += state["sample_entropy"].to(device)
        names = state["label_names"]
        self._label_names = tuple(names) if names is not None else None
        for name, e in state["label_sets"].items():
            s = self._get_set(name)
            keys = e["keys"]
            k = keys.numel()
            s.set_keys(keys.to(torch.int64).numpy().copy(), name)
            s.ensure_capacity(k + 1)
            s.sums[1 : k + 1] = e["sums"].to(device)
            s.sums[0] = e["singleton_sums"].to(device)
            s.row_n[1 : k + 1] = e["row_n"].to(device)
            if s.null_sums is not None:
                s.null_sums[1 : k + 1] = e["null_sums"].to(device)
            s.neg_n += e["neg_n"].to(device)
            s.neg_sent += e["neg_sent"].to(device)
            s.null_neg_sent += e["null_neg_sent"].to(device)

    def _empty_like(self) -> SoftEntropyAccumulator:
        return SoftEntropyAccumulator(
            self.dim, temperature=self.temperature, reference_points=self.reference_points,
            n_layers=self.n_layers, null=self.null, null_seed=self.null_seed, cpu_threads=self.cpu_threads,
        )

    def sync(self, group: Any = None) -> SoftEntropyAccumulator:
        """All-gather every rank's statistics (``torch.distributed``) and merge them in rank order.

        Afterwards every rank holds the identical total. A no-op when ``torch.distributed`` is not
        initialised. Label rows are renumbered: earlier :class:`PreparedLabels` become invalid.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        world = dist.get_world_size(group)
        states: list[Any] = [None] * world
        dist.all_gather_object(states, self.state_dict(), group=group)
        total = self._empty_like()
        for st in states:
            part = self._empty_like()
            part.load_state_dict(st)
            total.merge(part)
        self.load_state_dict(total.state_dict())
        return self
