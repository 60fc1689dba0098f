"""GAPT for any Hugging Face causal LM, through the one GAPT step (:mod:`infoplane.train.objective`).

:class:`GaptLoss` turns an HF forward output (``output_hidden_states=True``) into the objective of
:class:`~infoplane.train.objective.GaptObjective`: CE (+ lambda * MBE in the compression phase) and feeds the
step's CE / MBE to its :class:`~infoplane.train.phases.PhaseController` once per optimiser step. Layers
index the *block outputs* ``hidden_states[1:]``; the default ``"rotate"`` (one block per optimiser step, as
the reference implementations) skips the first and the last (which is post-final-norm in most HF models).
Use it through :func:`gapt_training_step` (plain PyTorch loop) or :func:`gapt_trainer_class` /
:class:`GaptCallback` (``transformers.Trainer``).

Native checkpoints read like an HF model through :class:`~infoplane.train.model.NativeCausalLM`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from infoplane.train.model import NativeCausalLM, NativeOutput
from infoplane.train.objective import (
    GaptObjective,
    ObjectiveConfig,
    ObjectiveTerms,
    mean_signals,
    single_step,
)
from infoplane.train.phases import PhaseController

__all__ = [
    "NativeCausalLM",
    "NativeOutput",
    "GaptLoss",
    "GaptStep",
    "gapt_training_step",
    "GaptCallback",
    "gapt_trainer_class",
]


@dataclass
class GaptStep:
    """What one GAPT loss evaluation produced: loss (differentiable), ce (float, nats), mbe {layer: nats},
    penalised (whether lambda * MBE is in the loss), phase (the phase used)."""

    loss: torch.Tensor
    ce: float
    mbe: dict[int, float]
    penalised: bool
    phase: str
    events: list[dict[str, Any]] = field(default_factory=list)


class GaptLoss:
    """CE (+ ``mbe_weight`` * mean patch MBE of the chosen block outputs in compression) for HF outputs.

    Args:
        controller: a :class:`PhaseController` (None = static objective given by ``always_compress``).
        mbe_weight: lambda (reference code default 1.0, mod_gpt ``GaptConfig``).
        layers: indices into the block outputs ``hidden_states[1:]``, ``"middle"``, ``"rotate"`` or ``"all"``.
        patch_size: tokens per patch p (reference 8).
        always_compress: without a controller, True = static CE + lambda MBE, False = CE only.
        objective: instead of the arguments above, a ready :class:`GaptObjective`.

    ``loss_fn(outputs)`` returns a :class:`GaptStep`; call ``loss_fn.accumulate(step)`` per micro-batch
    and ``loss_fn.update()`` once per optimiser step to feed the averaged signals to the controller
    (:func:`gapt_training_step` does both).
    """

    def __init__(self, controller: PhaseController | None = None, mbe_weight: float = 1.0,
                 layers: Sequence[int] | str = "rotate", patch_size: int = 8,
                 always_compress: bool = False, *, objective: GaptObjective | None = None) -> None:
        if objective is None:
            kind = "gapt" if controller is not None else ("ce+mbe" if always_compress else "ce")
            cfg = ObjectiveConfig(kind=kind, mbe_weight=mbe_weight, patch_size=patch_size,
                                  layers=layers if isinstance(layers, str) else tuple(layers))
            objective = GaptObjective(cfg, controller=controller)
        self.objective = objective
        self.step = 0  # completed optimiser steps (selects the layer of "rotate")
        self._micro = 0
        self._acc: list[ObjectiveTerms] = []

    @property
    def controller(self) -> PhaseController | None:
        return self.objective.controller

    @property
    def phase(self) -> str:
        return self.objective.phase

    def __call__(self, outputs: Any, ce: torch.Tensor | None = None) -> GaptStep:
        """outputs: HF ``CausalLMOutput`` (or :class:`NativeOutput`) with ``hidden_states`` (L+1 tensors) and
        ``loss`` (CE from ``labels``) unless ``ce`` is given."""
        hs = getattr(outputs, "hidden_states", None)
        if hs is None or len(hs) < 2:
            raise ValueError("outputs.hidden_states missing: call the model with output_hidden_states=True")
        ce = outputs.loss if ce is None else ce
        if ce is None:
            raise ValueError("no CE: pass labels to the model or give ce=")
        t = self.objective(ce, list(hs[1:]), step=self.step, micro=self._micro)
        self._micro += 1
        return GaptStep(loss=t.loss, ce=t.base, mbe=t.mbe, penalised=t.penalised, phase=t.phase)

    def accumulate(self, step: GaptStep) -> None:
        """Remember a micro-batch's (finite) signals for the next :meth:`update`."""
        if math.isfinite(step.ce) and all(math.isfinite(v) for v in step.mbe.values()):
            self._acc.append(ObjectiveTerms(step.loss, step.ce, step.mbe, step.penalised, True, step.phase))

    def update(self) -> list[dict[str, Any]]:
        """Close the optimiser step: feed the mean CE / per-layer MBE of the accumulated micro-batches to the
        controller; returns the switch events this caused (the new phase applies from the next step on)."""
        self.step += 1
        self._micro = 0
        if not self._acc:
            return []
        ce, mbe = mean_signals(self._acc)
        self._acc.clear()
        return self.objective.feed(ce, mbe)


