"""Atomic, pickle-free checkpoints of :class:`~infoplane.train.model.GPT` training runs.

Layout (``out_dir/checkpoints/step_{k:08d}/``)::

    model.safetensors        model weights (tied LM head stored once; safetensors.torch.save_model)
    optimizer.safetensors    AdamW state tensors flattened as ``state.{param_index}.{name}`` (optional)
    config.json              {"format", "version", "step", "model": GPTConfig, "train": TrainConfig|None,
                              "tokenizer": "tokenizer.json"|null, "files": {name: SHA-256 of each file
                              above and below}, "config_sha256": SHA-256 of this JSON without that key}
    trainer_state.json       step, controller state, sampler state, RNG states (lists), log position, ...
                             and the optimizer's param_groups (hyper-parameters, no tensors)
    tokenizer.json           the run's tokenizer (when it can be serialised)

Atomicity: the directory is written under a hidden temporary name next to the target and renamed into
place with one ``os.replace``; an interruption at any point leaves the previous checkpoints untouched and no
partially written ``step_*`` directory visible (hidden ``.tmp-*`` leftovers are removed by the next save).
Loading uses only safetensors and JSON: nothing is ever unpickled. Every load verifies the checksums
(:func:`verify_checkpoint`): a flipped byte, a truncated or missing file is a :class:`CorruptCheckpointError`
naming the file and what was expected, never silently different weights. Checkpoints of format version 1
(no checksums) still load.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from infoplane.io import atomic_write_json, bytes_sha256, file_sha256, read_json
from infoplane.train.model import GPT, GPTConfig, NativeCausalLM

__all__ = [
    "FORMAT",
    "CorruptCheckpointError",
    "verify_checkpoint",
    "newest_valid_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_causal_lm",
    "load_optimizer_state",
    "optimizer_tensors",
    "list_checkpoints",
    "latest_checkpoint",
    "checkpoint_dir_name",
    "rng_state",
    "set_rng_state",
]

FORMAT = "infoplane-gpt"
VERSION = 2  # 2: per-file SHA-256 checksums in config.json; 1 (no checksums) is still read
_VERSIONS = (1, 2)


class CorruptCheckpointError(ValueError):
    """A checkpoint file is missing, truncated or altered since it was saved (the message names it)."""


def _config_digest(cfg: dict[str, Any]) -> str:
    """SHA-256 of config.json's content without its own ``config_sha256`` key (canonical JSON)."""
    body = {k: v for k, v in cfg.items() if k != "config_sha256"}
    return bytes_sha256(json.dumps(body, sort_keys=True).encode("utf-8"))


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check a checkpoint directory against the checksums recorded at save time; returns its config.json.

    Raises FileNotFoundError when ``path`` is not a checkpoint, :class:`CorruptCheckpointError` (a
    ValueError) naming the first file that is unreadable, missing or whose SHA-256 differs from the
    recorded one. Version-1 checkpoints have no checksums: only their JSON is checked.
    """
    d = Path(path)
    cfg_path = d / "config.json"
    if not cfg_path.is_file() or not (d / "model.safetensors").is_file():
        raise FileNotFoundError(f"{str(d)!r} is not a checkpoint: expected config.json and model.safetensors")
    try:
        cfg = read_json(cfg_path)
    except ValueError as exc:
        raise CorruptCheckpointError(str(exc)) from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise CorruptCheckpointError(f"{str(cfg_path)!r}: format {got!r}, expected {FORMAT!r}")
    if cfg.get("version") not in _VERSIONS:
        raise CorruptCheckpointError(f"{str(cfg_path)!r}: version {cfg.get('version')!r}, expected one of "
                                     f"{_VERSIONS} (written by a newer infoplane?)")
    if "config_sha256" in cfg and cfg["config_sha256"] != _config_digest(cfg):
        raise CorruptCheckpointError(f"{str(cfg_path)!r}: content does not match its recorded SHA-256 "
                                     "(the file was altered after it was saved)")
    for name, digest in (cfg.get("files") or {}).items():
        f = d / name
        if not f.is_file():
            raise CorruptCheckpointError(f"{str(f)!r} is missing: expected it in this checkpoint "
                                         f"(SHA-256 {digest[:16]}...)")
        actual = file_sha256(f)
        if actual != digest:
            raise CorruptCheckpointError(
                f"{str(f)!r} is corrupt: SHA-256 {actual[:16]}... differs from {digest[:16]}... recorded "
                f"when it was saved ({f.stat().st_size} bytes now)")
    return cfg


def newest_valid_checkpoint(root: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest checkpoint under ``root`` that passes :func:`verify_checkpoint` or None,
    [(newer checkpoint, why it was rejected), ...] newest first)."""
    rejected: list[tuple[Path, str]] = []
    for p in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(p)
        except (CorruptCheckpointError, FileNotFoundError) as exc:
            rejected.append((p, str(exc)))
            continue
        return p, rejected
    return None, rejected


def _safetensors_error(path: Path, exc: Exception, expected: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"{str(path)!r}: cannot be read as {expected} ({exc})")
_STEP_RE = re.compile(r"^step_(\d{8})$")


def checkpoint_dir_name(step: int) -> str:
    return f"step_{int(step):08d}"


