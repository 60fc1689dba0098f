"""``infoplane train``: train the compact GPT with cross-entropy, static MBE, or GAPT.

Examples::

    infoplane train --steps 1500 --objective gapt --out runs/gapt          # embedded KJV, BPE 2048
    infoplane train --config cfg.yaml --seed 1                            # a config file, one override
    infoplane train --out runs/gapt --resume                              # continue from the last checkpoint
    infoplane train --out runs/gapt --overwrite --steps 200               # replace the run in runs/gapt
    torchrun --nproc_per_node 2 $(which infoplane) train --out runs/ddp   # data-parallel on CPU (gloo)
    torchrun --nproc_per_node 8 $(which infoplane) train --config configs/gpt2_124m_gapt.toml   # GPUs (NCCL)

With ``--resume`` the saved run's settings are the base and only the flags given change them (the trainer
refuses changes it cannot honour, listing them). An invalid flag value is an error naming the flag.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["register", "run", "build_config"]

_OVERRIDES = {
    # flag dest -> TrainConfig field, or (part, field) of its model / objective tables
    "corpus": "corpus", "tokenizer": "tokenizer", "n_layer": ("model", "n_layer"),
    "d_model": ("model", "d_model"), "n_head": ("model", "n_head"), "block_size": ("model", "block_size"),
    "steps": "steps", "batch_size": "batch_size", "lr": "lr", "objective": ("objective", "kind"),
    "seed": "seed", "out": "out_dir", "mbe_weight": ("objective", "mbe_weight"),
    "mbe_layers": ("objective", "layers"), "mbe_scheme": ("objective", "scheme"),
    "eval_every": "eval_every", "align_every": "align_every", "patch_size": ("objective", "patch_size"),
    "grad_accum": "grad_accum", "threads": "num_threads", "device": "device", "precision": "precision",
    "val_corpus": "val_corpus", "vocab_size": ("model", "vocab_size"),
}


def _parse_layers(text: str) -> Any:
    """``--mbe-layers``: 'middle' | 'rotate' | 'all' | comma-separated block indices."""
    if text in ("middle", "rotate", "all"):
        return text
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'middle', 'rotate', 'all' or comma-separated block indices, got {text!r}") from None


class _Given(argparse._StoreAction):
    """argparse's plain ``store``, which also records the flags given on the command line (``args.given``):
    only those override ``--config``; a flag left at its default (shown by ``--help``) does not."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.given = frozenset({*getattr(namespace, "given", ()), self.dest})


def _given(args: argparse.Namespace, dest: str) -> bool:
    """Whether flag ``dest`` was set on the command line (in a namespace built by hand: is not None)."""
    given = getattr(args, "given", None)
    return getattr(args, dest, None) is not None and (given is None or dest in given)


