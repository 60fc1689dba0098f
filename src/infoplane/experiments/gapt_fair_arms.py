"""The arms of experiment 7, GAPT tested fairly (:mod:`infoplane.experiments.gapt_fair`), and one training
run.

- :class:`CountingObjective`: the GAPT step that counts the micro-batches whose CE is in the loss (and zeroes
  the odd ones for the paper's half-CE baseline);
- :func:`arm_setup`: an arm's objective, gradient accumulation and half-CE flag;
- :func:`train_run`: train one (arm, lambda, seed) with the native trainer and evaluate it on the held-out
  splits (CE and per-layer MBE, uncentered and centered);
- :func:`regime_data`: the tokenizer, training split and the validation / test / train evaluation batches of
  a regime.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from infoplane.experiments.common import kjv_run_config, lm_data
from infoplane.experiments.gapt_fair_config import FIXED_ARMS, GaptFairConfig
from infoplane.train.objective import GaptObjective, ObjectiveTerms

__all__ = ["CountingObjective", "arm_setup", "train_run", "regime_data"]


class CountingObjective(GaptObjective):
    """The GAPT step (:class:`GaptObjective`) that counts the micro-batches whose CE is in the loss.

    ``half_ce=True``: the odd micro-batches' loss is zeroed (``0 * CE``: no gradient), the paper's confounded
    baseline. ``record=True`` keeps ``(step, micro, with_base, penalised)`` per micro-batch in ``trace``.
    """

    def __init__(self, *args: Any, half_ce: bool = False, record: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.half_ce, self.record = half_ce, record
        self.ce_micro, self.micro_total = 0, 0
        self.trace: list[tuple[int, int, bool, bool]] = []

    def __call__(self, base: Any, hidden: Any, *, step: int = 0, micro: int = 0) -> ObjectiveTerms:
        t = super().__call__(base, hidden, step=step, micro=micro)
        if self.half_ce and micro % 2 == 1:
            t.loss, t.with_base = base * 0.0, False  # CE on half the micro-batches only (paper's baseline)
        self.micro_total += 1
        self.ce_micro += int(t.with_base)
        if self.record:
            self.trace.append((step, micro, t.with_base, t.penalised))
        return t


def arm_setup(cfg: GaptFairConfig, arm: str, lam: float | None) -> tuple[Any, int, bool]:
    """``(ObjectiveConfig, grad_accum, half_ce)`` of an arm (``lam`` for gapt / static)."""
    from infoplane.train.objective import ObjectiveConfig

    common = {"patch_size": cfg.patch_size, "layers": "rotate"}
    if arm == "baseline":
        return ObjectiveConfig(kind="ce", log_mbe=False, **common), 1, False
    if arm == "half_ce":
        return ObjectiveConfig(kind="ce", log_mbe=False, **common), 2, True
    if arm == "paper_era":
        return (
            ObjectiveConfig(kind="gapt", mbe_weight=cfg.paper_lambda, scheme="alternating", **common),
            2,
            False,
        )
    if arm in ("gapt", "static") and lam is not None:
        kind = "gapt" if arm == "gapt" else "ce+mbe"
        return ObjectiveConfig(kind=kind, mbe_weight=float(lam), **common), 1, False
    raise ValueError(
        f"unknown arm {arm!r} (lambda {lam!r}); expected {FIXED_ARMS} or gapt/static with a lambda"
    )


def _evaluate(model: Any, batches: list, patch: int) -> dict[str, Any]:
    """CE (nats/token, token-weighted) and per-layer patch MBE (nats), uncentered and centered."""
    import torch

    from infoplane.estimators import patch_matrix_entropy

    model.eval()
    ce_tot, n_tok = 0.0, 0
    unc: dict[int, float] = {}
    cen: dict[int, float] = {}
    with torch.no_grad():
        for xb, yb in batches:
            out = model(xb, yb)
            ce_tot += float(out.loss) * yb.numel()
            n_tok += yb.numel()
            for i, h in enumerate(out.hidden_states):
                unc[i] = unc.get(i, 0.0) + float(
                    patch_matrix_entropy(h, patch_size=patch, remainder="drop_start")
                )
                # centered: per-patch mean row removed (diagnostic beside the papers' uncentered MBE)
                cen[i] = cen.get(i, 0.0) + float(
                    patch_matrix_entropy(
                        h, patch_size=patch, remainder="drop_start", centered=True, validate=False
                    )
                )
    nb = max(len(batches), 1)
    unc = {i: v / nb for i, v in unc.items()}
    cen = {i: v / nb for i, v in cen.items()}
    return {
        "ce": ce_tot / max(n_tok, 1),
        "mbe": unc,
        "mbe_c": cen,
        "mbe_mean": sum(unc.values()) / max(len(unc), 1),
        "mbe_c_mean": sum(cen.values()) / max(len(cen), 1),
    }


def train_run(
    cfg: GaptFairConfig,
    arm: str,
    lam: float | None,
    seed: int,
    splits: Any,
    tok: Any,
    out: Path,
    eval_sets: dict[str, list],
    record: bool = False,
) -> tuple[dict[str, Any], Any]:
    """Train one (arm, lambda, seed) run with the native Trainer; returns ``(row, trainer)``."""
    from infoplane.train.phases import PhaseControllerConfig, phase_lengths
    from infoplane.train.trainer import Trainer

    obj, accum, half = arm_setup(cfg, arm, lam)
    tc = kjv_run_config(cfg, seed=seed, out_dir=out, objective=obj,
                        controller=PhaseControllerConfig.from_dict(cfg.controller), grad_accum=accum,
                        min_lr_ratio=cfg.min_lr_ratio, schedule="cosine")
    tr = Trainer(tc, splits=splits, tokenizer=tok)
    tr.objective = CountingObjective(obj, controller_config=tc.controller, half_ce=half, record=record)
    tr.controller = tr.objective.controller
    res = tr.run()
    micro_rows = cfg.batch_size // accum
    phases = phase_lengths(res.switches, res.steps)
    comp = (
        sum(p["length"] for p in phases if p["phase"] == "compress")
        if tr.controller is not None
        else (res.steps if obj.kind == "ce+mbe" else 0)
    )
    row: dict[str, Any] = {
        "arm": arm,
        "lam": lam,
        "label": arm if lam is None else f"{arm}@{lam:g}",
        "seed": seed,
        "steps": res.steps,
        "ce_tokens": tr.objective.ce_micro * micro_rows * cfg.block_size,
        "compress_fraction": comp / max(res.steps, 1),
        "n_switches": len(res.switches),
        "wall_time_s": res.wall_time,
    }
    for split, batches in eval_sets.items():
        ev = _evaluate(tr.model, batches, cfg.patch_size)
        row.update(
            {
                f"{split}_ce": ev["ce"],
                f"{split}_mbe_mean": ev["mbe_mean"],
                f"{split}_mbe_c_mean": ev["mbe_c_mean"],
            }
        )
        if split == "test":
            row.update({f"test_mbe_{i}": v for i, v in ev["mbe"].items()})
            row.update({f"test_mbe_c_{i}": v for i, v in ev["mbe_c"].items()})
    row["phases"] = [p for p in phases] if tr.controller is not None else []
    return row, tr


def regime_data(cfg: GaptFairConfig, regime: str) -> tuple[Any, Any, dict[str, list]]:
    """``(tokenizer, splits, eval_sets)`` of a regime: the training split (all of it, or its first
    ``overfit_tokens`` tokens for ``overfit``), the held-out tokens' first half as validation; ``eval_sets``
    maps "val" / "test" / "train" to at most ``eval_batches`` [B, T] (input, target) batches."""
    from infoplane.data.lm_data import val_batches

    tok, splits, _ = lm_data(cfg.tokenizer, cfg.val_fraction, 0)
    half = len(splits.val) // 2  # held-out tokens: first half selects lambda, second half tests
    val_sel, test = splits.val[:half], splits.val[half:]
    train = splits.train if regime == "undertrained" else splits.train[: cfg.overfit_tokens]
    sp = dataclasses.replace(splits, train=train, val=val_sel)
    sets = {
        name: val_batches(t, cfg.batch_size, cfg.block_size, cfg.eval_batches)
        for name, t in (("val", val_sel), ("test", test), ("train", train))
    }
    return tok, sp, sets
