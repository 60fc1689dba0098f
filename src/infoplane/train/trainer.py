"""Training loop for the compact GPT: CE, static CE + lambda MBE, or GAPT; checkpoints, exact resume, DDP.

One optimiser step ``t`` (1-based in the log):

1. the sampler yields the global batch ``x, y`` [B, T]; a DDP rank keeps its contiguous shard of B / world
   rows, then ``grad_accum`` micro-batches;
2. forward -> CE (mean nats/token) and the block outputs;
3. objective (:class:`~infoplane.train.objective.GaptObjective`, the one GAPT step): loss = CE
   (+ lambda * MBE of the scheduled layers while compressing); a non-finite loss (on any rank) skips the whole
   step: no backward / optimiser step, gradients zeroed, logged ``skipped=true``; ``max_nonfinite``
   consecutive skips raise :class:`NonFiniteLossError`;
4. gradient clipping, AdamW step with the scheduled learning rate;
5. the step's CE and per-layer MBE (averaged over micro-batches and ranks) are fed to the
   :class:`~infoplane.train.phases.PhaseController`, which sets the phase of step ``t+1`` (a one-step lag
   relative to the reference's "update, then use", so that micro-batches and ranks share one phase);
6. every ``align_every`` steps: cosines between grad CE and grad MBE_l (all layers) on the same batch
   (:func:`~infoplane.train.alignment.gradient_alignment`, before the update); every ``eval_every`` steps:
   held-out CE and per-layer MBE (no grad);
7. one JSON line per step (flushed) and, at scheduled steps, an atomic, checksummed checkpoint.

Hardware (:mod:`infoplane.train.device`): ``device`` cpu / cuda / auto, NCCL process group on CUDA (gloo on
CPU); ``precision`` fp32 (the plain path), bf16 or fp16 autocast around the model's forward only (MBE runs in
float32 with autocast off; fp16 adds loss scaling). Data (:mod:`infoplane.train.data_setup`): a text corpus or
memory-mapped token shards (``corpus = "shards:PATTERN"``), whose sampler reads only this rank's rows.

The run directory's rules (a used directory needs ``resume`` or ``overwrite``; a resume must match; corrupt
checkpoints are set aside; one process at a time, by lock) are in :mod:`infoplane.train.rundir`; memory and
token ids are checked (:mod:`infoplane.train.preflight`) before the data is prepared / the model is built.

Log record keys: step, ce, loss, mbe {layer: nats}, mbe_mean, phase (used at this step), next_phase,
switch (controller events at this step: from/to/reason/values), lr, tokens (cumulative CE tokens of
non-skipped steps), time (s since start of the run, excluding resumed gaps), skipped, grad_norm; with
validation: val_ce, val_mbe {layer}, val_mbe_mean; with alignment: align {cos, cos_layer, ce_grad_norm,
mbe_grad_norm, mbe_grad_norm_layer}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from infoplane.data.lm_data import TokenSplits, prepare_lm_data
from infoplane.data.tokenizer import save_tokenizer
from infoplane.estimators.matrix import patch_matrix_entropy
from infoplane.io import atomic_write_json, dir_lock
from infoplane.train import preflight, rundir
from infoplane.train.checkpoint import (
    load_checkpoint,
    load_optimizer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from infoplane.train.config import TrainConfig, checkpoint_schedule
from infoplane.train.data_setup import setup_data
from infoplane.train.device import Precision, init_distributed, resolve_device
from infoplane.train.model import GPT
from infoplane.train.objective import GaptObjective, ObjectiveTerms, mean_signals
from infoplane.train.result import TrainResult, read_log
from infoplane.train.schedule import lr_at

__all__ = ["Trainer", "TrainResult", "NonFiniteLossError", "train", "lr_at", "read_log"]


class NonFiniteLossError(RuntimeError):
    """Raised after ``max_nonfinite`` consecutive steps with a non-finite loss."""


class Trainer:
    """Set up data, model, optimiser, controller and logging from a :class:`TrainConfig`; :meth:`run` trains.

    Args:
        config: the run configuration.
        splits / tokenizer: optional pre-built data (e.g. a synthetic task) instead of ``config.corpus`` /
            ``config.tokenizer``; ``tokenizer`` is only saved with checkpoints (needs ``to_str()``), and
            ``vocab_size`` must then be given unless the tokenizer has ``get_vocab_size()``.
        vocab_size: model vocabulary (default: the tokenizer's).
        callbacks: ``cb(trainer, record)`` called after every step, before the record is written (may add
            keys).
        resume: continue from the newest valid checkpoint in ``out_dir/checkpoints`` (exactly: weights,
            optimiser, sampler, controller, RNG, log truncated to the checkpoint's step); settings other than
            :data:`~infoplane.train.preflight.RESUMABLE` and the data must equal the checkpoint's.
        overwrite: start a new run in a directory that holds one, removing its
            :data:`~infoplane.train.rundir.RUN_FILES` (without it, such a directory is a FileExistsError).
    """

    def __init__(self, config: TrainConfig, *, splits: TokenSplits | None = None, tokenizer: Any = None,
                 vocab_size: int | None = None, callbacks: Sequence[Callable[[Trainer, dict], None]] = (),
                 resume: bool = False, overwrite: bool = False) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"Trainer expects a TrainConfig, got {type(config).__name__}")
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: resume continues the run in out_dir, "
                             "overwrite replaces it")
        self.config = cfg = config
        self.callbacks = list(callbacks)
        self.device = resolve_device(cfg.device)  # a missing GPU is an error before any work
        self.precision = Precision(cfg.precision, self.device)
        self.distributed, self.rank, self.world = init_distributed(self.device)
        # collectives: NCCL needs CUDA tensors, gloo CPU ones
        self._comm_device = self.device if self.distributed and dist.get_backend() == "nccl" else None
        if cfg.batch_size % (self.world * cfg.grad_accum):
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by world_size x grad_accum = "
                             f"{self.world} x {cfg.grad_accum}")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "log.jsonl"
        self.overwrite = bool(overwrite)
        if self.rank == 0:
            rundir.check_out_dir(self.out_dir, resume=resume, overwrite=self.overwrite)
        resume_from, self._rejected = rundir.resume_checkpoint(self.ckpt_root) if resume else (None, [])
        if vocab_size is not None or splits is None:  # memory before the data: BPE training takes a while
            guess = vocab_size or rundir.vocab_guess(cfg.tokenizer, cfg.model.vocab_size)
            preflight.check_memory(cfg, guess, self.world)

        # data + tokenizer (on resume the saved tokenizer is reused, so BPE is not retrained)
        rd = setup_data(cfg, resume_from=resume_from, splits=splits, tokenizer=tokenizer,
                        vocab_size=vocab_size, rank=self.rank, world=self.world, prepare=prepare_lm_data)
        self.tokenizer, self.splits, self.data = rd.tokenizer, rd.splits, rd.fingerprint
        self.model_config = dataclasses.replace(cfg.model, vocab_size=rd.vocab_size, seed=cfg.seed)
        self.model = GPT(self.model_config).to(self.device)
        if resume_from is None:  # dropout (the only global-RNG consumer) follows the run's seed
            torch.manual_seed(cfg.seed + 1_000_003 * self.rank)
        self.sampler, self.val = rd.sampler, rd.val
        self.objective = GaptObjective(cfg.objective, controller_config=cfg.controller)
        self.controller = self.objective.controller  # None unless GAPT
        self.optimizer = self._make_optimizer()
        self.checkpoint_steps = set(checkpoint_schedule(cfg.checkpoint_steps, cfg.steps))

        self.step = 0  # completed optimiser steps
        self.tokens = 0
        self.consecutive_nonfinite = 0
        self.skipped_total = 0
        self.elapsed = 0.0
        self.log_position = 0
        self._log_hash = hashlib.sha256()  # of the log's bytes so far (checked on resume)
        self.last_val: dict[str, Any] = {}
        self.checkpoints: list[Path] = []
        if resume_from is not None:
            self._restore(resume_from)
        self.ddp_model: torch.nn.Module = self.model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # broadcasts rank 0's weights
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self._tb = None

    # ------------------------------------------------------------------ setup helpers
    def _make_optimizer(self) -> torch.optim.AdamW:
        cfg = self.config
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=cfg.betas, foreach=False,
        )

    def _restore(self, ckpt: Path) -> None:
        model, _, meta = load_checkpoint(ckpt, verify=False)  # verified by rundir.resume_checkpoint
        rundir.check_resume(self.out_dir, ckpt, meta, self.config, self.model_config.to_dict(), self.data,
                            warn=self.rank == 0)
        self.model.load_state_dict(model.state_dict())
        load_optimizer_state(self.optimizer, ckpt)
        self.precision.load_state_dict(meta["trainer_state"].get("grad_scaler"))
        st = meta["trainer_state"]
        self.step = int(st["step"])
        self.tokens = int(st["tokens"])
        self.consecutive_nonfinite = int(st.get("consecutive_nonfinite", 0))
        self.skipped_total = int(st.get("skipped_total", 0))
        self.elapsed = float(st.get("elapsed", 0.0))
        self.sampler.load_state_dict(st["sampler"])
        if self.controller is not None and st.get("controller"):
            self.controller.load_state_dict(st["controller"])
        set_rng_state(st["rng"])
        self.log_position = int(st.get("log_position", 0))
        self.last_val = st.get("last_val", {})
        if self.rank == 0:
            self._log_hash = rundir.restore_log(self.log_path, ckpt, st)
        bad = {p for p, _ in self._rejected}
        self.checkpoints = [p for p in sorted(self.ckpt_root.glob("step_*"))
                            if p.is_dir() and p not in bad and p.name <= ckpt.name]

    # ------------------------------------------------------------------ phases / objective
    @property
    def phase(self) -> str:
        """Phase of the next step: "memorize" or "compress" (ce: "memorize", ce+mbe: "compress")."""
        return self.objective.phase

    def _all_reduce_mean(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def _any_rank(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any]:
        """One optimiser step: batch -> forward -> objective -> step; returns its log record (not yet
        written)."""
        cfg = self.config
        t0 = time.perf_counter()
        self.model.train()
        x, y = self.sampler.next_batch()
        per_rank = cfg.batch_size // self.world
        if not getattr(self.sampler, "rank_local", False):  # the global batch: keep this rank's rows
            x = x[self.rank * per_rank:(self.rank + 1) * per_rank]
            y = y[self.rank * per_rank:(self.rank + 1) * per_rank]
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        micro = per_rank // cfg.grad_accum
        phase = self.phase
        lr = lr_at(self.step, cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        do_align = cfg.align_every > 0 and (self.step + 1) % cfg.align_every == 0
        self.optimizer.zero_grad(set_to_none=True)

        terms: list[ObjectiveTerms] = []
        losses: list[float] = []
        align = None
        skipped = False
        for k in range(cfg.grad_accum):
            xb, yb = x[k * micro:(k + 1) * micro], y[k * micro:(k + 1) * micro]
            last = k == cfg.grad_accum - 1
            ctx = self.ddp_model.no_sync() if (self.distributed and not last) else contextlib.nullcontext()
            with ctx:
                with self.precision.autocast():
                    out = self.ddp_model(xb, yb)
                t = self.objective(out.loss, out.hidden_states, step=self.step, micro=k)
                if t.finite and do_align and k == 0:
                    align = self._alignment(out.loss, out.hidden_states)
                if self._any_rank(not t.finite):
                    skipped = True
                    break
                self.precision.backward(t.loss / cfg.grad_accum)
            terms.append(t)
            losses.append(float(t.loss.detach()))

        grad_norm = None
        if not skipped:
            self.precision.unscale(self.optimizer)
            if cfg.grad_clip > 0:
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            else:
                gn = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in self.model.parameters()
                                    if p.grad is not None))
            grad_norm = float(gn)
            if not math.isfinite(grad_norm):
                skipped = True
        if skipped:
            self.precision.skip()
            self.optimizer.zero_grad(set_to_none=True)
            self.consecutive_nonfinite += 1
            self.skipped_total += 1
        else:
            self.precision.step(self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
            self.consecutive_nonfinite = 0
            self.tokens += cfg.batch_size * cfg.block_size  # CE tokens (global)
        self.step += 1

        rec: dict[str, Any] = {"step": self.step, "phase": phase, "lr": lr, "skipped": skipped}
        switch: list[dict[str, Any]] = []
        if skipped:
            rec.update(ce=None, loss=None, mbe={}, mbe_mean=None, grad_norm=None)
        else:
            ce_v, mbe_v = mean_signals(terms)
            keys = sorted(mbe_v)
            red = self._all_reduce_mean([ce_v, sum(losses) / len(losses)] + [mbe_v[i] for i in keys])
            ce_v, loss_v, mbe_v = red[0], red[1], dict(zip(keys, red[2:]))
            rec.update(ce=ce_v, loss=loss_v, mbe={str(i): v for i, v in mbe_v.items()},
                       mbe_mean=(sum(mbe_v.values()) / len(mbe_v)) if mbe_v else None, grad_norm=grad_norm)
            switch = self.objective.feed(ce_v, mbe_v)  # decides the phase of the next step
        if switch:
            rec["switch"] = [dict(e) for e in switch]
        rec["next_phase"] = self.phase
        rec["tokens"] = self.tokens
        if align is not None:
            rec["align"] = align
        if self.consecutive_nonfinite >= cfg.max_nonfinite:
            self._write(rec)
            raise NonFiniteLossError(
                f"{self.consecutive_nonfinite} consecutive steps (up to step {self.step}) had a non-finite "
                f"loss or gradient; stopping (max_nonfinite={cfg.max_nonfinite}). Lower the learning rate or "
                "the MBE weight, or check the data."
            )
        self.elapsed += time.perf_counter() - t0
        return rec

    def _alignment(self, ce: torch.Tensor, hidden: list[torch.Tensor]) -> dict[str, Any]:
        from infoplane.train.alignment import gradient_alignment

        p = self.config.objective.patch_size
        mbe_l = {i: patch_matrix_entropy(h, patch_size=p, remainder="drop_start")
                 for i, h in enumerate(hidden)}
        res = gradient_alignment(self.model, ce, mbe_l, per_layer=True, retain_graph=True)
        return {
            "cos": res["cos"], "ce_grad_norm": res["ce_grad_norm"], "mbe_grad_norm": res["mbe_grad_norm"],
            "cos_layer": {str(k): v for k, v in res["cos_layer"].items()},
            "mbe_grad_norm_layer": {str(k): v for k, v in res["mbe_grad_norm_layer"].items()},
        }

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Held-out CE (token-weighted mean, nats) and per-layer patch MBE (mean over val batches and
        patches, nats) for all blocks; {} when there is no validation data."""
        if not self.val:
            return {}
        self.model.eval()
        ce_tot, n_tok = 0.0, 0
        mbe_tot = [0.0] * self.config.model.n_layer
        for xb, yb in self.val:
            xb, yb = xb.to(self.device), yb.to(self.device)
            with self.precision.autocast():
                out = self.model(xb, yb)
            ce_tot += float(out.loss) * yb.numel()
            n_tok += yb.numel()
            for i, h in enumerate(out.hidden_states):
                mbe_tot[i] += float(patch_matrix_entropy(h, patch_size=self.config.objective.patch_size,
                                                         remainder="drop_start"))
        self.model.train()
        nb = len(self.val)
        mbe = {str(i): v / nb for i, v in enumerate(mbe_tot)}
        return {"val_ce": ce_tot / n_tok, "val_mbe": mbe, "val_mbe_mean": sum(mbe.values()) / len(mbe)}

    # ------------------------------------------------------------------ IO
    def _write(self, rec: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        line = (json.dumps(rec, allow_nan=True) + "\n").encode("utf-8")
        with open(self.log_path, "ab") as fh:
            fh.write(line)
            fh.flush()
            self.log_position = fh.tell()
        self._log_hash.update(line)
        if self._tb is not None:
            for k in ("ce", "loss", "mbe_mean", "lr", "val_ce", "val_mbe_mean"):
                if isinstance(rec.get(k), float):
                    self._tb.add_scalar(f"train/{k}", rec[k], rec["step"])

    def trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step, "tokens": self.tokens, "consecutive_nonfinite": self.consecutive_nonfinite,
            "skipped_total": self.skipped_total, "elapsed": self.elapsed,
            "sampler": self.sampler.state_dict(),
            "controller": self.controller.state_dict() if self.controller is not None else None,
            "rng": rng_state(), "log_position": self.log_position, "log_file": self.log_path.name,
            "log_sha256": self._log_hash.hexdigest(), "world_size": self.world, "last_val": self.last_val,
            "data": self.data,
            **({"grad_scaler": self.precision.state_dict()} if self.precision.scaler is not None else {}),
        }

    def save(self) -> Path | None:
        """Checkpoint the current state (rank 0 only) at ``out_dir/checkpoints/step_{step:08d}``."""
        if self.rank != 0:
            return None
        p = save_checkpoint(self.ckpt_root, self.step, self.model, optimizer=self.optimizer,
                            train_config=self.config.to_dict(), trainer_state=self.trainer_state(),
                            tokenizer=self.tokenizer)
        if p not in self.checkpoints:
            self.checkpoints.append(p)
        return p

    # ------------------------------------------------------------------ main loop
    def run(self) -> TrainResult:
        """Train to ``config.steps``; returns a :class:`TrainResult` (rank 0 also writes summary.json).
        Rank 0 holds the lock of ``out_dir`` while it runs (a second process is refused)."""
        if self.rank != 0:
            return self._run()
        with dir_lock(self.out_dir, "train"):
            return self._run()

    def _run(self) -> TrainResult:
        cfg = self.config
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            rundir.set_aside(self._rejected, self.step)
            self._rejected = []
            if self.step == 0:
                if self.overwrite:
                    rundir.clear_run(self.out_dir)
                self.log_path.write_bytes(b"")
                self._log_hash = hashlib.sha256()
                self.log_position = 0
                atomic_write_json(self.out_dir / "config.json", {"train": cfg.to_dict(),
                                                                 "model": self.model_config.to_dict()})
                if self.tokenizer is not None and hasattr(self.tokenizer, "to_str"):
                    save_tokenizer(self.tokenizer, self.out_dir / "tokenizer.json")
            if cfg.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.out_dir / "tb"))
                except ImportError:
                    warnings.warn("tensorboard=True but tensorboard is not installed; continuing without it",
                                  RuntimeWarning, stacklevel=2)
        bar = None
        if cfg.progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train[{cfg.objective.kind}]", unit="step")
        try:
            while self.step < cfg.steps:
                rec = self.train_step()
                is_last = self.step == cfg.steps
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or is_last:
                    t0 = time.perf_counter()
                    self.last_val = self.evaluate()
                    self.elapsed += time.perf_counter() - t0
                    rec.update(self.last_val)
                rec["time"] = self.elapsed
                for cb in self.callbacks:
                    cb(self, rec)
                self._write(rec)
                if self.step in self.checkpoint_steps:
                    self.save()
                if bar is not None:
                    bar.update(1)
                    ce_txt = f"{rec['ce']:.3f}" if rec["ce"] is not None else "nan"
                    post = {"ce": ce_txt, "phase": rec["phase"][:3]}
                    if "val_ce" in rec:
                        post["val"] = f"{rec['val_ce']:.3f}"
                    bar.set_postfix(post, refresh=False)
        finally:
            if bar is not None:
                bar.close()
            if self._tb is not None:
                self._tb.close()
        switches = list(self.controller.events) if self.controller is not None else []
        result = TrainResult(
            out_dir=self.out_dir, log_path=self.log_path, steps=self.step, tokens=self.tokens,
            final_val_ce=self.last_val.get("val_ce"),
            final_val_mbe={int(k): v for k, v in self.last_val.get("val_mbe", {}).items()},
            final_val_mbe_mean=self.last_val.get("val_mbe_mean"), switches=switches,
            checkpoints=list(self.checkpoints), skipped_steps=self.skipped_total, wall_time=self.elapsed,
        )
        if self.rank == 0:
            atomic_write_json(self.out_dir / "summary.json", result.to_dict())
        return result


def train(config: TrainConfig | dict[str, Any], **kwargs: Any) -> TrainResult:
    """Convenience: ``Trainer(config, **kwargs).run()`` (config may be a dict of TrainConfig fields)."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    return Trainer(config, **kwargs).run()