def _config_defaults() -> dict[str, Any]:
    """flag dest -> the TrainConfig default it overrides: one source for ``--help`` and the run."""
    from infoplane.train.config import TrainConfig

    cfg = TrainConfig().to_dict()
    out: dict[str, Any] = {"checkpoints": cfg["checkpoint_steps"]}
    for dest, fld in _OVERRIDES.items():
        value: Any = cfg
        for key in fld if isinstance(fld, tuple) else (fld,):
            value = value[key]
        out[dest] = value
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a small GPT (cross-entropy, static MBE, or GAPT) on a text corpus",
        description=(
            "Train a compact GPT language model on CPU. Objectives: 'ce' = plain next-token cross-entropy; "
            "'ce+mbe' = cross-entropy + lambda x matrix-based entropy (MBE) of the hidden states at every "
            "step; 'gapt' = alternate automatically between memorisation (CE only) and compression "
            "(CE + lambda x MBE) phases. Writes out/log.jsonl (one JSON record per step), "
            "out/checkpoints/step_XXXXXXXX/ and out/summary.json. Settings come from --config (YAML/TOML) "
            "and the flags below, which override the file."
        ),
    )
    p.register("action", None, _Given)  # every plain flag records that it was given
    p.add_argument("--config", metavar="FILE", help="YAML (.yaml/.yml), TOML (.toml) or JSON file with "
                   "TrainConfig fields (see infoplane.train.config.TrainConfig); flags override it")
    g = p.add_argument_group("data")
    g.add_argument("--corpus", help="'kjv' (embedded King James Bible), a .txt/.jsonl file or folder, or "
                   "pre-tokenized modded-nanogpt token shards 'shards:PATTERN' (memory-mapped)")
    g.add_argument("--val-corpus", metavar="SHARDS", help="validation token shards 'shards:PATTERN' (only "
                   "with a shard --corpus)")
    g.add_argument("--tokenizer", help="'bpe:N' (train an N-token byte-level BPE on the training split), "
                   "'byte' (256 byte tokens), 'gpt2:DIR' (local vocab.json+merges.txt) "
                   "or a saved tokenizer.json; with token shards only saved with checkpoints, or 'none'")
    g = p.add_argument_group("model size")
    g.add_argument("--n-layer", type=int, help="number of transformer blocks")
    g.add_argument("--d-model", type=int, help="hidden width")
    g.add_argument("--n-head", type=int, help="attention heads; must divide --d-model")
    g.add_argument("--block-size", type=int, help="context length in tokens")
    g.add_argument("--vocab-size", type=int, help="model vocabulary (token shards only; a text corpus uses "
                   "its tokenizer's)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, help="optimiser steps")
    g.add_argument("--batch-size", type=int, help="sequences per step, global across processes")
    g.add_argument("--grad-accum", type=int, help="split each batch into this many micro-batches")
    g.add_argument("--lr", type=float, help="peak AdamW learning rate")
    g.add_argument("--seed", type=int, help="seed for data split, sampling and initialisation")
    g.add_argument("--threads", type=int, help="torch CPU threads (unset: torch's choice)")
    g.add_argument("--device", help="'cpu', 'cuda' (under torchrun: each rank's GPU, NCCL), 'cuda:N' or "
                   "'auto' (CUDA when available)")
    g.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="'fp32'; 'bf16' autocast; 'fp16' "
                   "autocast with loss scaling (CUDA only)")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", choices=["ce", "ce+mbe", "gapt"], help="training objective")
    g.add_argument("--mbe-weight", type=float, help="lambda, weight of the MBE penalty")
    g.add_argument("--patch-size", type=int, help="tokens per MBE patch")
    g.add_argument("--mbe-layers", type=_parse_layers, metavar="LAYERS",
                   help="blocks whose MBE is penalised: 'middle' (all but the first and last), "
                   "'rotate' (the default: one middle block per step, cycling, as the reference code), "
                   "'all', or indices such as 1,2")
    g.add_argument("--mbe-scheme", choices=["joint", "alternating"],
                   help="'joint': CE + lambda x MBE on every micro-batch while compressing; "
                   "'alternating': CE and lambda x MBE on alternating micro-batches (paper-era code; "
                   "needs an even --grad-accum)")
    g.add_argument("--controller", metavar="JSON", help="GAPT phase-controller settings as JSON, e.g. "
                   "'{\"rule\": \"relative\", \"patience_mem\": 50, \"patience_comp\": 30, \"ema\": 0.9}'")
    g = p.add_argument_group("monitoring and output")
    g.add_argument("--eval-every", type=int, help="validate every N steps; 0 = only at the end")
    g.add_argument("--align-every", type=int, help="log the CE/MBE gradient cosine every N steps; 0 = off")
    g.add_argument("--monitor-every", type=int, default=0, metavar="N",
                   help="probe the information plane every N optimiser steps on a fixed held-out probe set "
                   "(InfoPlaneMonitor: complexity, expressivity, their permutation nulls and MBE per layer, "
                   "appended to OUT/plane_monitor.csv; resumes with the run); 0 = off")
    g.add_argument("--monitor-tokens", type=int, default=4096, metavar="N",
                   help="probe positions per monitor point (held-out validation text)")
    g.add_argument("--monitor-orders", default="1,2", metavar="ORDERS",
                   help="n-gram orders of the monitor's labels, comma-separated")
    g.add_argument("--checkpoint-steps", dest="checkpoints", metavar="SPEC", help="when to save: 'log:N' "
                   "(N log-spaced steps), 'every:K', 'final', or a comma-separated list of steps")
    g.add_argument("--checkpoints", dest="checkpoints", help=argparse.SUPPRESS)  # old spelling
    g.add_argument("--out", help="output directory")
    g.add_argument("--resume", action="store_true",
                   help="continue exactly from the newest valid checkpoint in --out, with its saved settings")
    g.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out that holds one (its log, checkpoints and summary are "
                   "deleted)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)  # old spelling
    g.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars (if installed)")
    g.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    p.set_defaults(func=run, given=frozenset(), **_config_defaults())


def _saved_settings(out: str) -> dict[str, Any]:
    """The TrainConfig dict of the run in ``out`` (its config.json, else its newest checkpoint's)."""
    from infoplane.io import read_json
    from infoplane.train.checkpoint import latest_checkpoint

    path = Path(out) / "config.json"
    if path.is_file():
        saved = read_json(path).get("train")
    else:
        ckpt = latest_checkpoint(Path(out) / "checkpoints")
        saved = read_json(ckpt / "config.json").get("train") if ckpt is not None else None
    if not isinstance(saved, dict):
        raise FileNotFoundError(f"--resume: {out!r} holds no training run (no config.json or checkpoint)")
    return saved


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; the model / objective / controller tables are merged key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _name_the_flag(args: argparse.Namespace, exc: ValueError) -> ValueError:
    """A settings error that names a field set by a given flag, as that flag's error (``--seed: ...``)."""
    msg = str(exc)
    for dest, fld in _OVERRIDES.items():
        if not _given(args, dest):
            continue
        if isinstance(fld, tuple):
            pattern = rf"(TrainConfig\.{fld[0]}\.|\w+Config\.){fld[1]}\b"
        else:
            pattern = rf"TrainConfig\.{fld}\b"
        if re.search(pattern, msg):
            return ValueError(f"--{dest.replace('_', '-')}: {msg}")
    return exc


def build_config(args: argparse.Namespace):
    """TrainConfig from ``--config`` plus flag overrides (on ``--resume``: over the saved run's settings)."""
    from infoplane.train.config import TrainConfig, load_config_file

    d: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if getattr(args, "resume", False):
        out = args.out if _given(args, "out") else d.get("out_dir", TrainConfig().out_dir)
        d = _merge({**_saved_settings(out), "out_dir": out}, d)
    for dest, fld in _OVERRIDES.items():
        v = getattr(args, dest, None)
        if not _given(args, dest):
            continue
        if isinstance(fld, tuple):
            part, name = fld
            d[part] = {**d.get(part, {}), name: v}
        else:
            d[fld] = v
    if args.controller:
        try:
            ctrl = json.loads(args.controller)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--controller: expected a JSON object, got {args.controller!r}") from exc
        if not isinstance(ctrl, dict):
            raise ValueError(f"--controller: expected a JSON object, got {args.controller!r}")
        d["controller"] = {**d.get("controller", {}), **ctrl}
    if _given(args, "checkpoints"):
        spec = args.checkpoints
        if spec[0].isdigit():
            try:
                spec = [int(s) for s in spec.split(",")]
            except ValueError as exc:
                raise ValueError(f"--checkpoints: expected integers separated by commas, "
                                 f"got {spec!r}") from exc
        d["checkpoint_steps"] = spec
    if args.quiet:
        d["progress"] = False
    if args.tensorboard:
        d["tensorboard"] = True
    try:
        return TrainConfig.from_dict(d)
    except ValueError as exc:
        raise _name_the_flag(args, exc) from None


def _check_device(spec: str) -> None:
    """``--device cuda`` on a machine without CUDA: one line, before any work."""
    import torch

    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device: {spec!r} was asked for but CUDA is not available here (torch "
                         f"{torch.__version__}); use --device cpu or auto")


def _monitor(args: argparse.Namespace, cfg: Any) -> list[Any]:
    """``--monitor-every``: the InfoPlaneMonitor callback (empty list when off)."""
    every = getattr(args, "monitor_every", 0) or 0
    if every < 0:
        raise ValueError(f"--monitor-every: expected a number of steps >= 0 (0 = off), got {every}")
    if every == 0:
        return []
    from infoplane.probe.config import ProbeConfig
    from infoplane.probe.monitor import InfoPlaneMonitor

    try:
        orders = tuple(int(x) for x in str(args.monitor_orders).split(","))
    except ValueError as exc:
        raise ValueError(f"--monitor-orders: expected integers separated by commas, got "
                         f"{args.monitor_orders!r}") from exc
    if args.monitor_tokens < 1:
        raise ValueError(f"--monitor-tokens: expected a positive number of positions, "
                         f"got {args.monitor_tokens}")
    try:
        probe = ProbeConfig(orders=orders, max_tokens=int(args.monitor_tokens), seq_len=cfg.model.block_size,
                            null=True)
    except ValueError as exc:
        raise ValueError(f"--monitor-orders / --monitor-tokens: {exc}") from None
    return [InfoPlaneMonitor(config=probe, every=every, tensorboard=bool(args.tensorboard))]


def run(args: argparse.Namespace) -> int:
    from infoplane.io import check_output_dir

    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise ValueError("--resume and --overwrite exclude each other: --resume continues the run in --out, "
                         "--overwrite replaces it")
    cfg = build_config(args)
    check_output_dir(cfg.out_dir, "--out")
    _check_device(cfg.device)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from infoplane.train.trainer import Trainer

    # under torchrun: one process per rank (gloo), DDP
    trainer = Trainer(cfg, resume=args.resume, overwrite=getattr(args, "overwrite", False),
                      callbacks=_monitor(args, cfg))
    res = trainer.run()
    if trainer.rank != 0:
        return 0
    ce = "n/a" if res.final_val_ce is None else f"{res.final_val_ce:.4f}"
    mbe = "n/a" if res.final_val_mbe_mean is None else f"{res.final_val_mbe_mean:.4f}"
    print(f"done: {res.steps} steps, {res.tokens} CE tokens, val CE {ce} nats, layer-mean val MBE {mbe}, "
          f"{len(res.switches)} phase switches, {res.skipped_steps} skipped steps; log: {res.log_path}")
    return 0
