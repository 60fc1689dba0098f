"""Label rows sharded across ``torch.distributed`` ranks: total state divided by the world size.

Data parallel as usual (every rank soft-assigns its own batch), but each rank keeps only the label rows it
*owns*: label value ``x >= 0`` belongs to rank ``x % world``; singletons (negative labels) to rank 0. Every
``update`` is a collective: the per-position assignments ``p [N, L, m]``, entropies and labels of all ranks
are all-gathered, and each rank adds the positions whose label (and, for the null, permuted label) it owns
to its rows -- in rank order, which with round-robin batches (batch ``i`` on rank ``i % world``) is the
single-process batch order, so every row holds the same sums as on one process. ``compute`` all-reduces
the additive per-layer totals (``n``, ``c = sum p``, ``sum H(p_i)``) and every label set's conditional
nats ``sum_x n_x H(C_x / |C_x|)`` (additive over rows; soft-entropy, accumulator.py), so the result equals
the single process up to the order of the final float64 sums.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .accumulator import SoftEntropyAccumulator
from .kernel import cpu_threads, entr_sum
from .result import SoftEntropyResult
from .validation import as_float_tensor, as_label_tensor, labels_as_dict

__all__ = ["ShardedRowsAccumulator", "owned_row_counts"]


def owned_row_counts(row_labels: dict[str, np.ndarray], rank: int, world: int) -> dict[str, int]:
    """Label rows rank ``rank`` of ``world`` owns: distinct ids ``x >= 0`` with ``x % world == rank`` per
    label set (``row_labels[name]``: every label id of the data, any order)."""
    out = {}
    for name, ids in row_labels.items():
        u = np.unique(np.asarray(ids, dtype=np.int64))
        out[name] = int(((u >= 0) & (u % world == rank)).sum())
    return out


class ShardedRowsAccumulator:
    """:class:`SoftEntropyAccumulator` statistics with label rows sharded over the ranks of ``group``.

    Args: as :class:`SoftEntropyAccumulator` (``dim, n_bins, seed, temperature, calibration, n_layers, null,
    null_seed``), plus ``group`` (default: the world). ``torch.distributed`` must be initialised. Every rank
    must call :meth:`update` equally often (pass ``z`` with ``N = 0`` rows when a rank has no batch left)
    and :meth:`compute` together. Updates take all layers at once: ``z [L, N, d]`` and ``dict[str, [N]]``.
    """

    def __init__(self, dim: int, n_bins: int = 100, seed: int = 0, temperature: float | None = None,
                 calibration: str = "exact", n_layers: int = 1, null: bool = False, null_seed: int = 0,
                 group: Any = None) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("ShardedRowsAccumulator needs an initialised torch.distributed process group")
        self.group = group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.local = SoftEntropyAccumulator(dim, n_bins, seed, temperature, calibration, n_layers=n_layers,
                                            null=null, null_seed=null_seed)
        self.dim, self.n_layers, self.n_bins = self.local.dim, self.local.n_layers, self.local.n_bins
        L, m = self.n_layers, self.n_bins
        self._n = torch.zeros(L, dtype=torch.float64)
        self._counts = torch.zeros(L, m, dtype=torch.float64)
        self._sent = torch.zeros(L, dtype=torch.float64)
        self._names: tuple[str, ...] | None = None

    def state_nbytes(self, reserved: bool = False) -> int:
        """Bytes of this rank's share of the label rows plus the per-layer totals."""
        own = sum(t.numel() * t.element_size() for t in (self._n, self._counts, self._sent))
        return self.local.state_nbytes(reserved) + own

    def _gather(self, t: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        import torch.distributed as dist

        n_max = max(sizes)
        pad = torch.zeros((n_max, *t.shape[1:]), dtype=t.dtype)
        pad[: t.shape[0]] = t
        out = [torch.empty_like(pad) for _ in range(self.world)]
        dist.all_gather(out, pad, group=self.group)
        return [o[:n] for o, n in zip(out, sizes)]

    def local_rows(self) -> dict[str, int]:
        """Label rows this rank holds per label set (its share of the single-process rows)."""
        return {k: s.n_rows - 1 for k, s in self.local._labels.sets.items()}

    def reserve_rows(self, row_counts: dict[str, int]) -> None:
        """Allocate exactly ``row_counts[name]`` label rows (this rank's share: :func:`owned_row_counts`)."""
        self.local.reserve_rows(row_counts)

    def update(self, z: Any, labels: Any, groups: dict[str, Any] | None = None) -> None:
        """Accumulate this rank's batch ``z [L, N, d]`` with ``labels`` ``dict[str, [N]]`` (a collective).

        ``groups``: ``{name: [N] group ids}`` for per-group label sets (per-text labels), whose null permutes
        labels across groups (as :meth:`SoftEntropyAccumulator.prepare_labels`). An invalid ``z`` on any rank
        (e.g. a zero vector) raises the ``ValueError`` on every rank, so no rank waits in a collective.
        """
        import torch.distributed as dist

        z = as_float_tensor(z).detach().cpu()
        if z.dim() != 3 or z.shape[0] != self.n_layers or z.shape[2] != self.dim:
            raise ValueError(f"z must have shape [L={self.n_layers}, N, d={self.dim}], got {tuple(z.shape)}")
        n = int(z.shape[1])
        sets = labels_as_dict(labels)
        names = tuple(sorted(sets))
        if not names or (self._names is not None and names != self._names):
            raise ValueError(f"labels must be a non-empty dict with the same sets every update "
                             f"(expected {list(self._names or ())}, got {list(names)})")
        bad_groups = sorted(set(groups or {}) - set(names))
        if bad_groups:
            raise ValueError(f"groups {bad_groups}: no label set of that name; label sets are {list(names)}")
        self._names = names
        cols = [as_label_tensor(sets[k], n, f"labels[{k!r}]") for k in names]
        # group ids ride along as extra columns (-1: the set has no groups, i.e. a position-wise null)
        cols += [as_label_tensor(groups[k], n, f"groups[{k!r}]") if groups and k in groups
                 else torch.full((n,), -1, dtype=torch.int64) for k in names]
        lab = torch.stack(cols).T if n else torch.zeros(0, 2 * len(names), dtype=torch.int64)  # [N, 2S]
        L, m = self.n_layers, self.n_bins
        error: ValueError | None = None
        p, ent = torch.zeros(0, L, m, dtype=torch.float64), torch.zeros(0, L, dtype=torch.float64)
        if n:
            try:
                p, ent, _ = self.local.kernel.assign(z, list(range(L)))  # [N, L, m], [N, L]
            except ValueError as exc:
                error, n = exc, -1
        size = torch.tensor([n], dtype=torch.int64)
        sizes_t = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(sizes_t, size, group=self.group)
        sizes = [int(s) for s in sizes_t]
        if min(sizes) < 0:  # every rank stops here: nothing was added anywhere
            if error is not None:
                raise error
            bad = [r for r, s in enumerate(sizes) if s < 0]
            raise ValueError(f"rank(s) {bad} rejected their batch (see the error on those ranks)")
        self._n += n
        self._counts += p.sum(0)  # c = sum_i p_i (soft-entropy, accumulator.py)
        self._sent += ent.sum(0)  # sum_i H(p_i)
        if max(sizes) == 0:
            return
        S = len(names)
        for p_r, e_r, l_r in zip(self._gather(p, sizes), self._gather(ent, sizes), self._gather(lab, sizes)):
            if p_r.shape[0]:
                arrays = {k: l_r[:, j].numpy() for j, k in enumerate(names)}
                gids = {k: l_r[:, S + j].numpy() for j, k in enumerate(names)
                        if bool((l_r[:, S + j] >= 0).all())}
                self._add_owned(p_r, e_r, arrays, gids)

    def _add_owned(self, p: torch.Tensor, ent: torch.Tensor, arrays: dict[str, np.ndarray],
                   groups: dict[str, np.ndarray]) -> None:
        """Add the positions of one gathered batch whose labels this rank owns to its rows."""
        tables = self.local._labels
        tables.names = tuple(sorted(arrays))
        n, L, m = p.shape
        flat = p.reshape(n, L * m)
        perm = tables.null_permutation(arrays, n).numpy() if self.local.null else None
        with cpu_threads(torch.device("cpu"), self.local.cpu_threads):
            for name, lab in arrays.items():
                s = tables.get(name)
                null_idx = perm
                if perm is not None and name in groups:  # per-text labels: permuted across groups
                    null_idx = tables.group_permutation(arrays, groups[name], name).numpy()
                for null, lab_k in ((False, lab), (True, lab[null_idx] if null_idx is not None else None)):
                    if lab_k is None:
                        continue
                    own = (lab_k >= 0) & (lab_k % self.world == self.rank)
                    if own.any():
                        rows = torch.from_numpy(s.map_keys(lab_k[own]))
                        s.ensure_capacity(s.n_rows)
                        idx = torch.from_numpy(np.nonzero(own)[0])
                        target = s.null_sums if null else s.sums
                        target.view(s.cap, -1).index_add_(0, rows, flat[idx])  # C_x += sum_{i: x_i = x} p_i
                        if not null:
                            s.row_n.index_add_(0, rows, torch.ones(len(idx), L, dtype=torch.float64))  # n_x
                    neg = lab_k < 0
                    if self.rank == 0 and neg.any():  # singletons: H(Z|x) = H(p_i), kept by rank 0
                        e = ent[torch.from_numpy(neg)].sum(0)
                        if null:
                            s.null_neg_sent += e
                        else:
                            s.neg_n += float(neg.sum())
                            s.neg_sent += e

    def compute(self) -> SoftEntropyResult:
        """The result over all ranks' samples (a collective; every rank gets the same result)."""
        import torch.distributed as dist

        def total(t: torch.Tensor) -> torch.Tensor:
            t = t.clone().to(torch.float64)
            dist.all_reduce(t, group=self.group)
            return t

        log_m = math.log(self.n_bins)
        n, counts, sent = total(self._n), total(self._counts), total(self._sent)
        with np.errstate(invalid="ignore", divide="ignore"):
            # H(c / |c|) (soft-entropy, accumulator.py)
            h = entr_sum(counts / counts.sum(-1, keepdim=True)) / log_m
            mse = sent / n / log_m
        ref = int(torch.argmax(n)) if n.numel() else 0
        names = list(self._names or ())
        mi, cond, reg, mi_null, n_labels, smass = {}, {}, {}, {}, {}, {}
        for name in names:
            s = self.local._labels.get(name)
            c_nats, null_nats = s.conditional_nats(self.local.cpu_threads)
            rn = s.row_n[1 : s.n_rows, ref]
            parts = [c_nats, s.neg_sent, s.neg_n,
                     torch.tensor([float((rn > 0).sum()), float((rn == 1).sum())], dtype=torch.float64)]
            if null_nats is not None:
                parts += [null_nats, s.null_neg_sent]
            flat = total(torch.cat([x.reshape(-1).to(torch.float64) for x in parts]))
            L = self.n_layers
            c_t, neg_sent, neg_n, cnt = flat[:L], flat[L:2 * L], flat[2 * L:3 * L], flat[3 * L:3 * L + 2]
            ce = (c_t + neg_sent) / n / log_m  # sum_x (n_x/N) H(Z|x) + singletons
            cond[name] = ce.numpy()
            mi[name] = (h - ce).numpy()  # I(X;Z) = H(Z) - H(Z|X) (soft-entropy, accumulator.py)
            with np.errstate(invalid="ignore", divide="ignore"):
                reg[name] = mi[name] / h.numpy()
            if null_nats is not None:
                nn_, nns = flat[3 * L + 2:4 * L + 2], flat[4 * L + 2:]
                mi_null[name] = (h - (nn_ + nns) / n / log_m).numpy()
            n_labels[name] = int(cnt[0]) + int(round(float(neg_n[ref])))
            nl = float(n[ref])
            smass[name] = (float(cnt[1]) + float(neg_n[ref])) / nl if nl > 0 else float("nan")
        return SoftEntropyResult(
            entropy=h.numpy(), mean_sample_entropy=mse.numpy(), capacity=(h - mse).numpy(),
            n_samples=int(n.max()) if n.numel() else 0, label_sets=names, mi=mi, conditional_entropy=cond,
            regularity=reg, mi_null=mi_null, n_labels=n_labels, singleton_mass=smass,
            temperature=self.local.temperature, n_bins=self.n_bins, reference_hash=self.local.reference_hash,
            n_samples_per_layer=n.to(torch.int64).numpy(), n_skipped_zero=np.zeros(self.n_layers, np.int64),
            seed=self.local._ref_seed,
        )
