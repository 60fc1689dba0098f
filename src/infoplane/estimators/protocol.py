"""One streaming contract for the estimators, and its distributed synchronisation.

Every streaming estimator (:class:`~infoplane.estimators.SoftEntropyAccumulator`,
:class:`~infoplane.estimators.OnlineMatrixEntropy`) implements :class:`StreamingEstimator`:
``update / compute / reset / merge / state_dict / load_state_dict / sync`` (plus ``unsync`` and
``is_synced``). Their statistics are additive, so merging in any order gives the one-pass result.

Synchronisation follows torchmetrics: the *local* statistics are never overwritten by a sync.

* ``compute(sync=True, group=None)`` all-gathers every rank's local statistics into a temporary total,
  computes from it, and leaves the local state untouched.
* ``sync(group=None)`` does the same all-gather and keeps the total as a *synced view*: until the next
  ``update``, ``merge``, ``reset``, ``load_state_dict`` or ``unsync``, ``compute()`` and ``state_dict()``
  report the global total. It is idempotent: a second ``sync()`` re-gathers the (unchanged) local
  statistics and gives the same total, never the total times the world size. An ``update`` after a sync
  drops the view and adds to the local statistics, so a later sync covers every sample exactly once.
* Merging an accumulator that holds a synced view is refused (it would count other ranks' samples again).

All of this is a no-op (the local statistics are reported) when ``torch.distributed`` is not initialised.
Every rank must make the same ``sync`` / ``compute(sync=True)`` calls (they are collectives).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["StreamingEstimator", "SyncMixin", "gather_total"]

_E = TypeVar("_E", bound="SyncMixin")


@runtime_checkable
class StreamingEstimator(Protocol):
    """The streaming contract shared by the estimators (see the module docstring for sync semantics)."""

    def update(self, *args: Any, **kwargs: Any) -> None: ...

    def compute(self, *args: Any, **kwargs: Any) -> Any: ...

    def reset(self) -> None: ...

    def merge(self, other: Any) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def sync(self, group: Any = None) -> Any: ...

    def unsync(self) -> Any: ...

    @property
    def is_synced(self) -> bool: ...


def _distributed() -> bool:
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


def gather_total(est: _E, group: Any = None) -> _E:
    """Every rank's *local* statistics of ``est`` merged in rank order into a new estimator (identical on
    every rank); ``est`` itself when ``torch.distributed`` is not initialised. A collective call."""
    if not _distributed():
        return est
    import torch.distributed as dist

    world = dist.get_world_size(group)
    states: list[Any] = [None] * world
    dist.all_gather_object(states, est._local_state_dict(), group=group)
    total = est._empty_like()
    for st in states:
        part = est._empty_like()
        part.load_state_dict(st)
        total.merge(part)
    return total


class SyncMixin:
    """The shared sync plumbing: a subclass provides ``_local_state_dict()``, ``_empty_like()``,
    ``load_state_dict`` and ``merge``, calls :meth:`_drop_view` in every method that changes its
    statistics, and reads statistics from :meth:`_source`."""

    _synced_view: Any = None

    def _local_state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _empty_like(self: _E) -> _E:
        raise NotImplementedError

    @property
    def is_synced(self) -> bool:
        """Whether reads currently report a synced global total (see :meth:`sync`)."""
        return self._synced_view is not None

    def sync(self: _E, group: Any = None) -> _E:
        """All-gather every rank's local statistics; until the next change, ``compute()`` and
        ``state_dict()`` report the global total. Idempotent; local statistics are untouched; a no-op
        without an initialised ``torch.distributed``. Returns ``self``."""
        total = gather_total(self, group)
        self._synced_view = total if total is not self else None
        return self

    def unsync(self: _E) -> _E:
        """Drop the synced view (reads report the local statistics again). Returns ``self``."""
        self._synced_view = None
        return self

    def _drop_view(self) -> None:
        self._synced_view = None

    def _source(self: _E, sync: bool, group: Any) -> _E:
        """The estimator whose statistics a read reports: a fresh global total (``sync=True``), the synced
        view, or ``self``."""
        if sync:
            return gather_total(self, group)
        return self._synced_view if self._synced_view is not None else self

    def _refuse_merge(self, other: Any) -> None:
        """Merging oneself or a synced view would count samples twice."""
        if other is self:
            raise ValueError(
                f"cannot merge a {type(self).__name__} into itself (it would double every count); "
                "merge a copy made with load_state_dict(state_dict()) if that is really meant"
            )
        if isinstance(other, SyncMixin) and other.is_synced:
            raise ValueError(
                f"cannot merge a synced {type(other).__name__}: it reports the global total of all ranks and "
                "merging it would count other ranks' samples again; call other.unsync() first"
            )
