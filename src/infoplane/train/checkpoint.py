"""Atomic, pickle-free checkpoints of :class:`~infoplane.train.model.GPT` training runs.

Layout (``out_dir/checkpoints/step_{k:08d}/``)::

    model.safetensors        model weights (tied LM head stored once; safetensors.torch.save_model)
    optimizer.safetensors    AdamW state tensors flattened as ``state.{param_index}.{name}`` (optional)
    config.json              {"format", "version", "step", "model": GPTConfig, "train": TrainConfig|None,
                              "tokenizer": "tokenizer.json"|null}
    trainer_state.json       step, controller state, sampler state, RNG states (lists), log position, ...
                             and the optimizer's param_groups (hyper-parameters, no tensors)
    tokenizer.json           the run's tokenizer (when it can be serialised)

Atomicity: the directory is written under a hidden temporary name next to the target and renamed into
place with one ``os.replace``; an interruption at any point leaves the previous checkpoints untouched and no
partially written ``step_*`` directory visible (hidden ``.tmp-*`` leftovers are removed by the next save).
Loading uses only safetensors and JSON: nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from infoplane.io import atomic_write_json, read_json
from infoplane.train.model import GPT, GPTConfig, NativeCausalLM

__all__ = [
    "FORMAT",
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
VERSION = 1
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
    meta = read_json(d / "trainer_state.json")["optimizer"]
    flat = load_file(str(path))
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
        atomic_write_json(tmp / "config.json", {
            "format": FORMAT, "version": VERSION, "step": int(step),
            "model": model.config.to_dict(), "train": train_config, "tokenizer": tok_name,
        })
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


def load_checkpoint(path: str | os.PathLike,
                    map_location: str = "cpu") -> tuple[GPT, GPTConfig, dict[str, Any]]:
    """Load ``(model, model_config, meta)`` from a checkpoint directory (never unpickles).

    meta: ``{"step", "train" (TrainConfig dict or None), "trainer_state" (dict), "tokenizer_path"
    (Path or None), "path"}``. The model is in eval mode on ``map_location``.
    """
    d = Path(path)
    cfg_path = d / "config.json"
    if not cfg_path.is_file() or not (d / "model.safetensors").is_file():
        raise FileNotFoundError(f"{str(d)!r} is not a checkpoint: expected config.json and model.safetensors")
    cfg = read_json(cfg_path)
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{str(cfg_path)!r}: format {cfg.get('format')!r}, expected {FORMAT!r}")
    model_cfg = GPTConfig.from_dict(cfg["model"])
    model = GPT(model_cfg)
    missing, unexpected = load_model(model, str(d / "model.safetensors"), strict=True, device=map_location)
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
