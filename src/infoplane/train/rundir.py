"""The rules of a training run directory: nothing lost, nothing mixed, one process at a time.

- a new run refuses a directory that already holds a run (:data:`RUN_FILES`) unless asked to overwrite it,
  and then removes exactly those files (:func:`check_out_dir`, :func:`clear_run`);
- a directory another live process is training into is refused, naming that process (the lock itself,
  :func:`infoplane.io.dir_lock`, is held by :meth:`Trainer.run <infoplane.train.trainer.Trainer.run>`);
- a resume starts from the newest checkpoint that passes its checksums (:func:`resume_checkpoint`); newer
  corrupt ones are set aside as ``checkpoints/corrupt-step_*`` with a message (:func:`set_aside`);
- a resume must match the checkpoint's settings (except :data:`~infoplane.train.preflight.RESUMABLE`), its
  resolved model and its data (:func:`check_resume`), and the log must still hold the checkpoint's records,
  checked by length and SHA-256 before the records after the checkpoint are dropped (:func:`restore_log`:
  the file is only ever shortened, never padded).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from infoplane.io import LockHeldError, check_output_dir, lock_holder, read_json
from infoplane.train.checkpoint import CorruptCheckpointError, newest_valid_checkpoint
from infoplane.train.preflight import resume_differences

__all__ = ["RUN_FILES", "check_out_dir", "clear_run", "resume_checkpoint", "set_aside", "check_resume",
           "restore_log", "vocab_guess"]

# what a run writes into its directory (an overwrite removes exactly these)
RUN_FILES = ("log.jsonl", "checkpoints", "summary.json", "config.json", "tokenizer.json", "tb",
             "plane_monitor.csv", "plane_monitor.json")  # the monitor (probe/monitor.py) writes the last two


def check_out_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Before any work: ``out_dir`` is a writable directory, no other live process trains into it, and a
    new run (not ``resume``) does not mix with an old one unless ``overwrite``."""
    check_output_dir(out_dir, "TrainConfig.out_dir (--out)")
    holder = lock_holder(out_dir)
    if holder is not None:
        raise LockHeldError(f"{str(out_dir)!r} is in use by pid {holder.get('pid')} on host "
                            f"{holder.get('host')} since {holder.get('since', '?')}: wait for it to finish "
                            "or stop it")
    used = [n for n in RUN_FILES if (out_dir / n).exists()] if out_dir.is_dir() else []
    if not resume and used and not overwrite:
        raise FileExistsError(
            f"{str(out_dir)!r} already holds a training run ({', '.join(used)}): continue it with --resume "
            "(resume=True), replace it with --overwrite (overwrite=True), or choose another --out")


