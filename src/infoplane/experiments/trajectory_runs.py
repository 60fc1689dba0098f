"""One monitored training run of experiment 8 (:mod:`infoplane.experiments.trajectory`).

* :class:`HeldOutCE`: a native-trainer callback measuring held-out CE (nats/token) on the run's fixed
  validation batches at the monitor steps (the saturation rule's curve);
* :func:`lm_run`: the compact GPT on KJV, CE-only (``arm="ce"``: the main monitor and the rare-label pooled
  monitor) or GAPT (``arm="gapt"``: the main monitor), then the final weights probed again with the other
  reference-point seeds;
* :func:`markov_run`: the same on a k-th order Markov source (:class:`~infoplane.data.markov.MarkovSource`).

Every monitor probes the run's held-out split (a fixed, seeded sample of ``probe.max_tokens`` positions), so
every step of a run and every run of an arm see the same positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from infoplane.experiments.trajectory_config import TrajectoryConfig
from infoplane.probe.config import ProbeConfig
from infoplane.probe.monitor import InfoPlaneMonitor, held_out_sequences

__all__ = ["HeldOutCE", "lm_run", "markov_run", "markov_source", "PLANE_KEYS"]

# the plane columns kept in the experiment's tables
PLANE_KEYS = (
    "step",
    "layer",
    "n",
    "entropy",
    "complexity",
    "expressivity",
    "complexity_null",
    "expressivity_null",
    "complexity_excess",
    "expressivity_excess",
    "distance",
    "optimality",
    "mbe",
    "n_samples",
    "valid",
)


class HeldOutCE:
    """Callback ``cb(trainer, record)``: at the listed steps, the token-weighted mean CE (nats/token) of the
    model on the trainer's fixed validation batches (``trainer.val``), in eval mode, RNG untouched."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(int(s) for s in steps)
        self.rows: list[dict[str, Any]] = []

    @torch.no_grad()
    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        step = int(record["step"])
        if step not in self.steps:
            return
        model = trainer.model
        was = model.training
        model.eval()
        tot, n = 0.0, 0
        try:
            for xb, yb in trainer.val:
                out = model(xb.to(trainer.device), yb.to(trainer.device))
                tot += float(out.loss) * yb.numel()
                n += yb.numel()
        finally:
            model.train(was)
        self.rows.append(
            {"step": step, "val_ce": tot / max(n, 1), "lr": record.get("lr"), "phase": record.get("phase")}
        )


