"""Labels for the information plane: n-gram back-off ids (any order) and per-sequence labels.

For a token position ``i`` of a sequence ``t``:

* input label of order ``n``  ``X_n = (t[i-n+1], ..., t[i])``  (the n-gram ending at ``i``),
* output label of order ``n`` ``Y_n = (t[i+1], ..., t[i+n])``  (the next ``n`` tokens),

(paper, "Learning is Forgetting" sec. 3; reference code ``_encode_ngram``). All requested orders share one set
of *valid positions*: those with ``n_max - 1`` tokens of history and ``n_max`` future tokens inside the same
segment, where a segment is a maximal run of attended tokens (``attention_mask == 1``) that belong to the same
document (``document_ids``) with consecutive ``position_ids``. This makes the labels identical under left or
right padding and never lets an n-gram straddle two packed documents.

n-gram tuples are mapped to dense ids with a persistent :class:`NgramTable` (``torch.unique(dim=0)`` per batch
+ a dictionary keyed by the tuple's bytes), so ids are collision-free for any vocabulary size and any order
(the reference code's ``t0*V^(n-1)+...`` int64 code overflows for ``V^n > 2^63``).

A label pre-pass (:class:`LabelCounter`) counts every id over the whole sample *without running the model*;
labels seen exactly once are then passed to the accumulator as negative values (its "singleton" convention:
H(Z|x) is the sample's own entropy and no row is stored), which is exact and keeps memory small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from infoplane.plane import label_set_kind as parse_label_set

__all__ = [
    "valid_positions",
    "ngram_tuples",
    "NgramTable",
    "LabelCounter",
    "SequenceLabelEncoder",
    "label_set_name",
    "parse_label_set",
    "check_orders",
]

SINGLETON = -1  # accumulator convention: a negative label = "occurs exactly once in the whole dataset"


def check_orders(orders: Sequence[int] | int) -> tuple[int, ...]:
    """Validate n-gram orders: a non-empty sequence of distinct integers >= 1 (returned sorted)."""
    if isinstance(orders, (int, np.integer)):
        orders = (int(orders),)
    try:
        out = tuple(sorted({int(n) for n in orders}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"orders must be integers >= 1, got {orders!r}") from exc
    if not out or out[0] < 1 or any(int(n) != n for n in orders):
        raise ValueError(f"orders must be a non-empty sequence of integers >= 1, got {orders!r}")
    return out


def label_set_name(kind: str, n: int) -> str:
    """Name of an n-gram label set: ``input_{n}`` (X_n) or ``output_{n}`` (Y_n)."""
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    return f"{kind}_{n}"


def _as_long_2d(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape [B, T] (or [T]), got shape {tuple(t.shape)}")
    return t.long()


def valid_positions(
    input_ids: torch.Tensor,
    max_order: int,
    attention_mask: torch.Tensor | None = None,
    document_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask ``[B, T]`` of positions that have ``max_order - 1`` tokens of history and ``max_order``
    future tokens inside their own segment (shared by all orders <= ``max_order``).

    Args:
        input_ids: ``[B, T]`` (or ``[T]``) token ids.
        max_order: the largest n-gram order requested (>= 1).
        attention_mask: ``[B, T]`` 1 for real tokens, 0 for padding (any side, or holes). Default: all real.
        document_ids: ``[B, T]`` packed-document id of each token; a change starts a new segment.
        position_ids: ``[B, T]``; a position that is not ``previous + 1`` starts a new segment (packing).
    """
    ids = _as_long_2d(input_ids, "input_ids")
    if int(max_order) < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    B, T = ids.shape
    real = torch.ones_like(ids, dtype=torch.bool)
    if attention_mask is not None:
        real = _as_long_2d(attention_mask, "attention_mask").ne(0)
        if real.shape != ids.shape:
            raise ValueError(f"attention_mask must have the shape of input_ids {tuple(ids.shape)}, "
                             f"got {tuple(real.shape)}")
    cont = torch.zeros_like(real)  # cont[b, t]: token t continues the segment of token t-1
    if T > 1:
        c = real[:, 1:] & real[:, :-1]
        for extra, name in ((document_ids, "document_ids"), (position_ids, "position_ids")):
            if extra is None:
                continue
            e = _as_long_2d(extra, name)
            if e.shape != ids.shape:
                raise ValueError(f"{name} must have the shape of input_ids {tuple(ids.shape)}, "
                                 f"got {tuple(e.shape)}")
            c &= (e[:, 1:] == e[:, :-1]) if name == "document_ids" else (e[:, 1:] == e[:, :-1] + 1)
        cont[:, 1:] = c
    idx = torch.arange(B * T).view(B, T)
    starts = real & ~cont
    ends = real.clone()
    ends[:, :-1] &= ~cont[:, 1:]
    # index of the segment start at or before t (cummax of start indices) and of the segment end at or after t
    seg_start = torch.where(starts, idx, torch.full_like(idx, -1)).flatten().cummax(0).values.view(B, T)
    big = B * T
    rev = torch.where(ends, idx, torch.full_like(idx, big)).flatten().flip(0).cummin(0).values.flip(0)
    seg_end = rev.view(B, T)
    history = idx - seg_start  # tokens before t in its segment
    future = seg_end - idx  # tokens after t in its segment
    return real & (history >= max_order - 1) & (future >= max_order)