def clear_run(out_dir: Path) -> None:
    """Remove the :data:`RUN_FILES` of ``out_dir`` (nothing else in it)."""
    for name in RUN_FILES:
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def resume_checkpoint(ckpt_root: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """(newest checkpoint that passes its checksums, [(newer rejected checkpoint, reason)]); an error when
    there is none."""
    found, rejected = newest_valid_checkpoint(ckpt_root)
    if found is None and rejected:
        raise CorruptCheckpointError(f"--resume: no valid checkpoint under {str(ckpt_root)!r}; "
                                     + "; ".join(r for _, r in rejected))
    if found is None:
        raise FileNotFoundError(f"--resume: no checkpoint found under {str(ckpt_root)!r}")
    return found, rejected


def set_aside(rejected: list[tuple[Path, str]], step: int) -> None:
    """Rename checkpoints that failed their checksums to ``corrupt-step_*`` (kept for inspection, never
    listed as checkpoints) and say so on stderr; ``step`` is the step the run resumed from."""
    for p, why in rejected:
        if not p.exists():
            continue
        dest, n = p.with_name(f"corrupt-{p.name}"), 1
        while dest.exists():
            dest, n = p.with_name(f"corrupt-{p.name}.{n}"), n + 1
        os.replace(p, dest)
        print(f"[train] checkpoint {str(p)!r} failed verification ({why}); moved to {dest.name}; resumed "
              f"from the newest valid checkpoint, step {step}", file=sys.stderr, flush=True)


def check_resume(out_dir: Path, ckpt: Path, meta: dict[str, Any], config: Any, model: dict[str, Any],
                 data: dict[str, Any], warn: bool = True) -> None:
    """Refuse a resume of ``ckpt`` (loaded ``meta``) whose settings (``config``, a TrainConfig), resolved
    model (``model``, a GPTConfig dict) or ``data`` (:func:`~infoplane.train.preflight.data_fingerprint`)
    differ from the checkpoint's, listing every difference; warn when ``steps`` moves the cosine schedule."""
    st = meta["trainer_state"]
    saved_data = {k: v for k, v in (st.get("data") or {}).items() if v is not None}
    diffs = resume_differences(meta["train"], config.to_dict())
    saved_model = read_json(ckpt / "config.json").get("model") or {}
    diffs += [d for d in (f"model.{d}" for d in resume_differences(saved_model, model, skip=frozenset()))
              if d not in diffs]  # the resolved model adds vocab_size (the tokenizer's) and the init seed
    now_data = {k: v for k, v in data.items() if k in saved_data and v is not None}
    diffs += [f"data {d}" for d in resume_differences(saved_data, now_data, skip=frozenset())]
    if diffs:
        raise ValueError(
            f"cannot resume {str(out_dir)!r} from {ckpt.name}: a resumed run continues with the saved "
            f"settings and data, and these differ now: {'; '.join(diffs)}. Give the saved values (the CLI "
            "uses them for every flag you do not give), or start a new run with --overwrite or another --out")
    if config.steps < int(st["step"]):
        raise ValueError(f"cannot resume {str(out_dir)!r}: its checkpoint is at step {st['step']}, beyond "
                         f"steps={config.steps}")
    saved_steps = (meta["train"] or {}).get("steps")
    if warn and saved_steps not in (None, config.steps) and config.schedule == "cosine":
        warnings.warn(f"resuming with steps={config.steps} (saved: {saved_steps}): the cosine learning-rate "
                      f"schedule now ends at step {config.steps}, so the steps after {st['step']} follow a "
                      "different schedule than the saved run's", RuntimeWarning, stacklevel=3)


def restore_log(log_path: Path, ckpt: Path, st: dict[str, Any]) -> Any:
    """Check that ``log_path`` still holds the records checkpoint ``ckpt`` (trainer state ``st``) was saved
    with (length and SHA-256 of the first ``log_position`` bytes), drop the records after them, and return
    the running SHA-256 of the kept bytes. Never extends the file."""
    pos, digest = int(st.get("log_position", 0)), st.get("log_sha256")
    data = log_path.read_bytes() if log_path.is_file() else b""
    prefix = data[:pos]
    if len(data) < pos or (digest is not None and hashlib.sha256(prefix).hexdigest() != digest):
        raise ValueError(
            f"cannot resume from {ckpt.name}: the log {str(log_path)!r} does not hold the {st['step']} "
            f"records the checkpoint was saved with ({len(data)} bytes, expected the first {pos} to match); "
            "it was replaced or edited. Start a new run with --overwrite or another --out")
    if len(data) > pos:
        with open(log_path, "r+b") as fh:  # drop records written after the checkpoint
            fh.truncate(pos)
    return hashlib.sha256(prefix)


def vocab_guess(spec: Any, default: int) -> int:
    """Vocabulary size implied by a tokenizer spec before the tokenizer exists ('bpe:N' -> N, 'byte' ->
    256), else ``default``; only for the memory pre-check."""
    if isinstance(spec, str) and spec.startswith("bpe:") and spec[4:].isdigit():
        return int(spec[4:])
    return 256 if spec == "byte" else int(default)
