"""Bridges between the native GPT, probes, and Hugging Face causal LMs.

Part 1 - reading native checkpoints like an HF model (:class:`NativeCausalLM`)
-----------------------------------------------------------------------------
An exact export to a ``transformers`` architecture is not possible: the native GPT uses learned absolute
positions (or RoPE), a non-gated GELU MLP and RMSNorm with a weight, a combination that neither
``LlamaForCausalLM`` (SwiGLU, RoPE) nor ``GPT2LMHeadModel`` (LayerNorm with bias) reproduces exactly. Probes
therefore read native checkpoints natively through this thin adapter::

    lm, tok = NativeCausalLM.from_checkpoint("runs/x/checkpoints/step_00001000")
    out = lm(input_ids, attention_mask=mask, output_hidden_states=True)
    out.logits            # [B, T, V]
    out.hidden_states     # tuple of L+1 tensors [B, T, D]: embedding output, then each block output
    lm.hidden_modules()   # [embedding module, block_0, ..., block_{L-1}]: hook these for the same tensors

Difference from HF: the last hidden state is the raw residual stream of the last block (before the final
norm), not the post-norm state many HF models return. ``attention_mask`` must be right-padded (ones then
zeros per row): attention is causal, so real tokens never see the padding that follows them.

Part 2 - GAPT for any HF causal LM
----------------------------------
:class:`GaptLoss` turns an HF forward output (``output_hidden_states=True``) into CE (+ lambda * MBE in the
compression phase, mbe-and-gapt.md §1.2) and feeds CE / MBE to a
:class:`~infoplane.train.phases.PhaseController`. Layers index the *block outputs* ``hidden_states[1:]``;
the default ``"middle"`` skips the first and the last (which is post-final-norm in most HF models).
Use it through :func:`gapt_training_step` (plain PyTorch loop) or :func:`gapt_trainer_class` /
:class:`GaptCallback` (``transformers.Trainer``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn

from infoplane.estimators.matrix import patch_matrix_entropy
from infoplane.train.model import GPT
from infoplane.train.phases import Phase, PhaseController
from infoplane.train.regularizer import mbe_penalty, resolve_layers

__all__ = [
    "NativeCausalLM",
    "NativeOutput",
    "GaptLoss",
    "GaptStep",
    "gapt_training_step",
    "GaptCallback",
    "gapt_trainer_class",
]


# =============================================================================================== part 1
@dataclass
class NativeOutput:
    """logits [B, T, V]; loss (mean shifted CE over non-masked labels, or None);
    hidden_states: tuple of L+1 [B, T, D] (None unless requested)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class NativeCausalLM(nn.Module):
    """HF-style view of a native :class:`~infoplane.train.model.GPT` (see the module docstring)."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        if not isinstance(model, GPT):
            raise ValueError(f"NativeCausalLM wraps an infoplane GPT, got {type(model).__name__}")
        self.model = model
        c = model.config
        self.config = SimpleNamespace(
            model_type="infoplane-gpt", vocab_size=c.vocab_size, hidden_size=c.d_model,
            num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, max_position_embeddings=c.block_size,
            native=c,
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike,
                        map_location: str = "cpu") -> tuple[NativeCausalLM, Any]:
        """(wrapper in eval mode, tokenizer or None) from a checkpoint directory (no unpickling)."""
        from infoplane.data.tokenizer import load_tokenizer
        from infoplane.train.checkpoint import load_checkpoint

        model, _, meta = load_checkpoint(path, map_location=map_location)
        tok = load_tokenizer(meta["tokenizer_path"]) if meta["tokenizer_path"] else None
        return cls(model).eval(), tok

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def hidden_modules(self) -> list[nn.Module]:
        """[embedding module, block_0, ..., block_{L-1}]; their forward outputs are ``hidden_states``."""
        return self.model.hidden_modules()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False,
                return_dict: bool = True, **_: Any) -> NativeOutput:
        """input_ids [B, T]; attention_mask [B, T] right-padded 0/1 (optional); labels [B, T] (HF
        convention: shifted inside, -100 ignored; masked positions ignored too)."""
        if attention_mask is not None:
            m = attention_mask.to(torch.int64)
            if m.shape != input_ids.shape:
                raise ValueError(f"attention_mask shape {tuple(m.shape)} != input_ids "
                                 f"{tuple(input_ids.shape)}")
            # right padding: the mask never rises again after a zero (non-increasing along T)
            if bool((m[:, 1:] > m[:, :-1]).any()):
                raise ValueError("attention_mask must be right-padded (ones then zeros in each row)")
        out = self.model(input_ids)
        loss = None
        if labels is not None:
            lab = labels.clone()
            if attention_mask is not None:
                lab[attention_mask == 0] = -100
            # HF causal-LM convention: position t predicts labels[t+1]
            loss = nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.size(-1)).float(),
                                               lab[:, 1:].reshape(-1), ignore_index=-100)
        hidden = (out.embeddings, *out.hidden_states) if output_hidden_states else None
        return NativeOutput(logits=out.logits, loss=loss, hidden_states=hidden)


# =============================================================================================== part 2
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
        mbe_weight: lambda (reference default 1.0, mbe-and-gapt.md §3.3).
        layers: indices into the block outputs ``hidden_states[1:]``, ``"middle"`` or ``"all"``.
        patch_size: tokens per patch p (reference 8).
        always_compress: without a controller, True = static CE + lambda MBE, False = CE only.

    ``loss_fn(outputs)`` returns a :class:`GaptStep`; call ``loss_fn.accumulate(step)`` per micro-batch
    and ``loss_fn.update()`` once per optimiser step to feed the averaged signals to the controller
    (:func:`gapt_training_step` does both).
    """

    def __init__(self, controller: PhaseController | None = None, mbe_weight: float = 1.0,
                 layers: Sequence[int] | str = "middle", patch_size: int = 8,
                 always_compress: bool = False) -> None:
        if not math.isfinite(mbe_weight) or mbe_weight < 0:
            raise ValueError(f"mbe_weight must be a finite number >= 0, got {mbe_weight!r}")
        self.controller = controller
        self.mbe_weight = float(mbe_weight)
        self.layers = layers
        self.patch_size = int(patch_size)
        self.always_compress = bool(always_compress)
        self._acc: list[tuple[float, dict[int, float]]] = []

    @property
    def phase(self) -> str:
        if self.controller is not None:
            return self.controller.phase.value
        return Phase.COMPRESS.value if self.always_compress else Phase.MEMORIZE.value

    def __call__(self, outputs: Any, ce: torch.Tensor | None = None) -> GaptStep:
        """outputs: HF ``CausalLMOutput`` (or :class:`NativeOutput`) with ``hidden_states`` (L+1 tensors) and
        ``loss`` (CE from ``labels``) unless ``ce`` is given."""
        hs = getattr(outputs, "hidden_states", None)
        if hs is None or len(hs) < 2:
            raise ValueError("outputs.hidden_states missing: call the model with output_hidden_states=True")
        ce = outputs.loss if ce is None else ce
        if ce is None:
            raise ValueError("no CE: pass labels to the model or give ce=")
        blocks = list(hs[1:])
        phase = self.phase
        penalise = phase == Phase.COMPRESS.value and self.mbe_weight > 0
        if penalise:
            pen, mbe = mbe_penalty(blocks, self.layers, self.patch_size)
            loss = ce + self.mbe_weight * pen  # L = L_CE + lambda * MBE (mbe-and-gapt.md §1.2)
        else:
            idx = resolve_layers(len(blocks), self.layers)
            with torch.no_grad():
                mbe = {i: float(patch_matrix_entropy(blocks[i].detach().float(), patch_size=self.patch_size,
                                                     remainder="drop_start")) for i in idx}
            loss = ce
        return GaptStep(loss=loss, ce=float(ce.detach()), mbe=mbe, penalised=penalise, phase=phase)

    def accumulate(self, step: GaptStep) -> None:
        """Remember a micro-batch's (finite) signals for the next :meth:`update`."""
        if math.isfinite(step.ce) and all(math.isfinite(v) for v in step.mbe.values()):
            self._acc.append((step.ce, step.mbe))

    def update(self) -> list[dict[str, Any]]:
        """Feed the mean CE / per-layer MBE of the accumulated micro-batches to the controller (once per
        optimiser step); returns the switch events this caused. The controller's new phase applies from the
        next step on."""
        if self.controller is None or not self._acc:
            self._acc.clear()
            return []
        n = len(self._acc)
        ce = sum(c for c, _ in self._acc) / n
        keys = self._acc[0][1].keys()
        mbe = {k: sum(m[k] for _, m in self._acc) / n for k in keys}
        self._acc.clear()
        before = len(self.controller.events)
        self.controller.step(ce, mbe)
        return self.controller.events[before:]


