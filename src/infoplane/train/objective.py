"""The GAPT step, once: base loss, plus lambda * MBE of the scheduled layers while compressing.

Relaxed IBLM objective (Yu 2025, arXiv:2505.08727, abstract; relaxation of the reference code
fangyuan-ksgk/mod_gpt, ``train_iblm.py`` and ``src/gapt.py``)::

    L = L_base + lambda * mean_{l in S_t} MBE_l        (compression phase, or always for ``kind="ce+mbe"``)
    L = L_base                                         (memorisation phase, or always for ``kind="ce"``)

``L_base`` is the model's cross-entropy by default; any differentiable scalar works (the forgetting experiment
passes its L1 regression loss). ``MBE_l`` is the patch matrix-based entropy of block ``l``'s output
(:func:`infoplane.estimators.patch_matrix_entropy`), and ``S_t`` the layers of the schedule at optimiser step
``t`` (:class:`~infoplane.train.regularizer.LayerSchedule`: ``"middle"``, ``"rotate"``, ``"all"`` or a list).

Two schemes place the MBE term (``ObjectiveConfig.scheme``):

* ``"joint"``: every micro-batch's loss is ``L_base + lambda * MBE`` while compressing;
* ``"alternating"`` (paper-era reference): while compressing, even micro-batches carry ``L_base`` only and odd
  micro-batches ``lambda * MBE`` only (with ``rotate``: one layer per step), so one optimiser step with
  ``grad_accum = 2`` sees one CE and one MBE micro-batch (mod_gpt ``train_pcgrad.py``, ``--additive_grad``).

When the MBE term is not in the loss, MBE is still computed without gradient for the log and the controller
(``log_mbe``, always for GAPT). The :class:`~infoplane.train.phases.PhaseController` is fed once per optimiser
step (:meth:`GaptObjective.feed`) with the step's mean base loss and per-layer MBE; the phase it returns
applies from the next step on, so that every micro-batch and rank of one step shares one phase.

Every trainer in infoplane calls this module: the native :class:`~infoplane.train.trainer.Trainer`, the
Hugging Face path (:mod:`infoplane.train.hf`) and the experiments' own small loops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from infoplane.estimators.matrix import patch_matrix_entropy
from infoplane.io import strict_from_dict
from infoplane.train.phases import Phase, PhaseController, PhaseControllerConfig
from infoplane.train.regularizer import LayerSchedule, mbe_penalty

__all__ = ["KINDS", "SCHEMES", "ObjectiveConfig", "ObjectiveTerms", "GaptObjective", "mean_signals",
           "single_step"]

KINDS = ("ce", "ce+mbe", "gapt")
SCHEMES = ("joint", "alternating")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the loss of one step is made of.

    kind: ``"ce"`` (base loss only), ``"ce+mbe"`` (static: base + lambda * MBE every step) or ``"gapt"`` (the
        MBE term only in compression phases chosen by a :class:`PhaseController`).
    mbe_weight: lambda >= 0 (reference code default 1.0, mod_gpt ``GaptConfig``).
    patch_size: tokens per MBE patch p (reference 8).
    layers: ``"rotate"`` (the default, as both reference implementations: one block of ``skip_first ..
        L-1-skip_last`` per optimiser step, cycling; mod_gpt src/gapt.py), ``"middle"`` (all of those every
        step), ``"all"`` or a list of block indices.
    skip_first, skip_last: blocks excluded at each end by ``"middle"`` / ``"rotate"`` (reference 1, 1).
    scheme: ``"joint"`` or ``"alternating"`` (module docstring).
    log_mbe: compute MBE without gradient when it is not penalised (for the log; GAPT always does).
    centered: subtract the patch mean before the Gram matrix (diagnostic variant; the papers use False).
    """

    kind: str = "ce"
    mbe_weight: float = 1.0
    patch_size: int = 8
    layers: Any = "rotate"
    skip_first: int = 1
    skip_last: int = 1
    scheme: str = "joint"
    log_mbe: bool = True
    centered: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ObjectiveConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"ObjectiveConfig.scheme must be one of {SCHEMES}, got {self.scheme!r}")
        w = self.mbe_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"ObjectiveConfig.mbe_weight must be a finite number >= 0, got {w!r}")
        for name in ("patch_size",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ObjectiveConfig.{name} must be an int >= 1, got {v!r}")
        for name in ("skip_first", "skip_last"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"ObjectiveConfig.{name} must be an int >= 0, got {v!r}")
        if isinstance(self.layers, str):
            if self.layers not in ("middle", "rotate", "all"):
                raise ValueError(f"ObjectiveConfig.layers must be 'middle', 'rotate', 'all' or a list of "
                                 f"block indices, got {self.layers!r}")
        else:
            try:
                layers = tuple(self.layers)
            except TypeError as exc:
                raise ValueError(f"ObjectiveConfig.layers must be 'middle', 'rotate', 'all' or a list of "
                                 f"block indices, got {self.layers!r}") from exc
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) for i in layers):
                raise ValueError(f"ObjectiveConfig.layers: expected a non-empty list of ints, "
                                 f"got {self.layers!r}")
            object.__setattr__(self, "layers", layers)

    @property
    def uses_mbe(self) -> bool:
        """True when an MBE term can enter the loss (so the layer choice must be valid for the model)."""
        return self.kind != "ce" and self.mbe_weight > 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.layers, tuple):
            d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObjectiveConfig:
        """Strict: an unknown key is a ValueError naming it."""
        return strict_from_dict(cls, dict(d))