def _keep(rows: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    return [{**extra, **{k: r.get(k) for k in PLANE_KEYS}} for r in rows]


def _train_config(cfg: TrajectoryConfig, seed: int, out: Path, objective: Any, *, markov: bool) -> Any:
    from infoplane.experiments.common import kjv_run_config
    from infoplane.train.model import GPTConfig
    from infoplane.train.phases import PhaseControllerConfig

    if markov:
        model = GPTConfig(
            n_layer=cfg.markov_n_layer, n_head=2, d_model=cfg.markov_d_model, block_size=cfg.markov_block_size
        )
    else:
        model = GPTConfig(
            n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model, block_size=cfg.block_size
        )
    return kjv_run_config(cfg, seed=seed, out_dir=out, objective=objective, model=model,
                          controller=PhaseControllerConfig.from_dict(cfg.controller),
                          steps=cfg.markov_steps if markov else cfg.steps, min_lr_ratio=cfg.min_lr_ratio,
                          schedule=cfg.schedule, eval_batches=cfg.eval_batches)


def _objective(cfg: TrajectoryConfig, arm: str) -> Any:
    from infoplane.train.objective import ObjectiveConfig

    common = {"patch_size": cfg.patch_size, "layers": "rotate"}
    if arm == "ce":
        return ObjectiveConfig(kind="ce", log_mbe=False, **common)
    if arm == "gapt":
        return ObjectiveConfig(kind="gapt", mbe_weight=float(cfg.gapt_lambda), **common)
    raise ValueError(f"unknown arm {arm!r}; expected 'ce' or 'gapt'")


def _ref_seed_rows(
    trainer: Any, probe: ProbeConfig, seeds: tuple[int, ...], out: Path, **extra: Any
) -> list[dict[str, Any]]:
    """The final weights probed with each reference-point seed in ``seeds`` (the monitor's own seed is read
    from its table by the caller); rows as :data:`PLANE_KEYS` plus ``probe_seed``."""
    rows: list[dict[str, Any]] = []
    step = int(trainer.step)
    for s in seeds:
        if s == probe.seed:
            continue
        mon = InfoPlaneMonitor(
            None, probe.replace(seed=s), every=[step], table=f"plane_ref_seed{s}.csv", out_dir=out, mbe=False
        )
        mon.begin(0, trainer.model, out_dir=out, default_corpus=held_out_sequences(trainer, mon.config))
        rows += _keep(mon.probe(trainer.model, step), probe_seed=s, **extra)
    return rows


def lm_run(cfg: TrajectoryConfig, arm: str, seed: int, splits: Any, tok: Any, out: Path) -> dict[str, Any]:
    """Train one KJV run (``arm`` "ce" or "gapt") with its monitors; returns ``{"plane": rows (variant "main"
    / "pooled"), "ce": held-out CE rows, "ref": reference-seed rows, "switches": GAPT phase switches,
    "wall_time_s", "probe_seconds"}``."""
    from infoplane.train.trainer import Trainer

    steps = cfg.lm_monitor_steps()
    tc = _train_config(cfg, seed, out, _objective(cfg, arm), markov=False)
    main = InfoPlaneMonitor(None, cfg.probe, every=steps, model_name=arm)
    mons = [main]
    if arm == "ce":
        # the pooled variant serves the slope only: the dense points (the log-spaced early ones are for the
        # plane-path figures of the main monitor)
        mons.append(
            InfoPlaneMonitor(
                None,
                cfg.probe.replace(min_count=cfg.pooled_min_count),
                every=[s for s in steps if s >= cfg.dense_from],
                model_name=arm,
                table="plane_monitor_pooled.csv",
                mbe=False,
            )
        )
    ce = HeldOutCE(steps)
    tr = Trainer(tc, splits=splits, tokenizer=tok, callbacks=[*mons, ce])
    res = tr.run()
    tag = {"arm": arm, "seed": seed}
    plane = _keep(main.rows, variant="main", **tag)
    if len(mons) > 1:
        plane += _keep(mons[1].rows, variant="pooled", **tag)
    final = [r for r in main.rows if r["step"] == res.steps]
    ref = _keep(final, probe_seed=cfg.probe.seed, **tag) + _ref_seed_rows(
        tr, cfg.probe, cfg.ref_seeds, out, **tag
    )
    return {
        "plane": plane,
        "ce": [{**tag, **r} for r in ce.rows],
        "ref": ref,
        "switches": [dict(e) if isinstance(e, dict) else str(e) for e in res.switches],
        "wall_time_s": res.wall_time,
        "probe_seconds": sum(sum(m.seconds.values()) for m in mons),
    }


def markov_source(cfg: TrajectoryConfig) -> Any:
    from infoplane.data.markov import MarkovSource

    return MarkovSource(
        vocab_size=cfg.markov_vocab,
        order=cfg.markov_order,
        concentration=cfg.markov_concentration,
        seed=cfg.markov_source_seed,
    )


def markov_run(cfg: TrajectoryConfig, seed: int, out: Path) -> dict[str, Any]:
    """Train one CE run on the Markov source (fixed source and data; ``seed`` = model init and batch order)
    with the main monitor (orders of ``markov_probe``); returns ``{"plane", "ce", "wall_time_s"}``."""
    from infoplane.train.trainer import Trainer

    src = markov_source(cfg)
    splits = src.splits(cfg.markov_train_tokens, cfg.markov_val_tokens, seed=0)
    steps = cfg.markov_monitor_steps()
    tc = _train_config(cfg, seed, out, _objective(cfg, "ce"), markov=True)
    mon = InfoPlaneMonitor(None, cfg.markov_probe, every=steps, model_name="markov")
    ce = HeldOutCE(steps)
    res = Trainer(tc, splits=splits, vocab_size=cfg.markov_vocab, callbacks=[mon, ce]).run()
    tag = {"arm": "markov", "seed": seed}
    return {
        "plane": _keep(mon.rows, variant="main", **tag),
        "ce": [{**tag, **r} for r in ce.rows],
        "wall_time_s": res.wall_time,
        "probe_seconds": sum(mon.seconds.values()),
    }
