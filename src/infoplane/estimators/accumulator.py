"""Streaming soft entropy / mutual information over many batches, layers and label sets.

Sufficient statistics (soft-entropy, accumulator.py: every quantity is a function of additive sums),
per layer ``l``:

* ``n_l``: samples seen; ``c_l = sum_i p_i`` (float64 ``[m]``); ``s_l = sum_i H(p_i)`` (nats);
* per label set and label value ``x`` (one *row*, see :mod:`.labels`): ``C_x = sum_{i: x_i = x} p_i`` and
  ``n_x``; negative label values are singletons, kept without rows as ``n_neg`` and ``sum H(p_i)``.

Any split of the data into batches, shards or merged accumulators gives the one-batch result up to float64
rounding. The soft assignment itself lives in :mod:`.kernel`, the result type in :mod:`.result`, state-dict
checks in :mod:`.state`, and the streaming contract (with torchmetrics-style ``sync``) in :mod:`.protocol`.

Memory: ``state_nbytes()`` reports the state; scratch buffers of about ``8 * L * N * m`` bytes on the CPU
(16 on other devices; plus ``8 * N * m`` for one layer's logits) are kept between updates
(``free_workspace()`` drops them). On Linux, CPU buffers of 8 MiB and more (label rows, scratch) live in
transparent huge pages that are kept for reuse once freed (:mod:`.hostmem`): a fresh accumulator's first
write of its state costs one page fault per 2 MiB instead of per 4 KiB, or none when it reuses the memory of
an accumulator freed before (``INFOPLANE_HUGE_PAGES=0`` switches this off; same numbers).

CPU threading: with ``cpu_threads=1`` (default) every op runs single-threaded (set temporarily and
restored) and the layers of an ``[L, N, d]`` update, then the label sets, are spread over
``torch.get_num_threads()`` Python worker threads: one layer's softmax overlaps another layer's GEMM, and no
intra-op thread pool waits at a barrier for a descheduled thread (several times slower on a shared
machine). Otherwise the GEMM uses torch's intra-op threads and the memory-bound rest (row norms, softmax,
``index_add_`` segment sums) ``cpu_threads`` threads. The numbers are the same either way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .kernel import AssignmentKernel, cpu_threads, entr_sum, layer_workers, run_parallel
from .labels import LabelTables, PreparedLabels
from .protocol import SyncMixin
from .reference import reference_hash
from .result import SoftEntropyResult
from .soft import resolve_reference_and_temperature
from .state import FORMAT, check_mergeable, check_state
from .validation import ZERO_POLICIES, as_float_tensor, as_layered, check_accumulator_options, check_dim

__all__ = ["SoftEntropyAccumulator", "SoftEntropyResult", "PreparedLabels", "ZERO_POLICIES"]


class SoftEntropyAccumulator(SyncMixin):
    """Streaming soft entropy H(Z), conditional entropies and I(X;Z) for one or more layers.

    Args:
        dim: representation dimension ``d`` (>= 2).
        n_bins: number of reference points ``m`` (ignored if ``reference_points`` is given).
        seed: seed of the reference points (numpy PCG64, see :func:`reference_points`).
        temperature: softmax temperature (finite, ``>= 1e-8``); ``None`` calibrates with ``calibration``.
        calibration: ``"exact"`` | ``"bounds"`` | ``"leading_order"``.
        reference_points: optional ``[m, d]`` points (overrides ``n_bins``/``seed``).
        n_layers: number of layers ``L`` tracked (updates with ``z [L, N, d]`` or ``z [N, d], layer=l``).
        null: also track a permutation-null MI per label set: the labels of each batch are permuted within
            the batch by a generator seeded with ``null_seed`` and a hash of the batch's labels, so the null
            depends only on which samples share a batch -- not on batch order, process or shard -- but it
            is *not* invariant to re-batching (the permutation never crosses a batch boundary).
        null_seed: seed of the permutation.
        cpu_threads: intra-op threads for the memory-bound work on the CPU (norms, softmax, segment sums).
            Default 1: single-threaded ops, with layers and label sets run concurrently on
            ``torch.get_num_threads()`` worker threads (on a shared machine an intra-op thread pool that
            waits for a descheduled thread made these ops 2-6x slower, ``index_add_`` in particular).
            ``None`` keeps torch's setting for every op, an int > 1 uses that many intra-op threads for the
            memory-bound work (the GEMM then uses torch's setting).
        zero_policy: what to do with a position whose vector is exactly zero (its direction is undefined):
            ``"error"`` (default) raises a ``ValueError`` naming the (layer, position) pairs; ``"skip"``
            leaves the position out of that layer's statistics and counts it (``n_skipped_zero`` in the
            result). The permutation null still permutes over the whole batch.

    Label sets: the first update that carries labels fixes the set names; every later update must carry
    the same names (all samples of a set must be labelled, or H and the conditional terms would refer
    to different data). Negative label values are singletons (the probe's label pre-pass marks labels
    that occur once in the whole data set this way): no row is stored and their conditional entropy is
    the sample's own entropy ``H(p_i)``.

    Statistics live on the device of the first ``z`` (later inputs are moved there); label mapping runs
    on the CPU once per batch. Inputs that require grad are detached (nothing here is differentiable; use
    :func:`soft_entropy` for a loss). Distributed use: see :mod:`infoplane.estimators.protocol`.
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
        zero_policy: str = "error",
    ) -> None:
        self.dim = check_dim(dim)
        self.cpu_threads, self.n_layers, self.zero_policy = check_accumulator_options(cpu_threads, n_layers,
                                                                                      zero_policy)
        self.seed = seed
        self._ref_seed: int | None = int(seed) if reference_points is None else None
        self.calibration = calibration
        w, t = resolve_reference_and_temperature(self.dim, n_bins, seed, temperature, calibration,
                                                 reference_points)
        self.reference_points = w  # [m, d] float64 CPU
        self.temperature = float(t)
        self.n_bins = int(w.shape[0])
        self.reference_hash = reference_hash(w)
        self.null = bool(null)
        self.null_seed = int(null_seed)
        self.kernel = AssignmentKernel(w, self.temperature, cpu_threads)
        self._device: torch.device | None = None
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Clear all statistics and label tables (keeps W and temperature) and any synced view."""
        self._drop_view()
        self._stage: dict[str, Any] | None = None  # layer-by-layer batch waiting for its other layers
        device = self._device or torch.device("cpu")
        self._labels = LabelTables(self.n_layers, self.n_bins, device, self.null, self.null_seed)
        self._alloc_base(device)

    def _alloc_base(self, device: torch.device) -> None:
        L, m = self.n_layers, self.n_bins
        self._n = torch.zeros(L, dtype=torch.int64, device=device)
        self._counts = torch.zeros(L, m, dtype=torch.float64, device=device)
        self._sent = torch.zeros(L, dtype=torch.float64, device=device)
        self._skipped = torch.zeros(L, dtype=torch.int64, device=device)

    def _bind_device(self, device: torch.device) -> torch.device:
        if self._device is None:
            self._device = device
            self._alloc_base(device)
            self._labels.move_to(device)
        return self._device

    def total_counts(self) -> torch.Tensor:
        """``c = sum_i p_i`` per layer, float64 ``[L, m]`` (sums to the number of samples per layer)."""
        return self._source(False, None).total_counts_local()

    def state_nbytes(self, reserved: bool = False) -> int:
        """Bytes of the local statistics: label rows in use plus key tables (``reserved=True``: the allocated
        capacity, up to 2x the rows in use; on the CPU the unused part is never touched)."""
        base = sum(t.numel() * t.element_size() for t in (self._n, self._counts, self._sent, self._skipped))
        return base + self._labels.nbytes(reserved)

    def reserve_rows(self, row_counts: dict[str, int]) -> None:
        """Allocate exactly ``row_counts[name]`` label rows per label set up front (e.g. from the probe's
        label pre-pass), so the state never grows by doubling and ``state_nbytes(reserved=True)`` equals
        :func:`infoplane.estimators.memory.state_bytes` of the same counts."""
        for name, k in row_counts.items():
            if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
                raise ValueError(f"row_counts[{name!r}] must be an integer >= 0, got {k!r}")
            self._labels.get(name).reserve(int(k))

    # ------------------------------------------------------------------ labels
    def prepare_labels(self, labels: Any, n: int | None = None,
                       groups: dict[str, Any] | None = None) -> PreparedLabels:
        """Map one batch's labels to internal rows, once for all layers.

        Args:
            labels: 1-D integer array/tensor ``[N]`` or ``dict[str, [N]]`` (negative = singleton).
            n: expected batch size ``N`` (defaults to the length of the first label array).
            groups: ``{name: [N] group ids}`` for per-group labels (per-text: group = text), whose null
                permutes labels across groups instead of positions.
        """
        return self._labels.prepare(labels, n, groups)

    # ------------------------------------------------------------------ update
    def free_workspace(self) -> None:
        """Drop the scratch buffers kept between updates (about 8 bytes per element of ``[L, N, m]``)."""
        self._flush()
        self.kernel.workspace.clear()

    def update(self, z: Any, labels: Any = None, layer: int | None = None) -> None:
        """Accumulate one batch.

        Args:
            z: ``[N, d]`` (one layer; pass ``layer=l`` when ``n_layers > 1``) or ``[L, N, d]`` (all layers),
                any floating dtype; detached if it requires grad.
            labels: ``None``, a 1-D int array ``[N]``, a ``dict[str, [N]]`` or a :class:`PreparedLabels`
                from :meth:`prepare_labels` (map once, update every layer).
            layer: layer index for a 2-D ``z``.
        """
        z = as_float_tensor(z).detach()
        z3, layer = as_layered(z, layer, self.n_layers, self.dim)
        n = z3.shape[1]
        tables = self._labels
        if labels is None:
            if tables.names:
                raise ValueError(
                    f"labels are required: earlier updates carried label sets {list(tables.names)}"
                )
            prepared = None
        elif isinstance(labels, PreparedLabels):
            if labels.epoch != tables.epoch:
                raise ValueError("these PreparedLabels came from another accumulator or before a reset(); "
                                 "call prepare_labels again")
            if labels.n != n:
                raise ValueError(f"prepared labels are for N={labels.n} samples, z has N={n}")
            tables.check_names(labels.names)
            prepared = labels
        else:
            prepared = self.prepare_labels(labels, n=n)
        self._drop_view()  # the statistics change: a synced view is stale

        device = self._bind_device(z3.device)
        z3 = z3.to(device)
        layers = [layer] if z.dim() == 2 else list(range(self.n_layers))
        skip = self.zero_policy == "skip"
        # layer-by-layer updates with labels: the softmax is written straight into the staging buffer
        staged = prepared is not None and z.dim() == 2 and self.n_layers > 1
        slot = self._stage_slot(prepared, layer, n, device) if staged else None
        p, ent, zero = self.kernel.assign(z3, layers, slot, skip_zero=skip)
        if prepared is None and tables.names is None:
            tables.names = ()
        lsel = slice(None) if z.dim() == 3 else layer
        keep = None if zero is None else ~zero.T  # [N, Lb]: positions counted
        if keep is None:
            self._n[lsel] += n
        else:
            kept = keep.sum(0)
            self._n[lsel] += kept.squeeze(0) if z.dim() == 2 else kept
            self._skipped[lsel] += (n - kept).squeeze(0) if z.dim() == 2 else n - kept
        self._sent[lsel] += ent.sum(0).squeeze(0) if z.dim() == 2 else ent.sum(0)  # sum_i H(p_i)
        if prepared is None:
            self._counts[lsel] += p.sum(0).squeeze(0) if z.dim() == 2 else p.sum(0)  # c = sum_i p_i
            return
        # with labels, c = sum_i p_i is the sum of any label set's rows (row 0 holds the singletons)
        if staged:
            st = self._stage
            if keep is not None:
                if st["keep"] is None:
                    st["keep"] = torch.ones(n, self.n_layers, dtype=torch.bool, device=device)
                st["keep"][:, layer] = keep[:, 0]
            st["done"][layer] = True
            if all(st["done"]):
                self._flush()
            return
        self._flush()
        with cpu_threads(device, self.cpu_threads):  # index_add_ is much slower with a stalled pool
            self._add_rows(prepared, p, ent, layer if z.dim() == 2 else None, lsel, keep)

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
                "p": self.kernel.workspace.get("stage_p", (n, self.n_layers, self.n_bins), torch.float64,
                                               device),
                "ent": torch.zeros(n, self.n_layers, dtype=torch.float64, device=device),
                "done": [False] * self.n_layers,
                "keep": None,  # [N, L] bool once a zero vector was skipped
            }
            self._stage = st
        return st["p"][:, layer : layer + 1, :], st["ent"][:, layer : layer + 1]

    def _flush(self) -> None:
        """Add a staged (possibly incomplete) layer-by-layer batch to the label rows."""
        st, self._stage = self._stage, None
        if st is None:
            return
        prepared, p, ent, keep = st["prepared"], st["p"], st["ent"], st["keep"]
        with cpu_threads(p.device, self.cpu_threads):
            if all(st["done"]):
                self._add_rows(prepared, p, ent, None, slice(None), keep)
                return
            for layer, done in enumerate(st["done"]):
                if done:
                    self._add_rows(prepared, p[:, layer : layer + 1].contiguous(), ent[:, layer : layer + 1],
                                   layer, layer, keep[:, layer : layer + 1] if keep is not None else None)

    def _add_rows(self, prepared: PreparedLabels, p: torch.Tensor, ent: torch.Tensor, layer: int | None,
                  lsel: Any, keep: torch.Tensor | None = None) -> None:
        """Segment sums of ``p [N, Lb, m]`` into every label set's float64 rows (one index_add_ per set).

        ``layer`` is the layer of a single-layer update (``None`` when all layers are updated); ``keep``
        (bool ``[N, Lb]``) marks the counted positions when zero vectors were skipped (their ``p`` and
        entropy are already zero).
        """
        device = p.device
        n, lb = p.shape[0], p.shape[1]
        rows_d, neg_d, _ = prepared.on(device)
        ones = keep.to(torch.float64) if keep is not None else torch.ones(n, lb, dtype=torch.float64,
                                                                           device=device)
        flat = p.view(n, lb * self.n_bins)
        names = prepared.names
        sets = [self._labels.sets[name] for name in names]
        for s in sets:  # grow the row buffers here, before any worker thread writes to them
            s.ensure_capacity(s.n_rows)

        def add_set(k: int) -> None:  # one label set's rows: disjoint from every other set's
            null = prepared.null_index(names[k], device) if sets[k].null_sums is not None else None
            sets[k].add(rows_d[names[k]], flat, ones, ent, neg_d[names[k]], null, layer, lsel, keep is None)

        run_parallel(add_set, range(len(names)), layer_workers(device, self.cpu_threads, len(names)))

    # ------------------------------------------------------------------ results
    def compute(self, *, sync: bool = False, group: Any = None) -> SoftEntropyResult:
        """Finalise: entropies / MI per layer and label set (all divided by log m).

        ``sync=True`` all-gathers every rank's local statistics into a temporary total (``torch.distributed``
        collective on ``group``) and computes from it; the local state is untouched.
        """
        src = self._source(sync, group)
        if src is not self:
            return src.compute()
        self._flush()
        log_m = math.log(self.n_bins)
        n = self._n.to("cpu", torch.float64)
        counts = self.total_counts_local().cpu()
        with np.errstate(invalid="ignore", divide="ignore"):
            tot = counts.sum(-1, keepdim=True)
            h = entr_sum(counts / tot) / log_m  # H(p-hat), p-hat = c / sum(c) (soft-entropy, accumulator.py)
            mse = self._sent.cpu() / n / log_m  # mean_i H(p_i) / log m
        names = list(self._labels.names or ())
        mi, cond, reg, mi_null, n_labels, smass = {}, {}, {}, {}, {}, {}
        ref_layer = int(torch.argmax(n)) if n.numel() else 0
        for name in names:
            s = self._labels.sets[name]
            c_nats, null_nats = s.conditional_nats(self.cpu_threads)
            ce = (c_nats + s.neg_sent.cpu()) / n / log_m  # sum_x (n_x/N) H(Z|x) + singletons
            cond[name] = ce.numpy()
            mi[name] = (h - ce).numpy()  # I(X;Z) = H(Z) - H(Z|X) (soft-entropy, accumulator.py)
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
            n_skipped_zero=self._skipped.cpu().numpy(),
            seed=self._ref_seed,
        )

    # ------------------------------------------------------------------ merge / state
    def _settings(self) -> dict[str, Any]:
        """The settings two accumulators must share to be merged (temperature compared separately)."""
        return {"dim": self.dim, "n_bins": self.n_bins, "n_layers": self.n_layers,
                "reference_hash": self.reference_hash, "null": self.null, "null_seed": self.null_seed}

    def _check_compatible(self, other: SoftEntropyAccumulator) -> None:
        if not isinstance(other, SoftEntropyAccumulator):
            raise ValueError(f"can only merge a SoftEntropyAccumulator, got {type(other).__name__}")
        self._refuse_merge(other)
        check_mergeable(self._settings(), other._settings(), self.temperature, other.temperature)

    def merge(self, other: SoftEntropyAccumulator) -> SoftEntropyAccumulator:
        """Add ``other``'s statistics to this accumulator (same W, temperature, d, m, L, null and null_seed).
        Refuses ``self`` and accumulators holding a synced view. Returns self."""
        self._check_compatible(other)
        self._drop_view()
        self._flush()
        other._flush()
        o_names = other._labels.names
        if o_names is None:
            return self
        if self._labels.names is not None and self._labels.names != o_names:
            raise ValueError(
                f"cannot merge: label sets differ (this: {list(self._labels.names)}, other: {list(o_names)})"
            )
        device = self._bind_device(other._device or torch.device("cpu"))
        self._n += other._n.to(device)
        self._counts += other._counts.to(device)
        self._sent += other._sent.to(device)
        self._skipped += other._skipped.to(device)
        self._labels.names = o_names
        for name in o_names:
            self._labels.get(name).merge_from(other._labels.sets[name])
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and Python scalars (loadable with ``torch.load(weights_only=True)``); the
        global total while a synced view is held (see :meth:`sync`)."""
        return self._source(False, None)._local_state_dict()

    def _local_state_dict(self) -> dict[str, Any]:
        self._flush()
        sets = {}
        for name in self._labels.names or ():
            sets[name] = self._labels.sets[name].state_entry()
        names = self._labels.names
        return {
            "format": FORMAT,
            "dim": self.dim,
            "n_bins": self.n_bins,
            "n_layers": self.n_layers,
            "temperature": self.temperature,
            "reference_hash": self.reference_hash,
            "reference_points": self.reference_points.clone(),
            "null": self.null,
            "null_seed": self.null_seed,
            "label_names": list(names) if names is not None else None,
            "n_samples": self._n.cpu().clone(),
            "counts": self.total_counts_local().cpu(),
            "sample_entropy": self._sent.cpu().clone(),
            "n_skipped_zero": self._skipped.cpu().clone(),
            "label_sets": sets,
        }

    def total_counts_local(self) -> torch.Tensor:
        """``c = sum_i p_i`` of the local statistics (ignores a synced view), float64 ``[L, m]``."""
        self._flush()
        names = self._labels.names
        if names:
            s = self._labels.sets[names[0]]
            return self._counts + s.sums[: s.n_rows].sum(0)
        return self._counts.clone()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the statistics with ``state`` (from :meth:`state_dict` of a compatible accumulator).

        Raises ``ValueError`` naming the problem for a state of another format or settings, or one with
        missing keys, wrong shapes or dtypes, negative or non-finite counts (checked before anything changes).
        """
        check_state(state, self._settings(), self.temperature)
        device = self._device or torch.device("cpu")
        self.reset()
        self._device = device
        self._alloc_base(device)
        self._n += state["n_samples"].to(device)
        if not state["label_names"]:
            self._counts += state["counts"].to(device)  # with labels, c is derived from the label rows
        self._sent += state["sample_entropy"].to(device)
        if "n_skipped_zero" in state:
            self._skipped += state["n_skipped_zero"].to(device)
        names = state["label_names"]
        self._labels.names = tuple(names) if names is not None else None
        for name, e in state["label_sets"].items():
            self._labels.get(name).load_entry(e, name)

    def _empty_like(self) -> SoftEntropyAccumulator:
        acc = SoftEntropyAccumulator(
            self.dim, temperature=self.temperature, reference_points=self.reference_points,
            n_layers=self.n_layers, null=self.null, null_seed=self.null_seed, cpu_threads=self.cpu_threads,
            zero_policy=self.zero_policy,
        )
        acc._ref_seed = self._ref_seed
        return acc

    def __repr__(self) -> str:
        synced = ", synced" if self.is_synced else ""
        return (f"SoftEntropyAccumulator(dim={self.dim}, n_bins={self.n_bins}, n_layers={self.n_layers}, "
                f"temperature={self.temperature:.4g}, null={self.null}, "
                f"label_sets={list(self._labels.names or ())}, "
                f"n_samples={int(self._n.max()) if self._n.numel() else 0}{synced})")
