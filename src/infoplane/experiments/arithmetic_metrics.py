"""Metrics of the arithmetic experiment: padding-free MBE, answer logits, temperature calibration, digits.

* **MBE without padding.** Examples are right-padded to one length; a patch of ``p`` consecutive positions
  would mix padding rows into the Gram matrix. :func:`pack_valid` keeps only the real positions and lays
  them end to end as one sequence, as the reference does by concatenating examples into long token shards
  (mod_gpt arithmetic data: no padding, no document mask), so each patch holds ``p`` real tokens.
* **Temperature calibration** (Guo et al. 2017, "On Calibration of Modern Neural Networks", section 4.2):
  one scalar ``T`` per trained model, fitted on the in-distribution validation answers by minimising the
  masked CE of ``logits / T`` over ``log T``; the OOD CE is then reported raw and at that ``T``.
* **Per-digit accuracy**: argmax accuracy under teacher forcing at each answer digit, indexed by place
  value (0 = units), so the index means the same with the answer written in either order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from infoplane.data.tasks import ArithmeticBatch
from infoplane.estimators import patch_matrix_entropy

__all__ = ["AnswerLogits", "pack_valid", "masked_patch_mbe", "answer_logits", "fit_temperature",
           "calibrated_ce", "digit_accuracy", "input_mask"]


def input_mask(batch: ArithmeticBatch) -> torch.Tensor:
    """``[N, T-1]`` bool: the model's input positions (``ids[:, :-1]``) that hold real tokens."""
    return batch.valid[:, :-1]


def pack_valid(hidden: Sequence[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """Each ``[B, T, D]`` block output -> ``[1, M, D]``: its rows where ``mask [B, T]`` is True, in order.

    Differentiable (a gather), so an MBE penalty on the packed rows trains the model; padding rows never
    enter it.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a [B, T] bool tensor, got {mask.dtype} {tuple(mask.shape)}")
    out = []
    for h in hidden:
        if h.dim() != 3 or tuple(h.shape[:2]) != tuple(mask.shape):
            raise ValueError(f"hidden state {tuple(h.shape)} does not match the mask {tuple(mask.shape)}")
        out.append(h[mask.to(h.device)].unsqueeze(0))
    return out


def masked_patch_mbe(h: torch.Tensor, mask: torch.Tensor, patch: int = 8, centered: bool = False) -> float:
    """Patch MBE (nats) of the real rows of ``h [B, T, D]`` (``mask [B, T]``), packed end to end."""
    packed = pack_valid([h.detach().float()], mask)[0]
    if packed.shape[1] < patch:
        raise ValueError(f"only {packed.shape[1]} real positions, fewer than one patch of {patch}")
    # patches of p consecutive real tokens, the first M mod p dropped (mod_gpt src/mbe.py)
    return float(patch_matrix_entropy(packed, patch_size=patch, remainder="drop_start", centered=centered))


@dataclass
class AnswerLogits:
    """Teacher-forced logits at the answer positions of a split.

    logits: ``[M, V]`` float32 at the M answer-digit targets. targets: ``[M]``. place: ``[M]`` place value of
    each digit (0 = units). exact: ``[N]`` bool, every answer digit and the closing ``<eos>`` are the argmax.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    place: torch.Tensor
    exact: torch.Tensor


def _places(ans: torch.Tensor, reverse: bool) -> torch.Tensor:
    order = torch.cumsum(ans.long(), dim=1) - 1  # emission order of each answer digit (0 = first written)
    n = ans.long().sum(dim=1, keepdim=True)
    return order if reverse else n - 1 - order


@torch.no_grad()
def answer_logits(model: torch.nn.Module, batch: ArithmeticBatch, chunk: int = 512,
                  hidden_out: list[torch.Tensor] | None = None) -> AnswerLogits:
    """Run ``model`` over ``batch`` (teacher forcing) and keep the answer positions' logits.

    With ``hidden_out`` (a list) the block outputs of the chunks are appended to it as ``[B, T-1, D]`` lists.
    """
    was = model.training
    model.eval()
    _, ans, exact_mask = batch.target_masks()
    places = _places(ans, batch.reverse_answer)
    logit_parts, tgt_parts, place_parts, exact_parts = [], [], [], []
    for s in range(0, len(batch), chunk):
        ids = batch.ids[s:s + chunk]
        out = model(ids[:, :-1])
        if hidden_out is not None:
            hidden_out.append([h.detach().float() for h in out.hidden_states])
        logits, tgt = out.logits.float(), ids[:, 1:]
        a, e = ans[s:s + chunk], exact_mask[s:s + chunk]
        logit_parts.append(logits[a])
        tgt_parts.append(tgt[a])
        place_parts.append(places[s:s + chunk][a])
        exact_parts.append(((logits.argmax(-1) == tgt) | ~e).all(dim=1))
    model.train(was)
    return AnswerLogits(torch.cat(logit_parts), torch.cat(tgt_parts), torch.cat(place_parts),
                        torch.cat(exact_parts))


def calibrated_ce(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean CE (nats/token) of ``softmax(logits / T)`` at ``targets``."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if logits.shape[0] == 0:
        return float("nan")
    return float(F.cross_entropy(logits.double() / temperature, targets))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, log_bounds: tuple[float, float] = (-5.0, 5.0)
                    ) -> float:
    """The ``T`` minimising the CE of ``logits / T`` (Guo et al. 2017, temperature scaling), searched over
    ``log T`` in ``log_bounds`` (bounded Brent, :func:`scipy.optimize.minimize_scalar`)."""
    from scipy.optimize import minimize_scalar

    if logits.dim() != 2 or targets.shape != logits.shape[:1] or logits.shape[0] == 0:
        raise ValueError(f"fit_temperature expects logits [M, V] and targets [M] with M > 0, got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    lg, tg = logits.detach().double(), targets.detach()
    res = minimize_scalar(lambda u: float(F.cross_entropy(lg / math.exp(u), tg)), bounds=log_bounds,
                          method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def digit_accuracy(al: AnswerLogits, max_places: int) -> list[float]:
    """Argmax accuracy at place values ``0 .. max_places-1`` (NaN where no answer has that digit)."""
    ok = al.logits.argmax(-1) == al.targets
    out = []
    for k in range(max_places):
        sel = al.place == k
        out.append(float(ok[sel].float().mean()) if bool(sel.any()) else float("nan"))
    return out