@dataclass
class ObjectiveTerms:
    """One micro-batch's objective.

    loss: the differentiable scalar to back-propagate. base: the base loss value (nats for CE; always
    reported, also on MBE-only micro-batches). mbe: ``{block: nats}`` of the scheduled layers ({} if not
    computed).
    penalised: whether ``lambda * MBE`` is in ``loss``. with_base: whether ``L_base`` is in ``loss`` (False on
    the MBE micro-batches of the alternating scheme). phase: the phase used.
    """

    loss: torch.Tensor
    base: float
    mbe: dict[int, float]
    penalised: bool
    with_base: bool
    phase: str

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.loss)) and math.isfinite(self.base)


def mean_signals(terms: Sequence[ObjectiveTerms]) -> tuple[float, dict[int, float]]:
    """Mean base loss and per-layer MBE over micro-batches (what the controller sees once per step)."""
    if not terms:
        raise ValueError("mean_signals: no micro-batch terms")
    n = len(terms)
    base = sum(t.base for t in terms) / n
    mbe_sum: dict[int, float] = {}
    for t in terms:
        for i, v in t.mbe.items():
            mbe_sum[i] = mbe_sum.get(i, 0.0) + v
    return base, {i: v / n for i, v in sorted(mbe_sum.items())}


def _mbe_no_grad(hidden: Sequence[torch.Tensor], layers: Sequence[int], patch_size: int,
                 centered: bool) -> dict[int, float]:
    """Patch MBE (nats) of each listed layer without gradient (one host transfer)."""
    with torch.no_grad():
        vals = [patch_matrix_entropy(hidden[i].detach().float(), patch_size=patch_size,
                                     remainder="drop_start", centered=centered) for i in layers]
        return {i: float(v) for i, v in zip(layers, torch.stack(vals).tolist())}


