"""Label handling of the streaming estimator: key tables, label rows, and per-batch label preparation.

Per label set and label value ``x`` (one *row*) the accumulator keeps ``C_x = sum_{i: x_i = x} p_i``
(float64 ``[L, m]``) and ``n_x`` (soft-entropy, accumulator.py: ``H(Z|X) = sum_x (n_x/N) H(C_x/|C_x|)``).
Negative label values are singletons, kept without rows as ``n_neg`` and ``sum H(p_i)``.

Layout: the rows of a label set live in one float64 buffer ``[rows, L, m]`` (row 0 is a trash row that
absorbs the singleton samples), so one ``index_add_`` per label set and batch covers all layers; rows grow
by doubling. Label values (arbitrary int64) are mapped to rows once per batch with a sorted key table and
``searchsorted`` (:meth:`LabelTables.prepare`). Large CPU row buffers live in huge pages that are reused
after an accumulator is freed (:mod:`.hostmem`). Every label row costs ``L * m * 8`` bytes (24.8 KB at
L = 31, m = 100), so label values that occur once in the whole data set should be passed as negative values.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .hostmem import buffer, zeros
from .kernel import cpu_threads
from .validation import as_label_tensor, labels_as_dict

__all__ = ["PreparedLabels", "LabelRows", "LabelTables"]

_EPOCHS = itertools.count(1)  # globally unique ids: PreparedLabels are bound to one accumulator state


@dataclass
class PreparedLabels:
    """Label values of one batch mapped to an accumulator's internal rows (reusable for all layers).

    ``rows[name]``: int64 ``[N]`` row ids (0 for negative/singleton labels); ``neg[name]``: bool ``[N]``
    or ``None`` when the set has no negative labels; ``perm``: the within-batch permutation used for the
    permutation-null label sets (``None`` without ``null``); ``group_perm[name]``: for a label set that is
    constant within groups (e.g. a per-text label), the null index map that permutes labels *across groups*
    (every position of a group takes the label of one other group), replacing ``perm`` for that set.
    """

    names: tuple[str, ...]
    n: int
    rows: dict[str, torch.Tensor]
    neg: dict[str, torch.Tensor | None]
    perm: torch.Tensor | None
    epoch: int
    group_perm: dict[str, torch.Tensor] = field(default_factory=dict)
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

    def null_index(self, name: str, device: torch.device) -> torch.Tensor | None:
        """The null index map of label set ``name`` on ``device``: across groups if it has groups, else the
        within-batch position permutation."""
        if name in self.group_perm:
            key = (str(device), name)
            if key not in self._on_device:
                self._on_device[key] = self.group_perm[name].to(device)
            return self._on_device[key]
        return self.on(device)[2]


class LabelRows:
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
        used ones stay untouched (no page faults for the overshoot on the CPU)."""
        if n_rows > self.cap:
            self._resize(max(n_rows, 2 * self.cap, 16))  # amortised doubling
        if n_rows > self.zeroed:
            for t in (self.sums, self.null_sums):
                if t is not None:
                    t[self.zeroed : n_rows].zero_()
            self.zeroed = n_rows

    def reserve(self, n_labels: int) -> None:
        """Allocate room for exactly ``n_labels`` label rows (plus row 0) and their keys, so that a data set
        whose label counts are known in advance never triggers the doubling growth (exact memory plan)."""
        rows = int(n_labels) + 1
        if rows > self.cap:
            self._resize(rows)
        if rows > len(self._keys_by_row):
            grown = np.zeros(rows, dtype=np.int64)
            grown[: self.n_rows] = self._keys_by_row[: self.n_rows]
            self._keys_by_row = grown

    def _resize(self, cap: int) -> None:
        """Grow the row buffers to ``cap`` rows, keeping the rows in use. Large CPU buffers come from
        :func:`.hostmem.buffer` (huge pages; a new mapping is zero-filled and faulted in on first write, a
        reused one is stale); rows that are not known to be zero are zeroed lazily by
        :meth:`ensure_capacity`, so capacity beyond the rows in use is never touched. ``n_x`` (100x smaller)
        is always zero-filled."""
        used = min(self.zeroed, self.n_rows)  # rows holding data (rows beyond are zero or unused)
        all_zero = True
        for name in ("sums", "null_sums"):
            t = getattr(self, name)
            if t is None:
                continue
            got = buffer((cap, *t.shape[1:]), t.dtype, t.device)
            out, zeroed = got if got is not None else (
                torch.empty((cap, *t.shape[1:]), dtype=t.dtype, device=t.device), False)
            all_zero = all_zero and zeroed
            out[:used] = t[:used]  # copy the rows in use only
            setattr(self, name, out)
        row_n = zeros((cap, *self.row_n.shape[1:]), self.row_n.dtype, self.row_n.device)
        row_n[:used] = self.row_n[:used]
        self.row_n = row_n
        self.cap = cap
        self.zeroed = cap if all_zero else used

    def move_to(self, device: torch.device) -> None:
        """Move the row statistics to ``device`` (the key tables stay on the CPU)."""
        for name in ("sums", "row_n", "null_sums", "neg_n", "neg_sent", "null_neg_sent"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        self.device = device

    def nbytes(self, reserved: bool = False) -> int:
        rows = self.cap if reserved else self.n_rows
        ts = [self.sums[:rows], self.row_n[:rows], self.neg_n, self.neg_sent, self.null_neg_sent]
        if self.null_sums is not None:
            ts.append(self.null_sums[:rows])
        tables = self.keys_sorted.nbytes + self.rows_sorted.nbytes + self._keys_by_row.nbytes
        return sum(t.numel() * t.element_size() for t in ts) + tables

    def add(self, rows: torch.Tensor, flat: torch.Tensor, ones: torch.Tensor, ent: torch.Tensor,
            neg: torch.Tensor | None, null: torch.Tensor | None, layer: int | None, lsel: Any,
            all_kept: bool) -> None:
        """Add one batch: ``flat`` ``[N, Lb * m]`` assignments to rows ``rows`` ``[N]`` (all layers when
        ``layer`` is ``None``, else that one layer), ``ones`` ``[N, Lb]`` the counted positions, ``ent``
        ``[N, Lb]`` their entropies, ``neg`` the singleton mask, ``null`` the null index map (with a null),
        ``lsel`` the layer slot of the per-layer totals, ``all_kept`` no position skipped."""
        def total(x: torch.Tensor) -> torch.Tensor:  # sum over samples, shaped like the lsel slot
            return x.sum(0).squeeze(0) if layer is not None else x.sum(0)

        if layer is None:
            self.sums.view(self.cap, -1).index_add_(0, rows, flat)  # C_x += sum_{i: x_i = x} p_i
            self.row_n.index_add_(0, rows, ones)  # n_x
        else:
            self.sums[:, layer, :].index_add_(0, rows, flat)
            self.row_n[:, layer].index_add_(0, rows, ones[:, 0])
        if neg is not None:  # singletons: no rows, H(Z|x) = H(p_i)
            self.neg_n[lsel] += neg.sum().to(torch.float64) if all_kept else total(ones[neg])
            self.neg_sent[lsel] += total(ent[neg])
        if self.null_sums is not None and null is not None:
            prow = rows[null]  # permuted labels: sample i gets the label of sample perm[i]
            if layer is None:
                self.null_sums.view(self.cap, -1).index_add_(0, prow, flat)
            else:
                self.null_sums[:, layer, :].index_add_(0, prow, flat)
            if neg is not None:
                self.null_neg_sent[lsel] += total(ent[neg[null]])

    # -- merging, state entries and the conditional entropies ------------------------------------------
    def merge_from(self, other: LabelRows) -> None:
        """Add ``other``'s rows (keys mapped into this table; new keys get new rows)."""
        device = self.device
        k = other.n_rows - 1
        rows_np = np.zeros(k + 1, dtype=np.int64)
        rows_np[1:] = self.map_keys(other.keys_by_row[1:])
        self.ensure_capacity(self.n_rows)
        rows = torch.from_numpy(rows_np).to(device)
        self.sums.index_add_(0, rows, other.sums[: k + 1].to(device))
        self.row_n.index_add_(0, rows, other.row_n[: k + 1].to(device))
        if self.null_sums is not None:
            self.null_sums.index_add_(0, rows, other.null_sums[: k + 1].to(device))
        self.neg_n += other.neg_n.to(device)
        self.neg_sent += other.neg_sent.to(device)
        self.null_neg_sent += other.null_neg_sent.to(device)

    def state_entry(self) -> dict[str, torch.Tensor]:
        """The rows in use as CPU tensors (keys ``[K]``, sums ``[K, L, m]``, row_n ``[K, L]``, ...)."""
        k = self.n_rows
        entry = {
            "keys": torch.from_numpy(self.keys_by_row[1:k].copy()),
            "singleton_sums": self.sums[0].cpu().clone(),
            "sums": self.sums[1:k].cpu().clone(),
            "row_n": self.row_n[1:k].cpu().clone(),
            "neg_n": self.neg_n.cpu().clone(),
            "neg_sent": self.neg_sent.cpu().clone(),
            "null_neg_sent": self.null_neg_sent.cpu().clone(),
        }
        if self.null_sums is not None:
            entry["null_sums"] = self.null_sums[1:k].cpu().clone()
        return entry

    def load_entry(self, e: dict[str, torch.Tensor], name: str) -> None:
        """Install a (validated) :meth:`state_entry` into these empty rows."""
        device = self.device
        keys = e["keys"]
        k = keys.numel()
        self.set_keys(keys.to(torch.int64).numpy().copy(), name)
        self.ensure_capacity(k + 1)
        self.sums[1 : k + 1] = e["sums"].to(device)
        self.sums[0] = e["singleton_sums"].to(device)
        self.row_n[1 : k + 1] = e["row_n"].to(device)
        if self.null_sums is not None:
            self.null_sums[1 : k + 1] = e["null_sums"].to(device)
        self.neg_n += e["neg_n"].to(device)
        self.neg_sent += e["neg_sent"].to(device)
        self.null_neg_sent += e["null_neg_sent"].to(device)

    def conditional_nats(self, threads: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """sum_x n_x H(C_x / |C_x|) per layer (nats, float64 CPU ``[L]``), for the labels and their null."""
        L = self.n_layers
        out = torch.zeros(L, dtype=torch.float64)
        out_null = torch.zeros(L, dtype=torch.float64) if self.null_sums is not None else None
        chunk = max(1, (1 << 22) // (L * self.n_bins))
        with cpu_threads(self.sums.device, threads):
            for a in range(1, self.n_rows, chunk):
                b = min(self.n_rows, a + chunk)
                rn = self.row_n[a:b]
                used = rn > 0
                for buf, acc in ((self.sums, out), (self.null_sums, out_null)):
                    if buf is None:
                        continue
                    x = buf[a:b]
                    tot = x.sum(-1)
                    xlogx = x.clamp_min(1e-300).log_().mul_(x).sum(-1)
                    # H(C_x / T_x) = log T_x - sum_j C_xj log C_xj / T_x (nats; H(Z | X = x),
                    # soft-entropy, accumulator.py)
                    hx = torch.where(used, tot.clamp_min(1e-300).log() - xlogx / tot.clamp_min(1e-300), 0.0)
                    acc += (rn * hx).sum(0).cpu()
        return out, out_null


class LabelTables:
    """The label sets of one accumulator state: their names, rows, and the epoch that binds
    :class:`PreparedLabels` to this state.

    ``names`` is ``None`` before the first update, ``()`` after an update without labels, else the sorted
    label-set names fixed by the first labelled update.
    """

    def __init__(self, n_layers: int, n_bins: int, device: torch.device, null: bool, null_seed: int) -> None:
        self.n_layers, self.n_bins, self.device = n_layers, n_bins, device
        self.null, self.null_seed = null, null_seed
        self.epoch = next(_EPOCHS)
        self.names: tuple[str, ...] | None = None
        self.sets: dict[str, LabelRows] = {}

    def check_names(self, names: tuple[str, ...]) -> None:
        if self.names is not None and names != self.names:
            raise ValueError(
                f"label sets must be the same in every update: expected {list(self.names)}, got {list(names)}"
            )

    def get(self, name: str) -> LabelRows:
        """The rows of label set ``name`` (created empty on first use)."""
        if name not in self.sets:
            self.sets[name] = LabelRows(self.n_layers, self.n_bins, self.device, self.null)
        return self.sets[name]

    def move_to(self, device: torch.device) -> None:
        self.device = device
        for s in self.sets.values():
            s.move_to(device)

    def nbytes(self, reserved: bool = False) -> int:
        return sum(s.nbytes(reserved) for s in self.sets.values())

    def prepare(self, labels: Any, n: int | None = None,
                groups: dict[str, Any] | None = None) -> PreparedLabels:
        """Map one batch's labels to rows, once for all layers.

        Args:
            labels: 1-D integer array/tensor ``[N]`` or ``dict[str, [N]]`` (arbitrary int64 values;
                negative = singleton).
            n: expected batch size ``N`` (defaults to the length of the first label array).
            groups: ``{name: [N] int group ids}`` for label sets that are constant within groups (per-text
                labels: group = text); their permutation null permutes labels across groups, not positions.
        """
        sets = labels_as_dict(labels)
        if not sets:
            raise ValueError("labels must contain at least one label set, got an empty dict")
        names = tuple(sorted(sets))
        self.check_names(names)
        if n is None:
            first = sets[names[0]]
            n = int(first.shape[0]) if hasattr(first, "shape") and len(first.shape) else len(first)
        rows: dict[str, torch.Tensor] = {}
        negs: dict[str, torch.Tensor | None] = {}
        arrays = {name: as_label_tensor(sets[name], n, f"labels[{name!r}]").numpy() for name in names}
        for name in names:
            lab = arrays[name]
            s = self.get(name)
            neg = lab < 0
            if neg.any():
                r = np.zeros(n, dtype=np.int64)
                r[~neg] = s.map_keys(lab[~neg])
                negs[name] = torch.from_numpy(neg)
            else:
                r = s.map_keys(lab)
                negs[name] = None
            rows[name] = torch.from_numpy(r)
        self.names = names
        perm = self.null_permutation(arrays, n) if self.null else None
        group_perm: dict[str, torch.Tensor] = {}
        for name, g in (groups or {}).items():
            if name not in arrays:
                raise ValueError(f"groups[{name!r}]: no label set of that name; label sets are {list(names)}")
            gid = as_label_tensor(g, n, f"groups[{name!r}]").numpy()
            lab = arrays[name]
            for u in np.unique(gid):
                if np.unique(lab[gid == u]).size > 1:
                    raise ValueError(f"label set {name!r} is not constant within group {int(u)}: a group "
                                     "null needs one label per group (e.g. per-text labels, group = text)")
            if self.null:
                group_perm[name] = self.group_permutation(arrays, gid, name)
        return PreparedLabels(names=names, n=n, rows=rows, neg=negs, perm=perm, epoch=self.epoch,
                              group_perm=group_perm)

    def group_permutation(self, arrays: dict[str, np.ndarray], gid: np.ndarray, name: str) -> torch.Tensor:
        """Null index map permuting labels across groups: position i (group g) takes the label of the first
        position of group sigma(g), sigma a seeded permutation of the batch's groups: the exchangeable unit of
        the test is the group (the text), not the position."""
        h = hashlib.blake2b(f"{self.null_seed}/groups/{name}".encode(), digest_size=8)
        for key in sorted(arrays):
            h.update(key.encode())
            h.update(np.ascontiguousarray(arrays[key], dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(gid, dtype=np.int64).tobytes())
        seed = int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)
        uniq, first, inverse = np.unique(gid, return_index=True, return_inverse=True)
        sigma = torch.randperm(uniq.size, generator=torch.Generator().manual_seed(seed)).numpy()
        return torch.from_numpy(first[sigma][inverse].astype(np.int64))

    def null_permutation(self, arrays: dict[str, np.ndarray], n: int) -> torch.Tensor:
        """Permutation of a batch for the null label sets, seeded by ``null_seed`` and its labels."""
        h = hashlib.blake2b(str(self.null_seed).encode(), digest_size=8)
        for name in sorted(arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(arrays[name], dtype=np.int64).tobytes())
        seed = int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