def ngram_tuples(input_ids: torch.Tensor, positions: torch.Tensor, n: int, kind: str) -> torch.Tensor:
    """n-gram tuples ``[N, n]`` (int64) at the ``True`` entries of ``positions`` (row-major order).

    ``kind="input"``: tokens ``i-n+1..i``; ``kind="output"``: tokens ``i+1..i+n``. ``positions`` must come
    from :func:`valid_positions` with ``max_order >= n`` so that every tuple lies inside one segment.
    """
    ids = _as_long_2d(input_ids, "input_ids")
    flat = ids.flatten()
    p = torch.nonzero(positions.flatten(), as_tuple=False).squeeze(1)
    if kind == "input":
        offsets = torch.arange(-n + 1, 1)
    elif kind == "output":
        offsets = torch.arange(1, n + 1)
    else:
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    return flat[p.unsqueeze(1) + offsets.unsqueeze(0)]


class NgramTable:
    """Persistent, collision-free map from n-gram tuples (any order, any vocabulary size) to dense ids.

    Ids are assigned in order of first appearance (0, 1, 2, ...) per order ``n``; the same tuple always
    maps to the same id within a run, whether it appears as an input or an output label.
    """

    def __init__(self) -> None:
        self._tables: dict[int, dict[bytes, int]] = {}

    def n_ids(self, n: int) -> int:
        return len(self._tables.get(n, {}))

    def encode(self, tuples: torch.Tensor) -> torch.Tensor:
        """``tuples [N, n]`` int64 -> ids ``[N]`` int64 (new tuples get new ids)."""
        if tuples.ndim != 2:
            raise ValueError(f"tuples must have shape [N, n], got {tuple(tuples.shape)}")
        n = tuples.shape[1]
        table = self._tables.setdefault(n, {})
        if tuples.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        uniq, inverse = torch.unique(tuples.long(), dim=0, return_inverse=True)
        rows = np.ascontiguousarray(uniq.numpy())
        uid = np.empty(rows.shape[0], dtype=np.int64)
        for j, row in enumerate(rows):
            key = row.tobytes()
            got = table.get(key)
            if got is None:
                got = len(table)
                table[key] = got
            uid[j] = got
        return torch.from_numpy(uid)[inverse]

    def decode(self, n: int) -> np.ndarray:
        """All tuples of order ``n`` as an array ``[n_ids, n]`` whose row ``k`` has id ``k``."""
        table = self._tables.get(n, {})
        out = np.zeros((len(table), n), dtype=np.int64)
        for key, k in table.items():
            out[k] = np.frombuffer(key, dtype=np.int64)
        return out


@dataclass
class LabelCounter:
    """Counts of label ids per label set over the whole sample (the no-model label pre-pass)."""

    counts: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, ids: torch.Tensor | np.ndarray) -> None:
        a = np.asarray(ids, dtype=np.int64)
        if a.size and a.min() < 0:
            raise ValueError(f"label ids for {name!r} must be >= 0 before singleton marking")
        c = np.bincount(a, minlength=0) if a.size else np.zeros(0, dtype=np.int64)
        old = self.counts.get(name, np.zeros(0, dtype=np.int64))
        size = max(len(old), len(c))
        new = np.zeros(size, dtype=np.int64)
        new[: len(old)] += old
        new[: len(c)] += c
        self.counts[name] = new

    def mark_singletons(self, name: str, ids: torch.Tensor | np.ndarray, min_count: int = 1) -> torch.Tensor:
        """Replace ids seen exactly once in the whole sample by ``-1`` (the accumulator's singleton label).

        With ``min_count > 1``, every id seen fewer than ``min_count`` times is instead pooled into one shared
        "rare" id (``pool_id``). Pooling merges labels, so the MI can only go down: a conservative estimate
        with much less small-sample bias, but a different estimand (say so when reporting it).
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        a = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        counts = torch.from_numpy(self.counts[name])
        if min_count > 1:
            return torch.where(counts[a] < min_count, torch.full_like(a, self.pool_id(name)), a)
        return torch.where(counts[a] == 1, torch.full_like(a, SINGLETON), a)

    def pool_id(self, name: str) -> int:
        """The id shared by pooled rare labels of ``name`` (one past every real id)."""
        return len(self.counts[name])

    def summary(self, name: str, min_count: int = 1) -> dict[str, float]:
        """``n_labels`` (distinct), ``n_singletons``, ``singleton_fraction`` (of samples) of one label set,
        and with ``min_count > 1`` the ``pooled_fraction`` of samples whose label was pooled as rare."""
        c = self.counts[name]
        c = c[c > 0]
        total = int(c.sum())
        singles = int((c == 1).sum())
        out = {"n_labels": int(len(c)), "n_singletons": singles,
               "singleton_fraction": singles / total if total else 0.0}
        if min_count > 1:
            out["pooled_fraction"] = float(c[c < min_count].sum() / total) if total else 0.0
        return out


class SequenceLabelEncoder:
    """Maps per-text label values (strings, numbers, booleans) to dense ints, deterministically.

    Values are sorted by their string form so the mapping does not depend on the order texts are seen.
    """

    def __init__(self, values: Mapping[str, Sequence[Any]]) -> None:
        self.vocab: dict[str, dict[str, int]] = {}
        for name, vals in values.items():
            if any(v is None for v in vals):
                raise ValueError(f"sequence label {name!r} is missing for some texts: "
                                 "every text needs a value")
            keys = sorted({self._key(v) for v in vals})
            self.vocab[name] = {k: i for i, k in enumerate(keys)}

    @staticmethod
    def _key(v: Any) -> str:
        return f"{type(v).__name__}:{v}" if not isinstance(v, str) else v

    def encode(self, name: str, value: Any) -> int:
        return self.vocab[name][self._key(value)]