@dataclass
class GaptObjective:
    """The GAPT step's loss and phase bookkeeping (module docstring).

    Args:
        config: an :class:`ObjectiveConfig`.
        controller: the phase controller (GAPT only). ``None`` with ``kind="gapt"`` builds one from
            ``controller_config`` (default: :class:`PhaseControllerConfig` defaults).

    Use per optimiser step ``t``: ``terms = obj(base_loss, hidden, step=t, micro=k)`` for each micro-batch
    ``k``
    (back-propagate ``terms.loss``), then ``obj.feed(*mean_signals(all_terms))`` once (after a cross-rank mean
    in data-parallel runs). ``obj.phase`` is the phase of the next call.
    """

    config: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    controller: PhaseController | None = None
    controller_config: PhaseControllerConfig | None = None
    _schedules: dict[int, LayerSchedule] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.config, ObjectiveConfig):
            raise ValueError(f"GaptObjective expects an ObjectiveConfig, got {type(self.config).__name__}")
        if self.config.kind == "gapt" and self.controller is None:
            self.controller = (self.controller_config or PhaseControllerConfig()).build()
        if self.config.kind != "gapt" and self.controller is not None:
            raise ValueError(f"a PhaseController was given but ObjectiveConfig.kind is {self.config.kind!r}; "
                             "only 'gapt' uses one")

    @property
    def phase(self) -> str:
        """Phase of the next call: ``"memorize"`` or ``"compress"`` (``ce``: memorize; ``ce+mbe``:
        compress)."""
        kind = self.config.kind
        if kind == "ce":
            return Phase.MEMORIZE.value
        if kind == "ce+mbe":
            return Phase.COMPRESS.value
        return self.controller.phase.value

    @property
    def events(self) -> list[dict[str, Any]]:
        """Switch events so far (GAPT; [] otherwise)."""
        return list(self.controller.events) if self.controller is not None else []

    def schedule(self, n_layers: int) -> LayerSchedule:
        """The layer schedule for a model of ``n_layers`` blocks (built once per depth)."""
        if n_layers not in self._schedules:
            c = self.config
            self._schedules[n_layers] = LayerSchedule(n_layers, list(c.layers) if isinstance(c.layers, tuple)
                                                      else c.layers, c.skip_first, c.skip_last)
        return self._schedules[n_layers]

    def _fits(self, n_layers: int) -> bool:
        try:
            self.schedule(n_layers)
        except ValueError:
            return False
        return True

    def layers(self, step: int, n_layers: int) -> list[int]:
        """Blocks whose MBE is computed at 0-based optimiser step ``step``."""
        return self.schedule(n_layers).layers(step)

    def __call__(self, base: torch.Tensor, hidden: Sequence[torch.Tensor], *, step: int = 0,
                 micro: int = 0) -> ObjectiveTerms:
        """Objective of one micro-batch.

        Args:
            base: the base loss, a differentiable 0-d tensor (CE in nats/token by default).
            hidden: block outputs, ``L`` tensors ``[B, T, D]`` (before the final norm).
            step: 0-based optimiser step (selects the layers of ``rotate``).
            micro: micro-batch index within the step (selects CE vs MBE in the alternating scheme).
        """
        c = self.config
        if not isinstance(base, torch.Tensor) or base.dim() != 0:
            raise ValueError(f"base loss must be a 0-d tensor, got {type(base).__name__}"
                             f"{'' if not isinstance(base, torch.Tensor) else tuple(base.shape)}")
        if isinstance(hidden, torch.Tensor) or not isinstance(hidden, Sequence) or not hidden:
            raise ValueError("hidden must be a non-empty list of [B, T, D] block outputs")
        phase = self.phase
        base_v = float(base.detach())
        penalise = phase == Phase.COMPRESS.value and c.mbe_weight > 0
        need_mbe = penalise or c.log_mbe or c.kind == "gapt"
        if not math.isfinite(base_v):
            return ObjectiveTerms(base, base_v, {}, False, True, phase)
        loss, mbe, with_base = base, {}, True
        if need_mbe and not penalise and c.kind != "gapt" and not self._fits(len(hidden)):
            need_mbe = False  # log-only MBE of a layer choice this depth cannot take: nothing to log
        try:
            layers = self.layers(step, len(hidden)) if need_mbe else []
            mbe_only = penalise and c.scheme == "alternating" and micro % 2 == 1
            if penalise and (c.scheme == "joint" or mbe_only):
                pen, mbe = mbe_penalty(hidden, layers, c.patch_size, centered=c.centered)
                if mbe_only:
                    # MBE alone on odd micro-batches (mod_gpt train_pcgrad.py)
                    loss, with_base = c.mbe_weight * pen, False
                else:
                    loss = base + c.mbe_weight * pen  # L = L_CE + lambda * MBE (mod_gpt src/gapt.py)
            else:
                penalise = False
                if need_mbe:
                    mbe = _mbe_no_grad(hidden, layers, c.patch_size, c.centered)
        except ValueError as exc:  # the MBE estimator rejects non-finite hidden states: the step is skipped
            if "finite" not in str(exc):
                raise
            loss = base * float("nan")
        return ObjectiveTerms(loss, base_v, mbe, penalise, with_base, phase)

    def feed(self, base: float, mbe: Mapping[int, float]) -> list[dict[str, Any]]:
        """Feed one optimiser step's mean base loss and per-layer MBE to the controller (GAPT; a no-op
        otherwise). Returns the switch events this caused; the new phase applies from the next step."""
        if self.controller is None:
            return []
        before = len(self.controller.events)
        self.controller.step(base, dict(mbe))
        return self.controller.events[before:]

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(),
                "controller": self.controller.state_dict() if self.controller is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.controller is not None and state.get("controller"):
            self.controller.load_state_dict(state["controller"])


def single_step(objective: GaptObjective, base: torch.Tensor, hidden: Sequence[torch.Tensor],
                optimizer: torch.optim.Optimizer, *, step: int,
                params: Iterable[torch.nn.Parameter] | None = None,
                grad_clip: float | None = None) -> tuple[ObjectiveTerms, list[dict[str, Any]], bool]:
    """One optimiser step without micro-batches: objective -> backward -> (clip) -> update -> controller.

    The loop body shared by the plain-PyTorch Hugging Face path and the experiments' small loops (the native
    :class:`~infoplane.train.trainer.Trainer` adds micro-batches and data parallelism around the same
    objective). A non-finite loss or gradient norm skips the update (gradients zeroed, the controller not
    fed).

    Returns ``(terms, switch events, skipped)``.
    """
    terms = objective(base, hidden, step=step)
    optimizer.zero_grad(set_to_none=True)
    skipped = not terms.finite
    if not skipped:
        terms.loss.backward()
        if grad_clip:
            if params is None:
                raise ValueError("single_step: grad_clip needs params (the model's parameters)")
            skipped = not math.isfinite(float(torch.nn.utils.clip_grad_norm_(params, grad_clip)))
    if skipped:
        optimizer.zero_grad(set_to_none=True)
        return terms, [], True
    optimizer.step()
    return terms, objective.feed(terms.base, terms.mbe), False