# ----------------------------------------------------------------------------- optimizer (de)serialisation
def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into flat tensors ``{"state.{i}.{name}": tensor}`` and a JSON part
    ``{"param_groups": [...], "scalars": {"{i}": {name: value}}}`` (non-tensor state entries)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for i, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{i}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(i), {})[name] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt_dir: str | os.PathLike) -> None:
    """Restore an optimizer saved by :func:`save_checkpoint` (tensors from safetensors, groups from JSON)."""
    d = Path(ckpt_dir)
    path = d / "optimizer.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: this checkpoint has no optimizer state")
    state_path = d / "trainer_state.json"
    meta = read_json(state_path).get("optimizer")
    if not isinstance(meta, dict) or "param_groups" not in meta:
        raise CorruptCheckpointError(f"{str(state_path)!r}: expected an 'optimizer' entry with param_groups")
    try:
        flat = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for a truncated or garbled file
        raise _safetensors_error(path, exc, "the optimizer tensors saved by save_checkpoint") from None
    state: dict[int, dict[str, Any]] = {}
    for key, t in flat.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = t
    for i, sc in meta.get("scalars", {}).items():
        state.setdefault(int(i), {}).update(sc)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------- RNG states
def rng_state() -> dict[str, Any]:
    """torch CPU, numpy global and python ``random`` RNG states as JSON-able lists."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


# ----------------------------------------------------------------------------- save / load
def _cleanup_tmp(root: Path) -> None:
    for p in root.glob(".tmp-step_*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".old-step_*"):
        shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    model: GPT,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    train_config: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write ``root/step_{step:08d}/`` atomically and return its path.

    root: the ``checkpoints`` directory. model: a :class:`GPT` (unwrap DDP first). trainer_state: any
    JSON-serialisable dict (step, controller, sampler, rng, log position ...). tokenizer: an object with
    ``to_str()`` (HF ``tokenizers.Tokenizer`` or :class:`~infoplane.data.tokenizer.ByteTokenizer`) or None.
    Re-saving an existing step replaces it (old copy moved aside, then deleted).
    """
    if not isinstance(model, GPT):
        raise ValueError(f"save_checkpoint expects a GPT model (unwrapped), got {type(model).__name__}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _cleanup_tmp(root)
    name = checkpoint_dir_name(step)
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": FORMAT, "step": str(step)})
        state = dict(trainer_state or {})
        state["step"] = int(step)
        if optimizer is not None:
            tensors, meta = optimizer_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state["optimizer"] = meta
        tok_name = None
        if tokenizer is not None and hasattr(tokenizer, "to_str"):
            (tmp / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
            tok_name = "tokenizer.json"
        atomic_write_json(tmp / "trainer_state.json", state)
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        cfg = {"format": FORMAT, "version": VERSION, "step": int(step), "model": model.config.to_dict(),
               "train": train_config, "tokenizer": tok_name, "files": files}
        cfg = json.loads(json.dumps(cfg, default=str))  # the digest is of what a reader parses back
        cfg["config_sha256"] = _config_digest(cfg)
        atomic_write_json(tmp / "config.json", cfg)
        old = None
        if final.exists():
            old = root / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)  # the single commit point
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        fd = os.open(root, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return final


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu",
                    verify: bool = True) -> tuple[GPT, GPTConfig, dict[str, Any]]:
    """Load ``(model, model_config, meta)`` from a checkpoint directory (never unpickles).

    meta: ``{"step", "train" (TrainConfig dict or None), "trainer_state" (dict), "tokenizer_path"
    (Path or None), "path"}``. The model is in eval mode on ``map_location``. ``verify`` checks every file
    against its recorded SHA-256 first (:func:`verify_checkpoint`); any unreadable file is a
    :class:`CorruptCheckpointError` naming it.
    """
    d = Path(path)
    cfg = verify_checkpoint(d) if verify else read_json(d / "config.json")
    cfg_path = d / "config.json"
    try:
        model_cfg = GPTConfig.from_dict(cfg["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpointError(f"{str(cfg_path)!r}: expected a valid 'model' (GPTConfig) entry "
                                     f"({exc})") from None
    model = GPT(model_cfg)
    weights = d / "model.safetensors"
    try:
        load_model(model, str(weights), strict=True, device=map_location)
    except Exception as exc:  # a truncated file, or tensors that do not fit the architecture in config.json
        raise _safetensors_error(weights, exc, f"the weights of the GPT described in {str(cfg_path)!r}") \
            from None
    model.to(map_location).eval()
    state_path = d / "trainer_state.json"
    meta = {
        "step": int(cfg.get("step", 0)),
        "train": cfg.get("train"),
        "trainer_state": read_json(state_path) if state_path.is_file() else {},
        "tokenizer_path": (d / cfg["tokenizer"]) if cfg.get("tokenizer") else None,
        "path": d,
    }
    return model, model_cfg, meta


def load_causal_lm(path: str | os.PathLike, map_location: str = "cpu") -> tuple[NativeCausalLM, Any]:
    """(HF-style :class:`~infoplane.train.model.NativeCausalLM` in eval mode, tokenizer or None) from a
    checkpoint directory (no unpickling)."""
    from infoplane.data.tokenizer import load_tokenizer

    model, _, meta = load_checkpoint(path, map_location=map_location)
    tok = load_tokenizer(meta["tokenizer_path"]) if meta["tokenizer_path"] else None
    return NativeCausalLM(model).eval(), tok


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories under ``root`` (a run's ``checkpoints`` dir or the run dir itself),
    sorted by step; hidden temporaries are ignored."""
    root = Path(root)
    if (root / "checkpoints").is_dir():
        root = root / "checkpoints"
    if not root.is_dir():
        return []
    out = [p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)
           and (p / "config.json").is_file() and (p / "model.safetensors").is_file()]
    return sorted(out, key=lambda p: int(_STEP_RE.match(p.name).group(1)))


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None