def _forward(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> Any:
    inputs = dict(batch)
    if "labels" not in inputs:
        inputs["labels"] = inputs["input_ids"]
    return model(**inputs, output_hidden_states=True)


def gapt_training_step(model: nn.Module, batch: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                       loss_fn: GaptLoss | PhaseController, *, grad_clip: float | None = 1.0,
                       scheduler: Any = None, mbe_weight: float = 1.0, layers: Sequence[int] | str = "rotate",
                       patch_size: int = 8) -> dict[str, Any]:
    """One GAPT optimiser step on an HF causal LM (plain PyTorch loop): batch -> forward -> objective -> step.

    batch: ``{"input_ids": [B, T], "attention_mask"?: [B, T], "labels"?: [B, T]}`` (labels default to
    input_ids; the model shifts them). loss_fn: a :class:`GaptLoss`, or a bare :class:`PhaseController`
    (then ``mbe_weight``, ``layers``, ``patch_size`` build the loss; pass the same object every step, as the
    wrapper is cached on it). A non-finite loss skips the update (gradients zeroed) and is reported.
    Returns ``{"loss", "ce", "mbe", "mbe_mean", "phase", "next_phase", "switch", "skipped"}``.
    """
    if isinstance(loss_fn, PhaseController):
        ctrl = loss_fn
        cached = getattr(ctrl, "_gapt_loss", None)
        if cached is None:
            cached = GaptLoss(ctrl, mbe_weight=mbe_weight, layers=layers, patch_size=patch_size)
            ctrl._gapt_loss = cached  # type: ignore[attr-defined]
        loss_fn = cached
    if not isinstance(loss_fn, GaptLoss):
        raise ValueError(f"loss_fn must be a GaptLoss or PhaseController, got {type(loss_fn).__name__}")
    model.train()
    outputs = _forward(model, batch)
    hs = getattr(outputs, "hidden_states", None)
    if hs is None or len(hs) < 2 or outputs.loss is None:
        raise ValueError("the model must return loss and hidden_states "
                         "(labels and output_hidden_states=True)")
    terms, events, skipped = single_step(loss_fn.objective, outputs.loss, list(hs[1:]), optimizer,
                                         step=loss_fn.step, params=model.parameters(), grad_clip=grad_clip)
    if not skipped:
        optimizer.zero_grad(set_to_none=True)
        loss_fn.step += 1
        if scheduler is not None:
            scheduler.step()
    return {
        "loss": float(terms.loss.detach()), "ce": terms.base, "mbe": terms.mbe,
        "mbe_mean": sum(terms.mbe.values()) / len(terms.mbe) if terms.mbe else None,
        "phase": terms.phase, "next_phase": loss_fn.phase, "switch": events, "skipped": skipped,
    }


class GaptCallback:
    """``transformers.TrainerCallback``-compatible object: feeds the controller once per optimiser step
    (``on_step_end``) and records phases / switch events / CE / per-layer MBE (``history``). ``on_log`` adds
    the latest step's values to the Trainer's logs (:meth:`log_values`). Use with :func:`gapt_trainer_class`.
    """

    def __init__(self, loss_fn: GaptLoss) -> None:
        self.loss_fn = loss_fn
        self.history: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:  # every other TrainerCallback event is a no-op
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        phase = self.loss_fn.phase
        acc = self.loss_fn._acc  # this step's micro-batch signals, read before update() clears them
        ce, mbe = mean_signals(acc) if acc else (None, {})
        events = self.loss_fn.update()
        self.history.append({"step": int(state.global_step), "phase": phase, "next_phase": self.loss_fn.phase,
                             "switch": events, "ce": ce, "mbe": dict(mbe)})

    def log_values(self) -> dict[str, float]:
        """The latest optimiser step's GAPT signals as scalar log entries: ``gapt_phase`` (0 = memorize,
        1 = compress: the phase that step used), ``gapt_ce`` (nats/token, mean over micro-batches),
        ``gapt_mbe_<layer>`` (patch MBE, nats, index into ``hidden_states[1:]``) and ``gapt_mbe_mean``;
        {} before the first step."""
        if not self.history:
            return {}
        last = self.history[-1]
        out = {"gapt_phase": 1.0 if last["phase"] == "compress" else 0.0}
        if last.get("ce") is not None:
            out["gapt_ce"] = float(last["ce"])
        mbe = last.get("mbe") or {}
        out.update({f"gapt_mbe_{k}": float(v) for k, v in sorted(mbe.items())})
        if mbe:
            out["gapt_mbe_mean"] = sum(mbe.values()) / len(mbe)
        return out

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        """Merge :meth:`log_values` into ``logs`` and into the matching ``state.log_history`` entry (which
        ``Trainer.log`` appended as a copy before calling the callbacks); keys already present are kept."""
        if logs is None:
            return
        values = {k: v for k, v in self.log_values().items() if k not in logs}
        logs.update(values)
        hist = getattr(state, "log_history", None)
        if hist and hist[-1].get("step") == state.global_step:
            for k, v in values.items():
                hist[-1].setdefault(k, v)


def gapt_trainer_class():
    """A ``transformers.Trainer`` subclass whose ``compute_loss`` is GAPT: construct it with the usual
    Trainer arguments plus ``gapt_loss=GaptLoss(...)``; it adds a :class:`GaptCallback` (``.gapt_callback``).
    Imported lazily so that ``infoplane.train.hf`` does not require ``transformers``."""
    import transformers

    class GaptTrainer(transformers.Trainer):
        def __init__(self, *args: Any, gapt_loss: GaptLoss, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.gapt_loss = gapt_loss
            self.gapt_callback = GaptCallback(gapt_loss)
            self.add_callback(self.gapt_callback)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = _forward(model, inputs)
            st = self.gapt_loss(outputs)
            self.gapt_loss.accumulate(st)
            return (st.loss, outputs) if return_outputs else st.loss

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            # before Trainer.log: the reporting callbacks (report_to TensorBoard / W&B) run ahead of ours
            # in on_log, so the GAPT values must already be in ``logs`` when they see it
            for k, v in self.gapt_callback.log_values().items():
                logs.setdefault(k, v)
            super().log(logs, *args, **kwargs)

    return GaptTrainer