def _forward(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> Any:
    inputs = dict(batch)
    if "labels" not in inputs:
        inputs["labels"] = inputs["input_ids"]
    return model(**inputs, output_hidden_states=True)


def gapt_training_step(model: nn.Module, batch: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                       loss_fn: GaptLoss | PhaseController, *, grad_clip: float | None = 1.0,
                       scheduler: Any = None, mbe_weight: float = 1.0, layers: Sequence[int] | str = "middle",
                       patch_size: int = 8) -> dict[str, Any]:
    """One GAPT optimiser step on an HF causal LM (plain PyTorch loop).

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
    optimizer.zero_grad(set_to_none=True)
    st = loss_fn(_forward(model, batch))
    skipped = not bool(torch.isfinite(st.loss))
    if not skipped:
        st.loss.backward()
        if grad_clip:
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            skipped = not math.isfinite(float(gn))
    if skipped:
        optimizer.zero_grad(set_to_none=True)
        events: list[dict[str, Any]] = []
    else:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        loss_fn.accumulate(st)
        events = loss_fn.update()
    return {
        "loss": float(st.loss.detach()), "ce": st.ce, "mbe": st.mbe,
        "mbe_mean": sum(st.mbe.values()) / len(st.mbe) if st.mbe else None,
        "phase": st.phase, "next_phase": loss_fn.phase, "switch": events, "skipped": skipped,
    }


class GaptCallback:
    """``transformers.TrainerCallback``-compatible object: feeds the controller once per optimiser step
    (``on_step_end``) and records phases / switch events (``history``). Use with :func:`gapt_trainer_class`.
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
        events = self.loss_fn.update()
        self.history.append({"step": int(state.global_step), "phase": phase, "next_phase": self.loss_fn.phase,
                             "switch": events})


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

    return GaptTrainer
