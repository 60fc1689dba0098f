"""``sweep(checkpoints) -> trajectory``: the information plane of every checkpoint of a training run.

Every checkpoint is analysed with the same seed, text sample and reference points, so values are comparable
across steps. Resumable: each finished checkpoint is written atomically to ``out_dir/checkpoints/<name>.csv``
(metadata first, the CSV last, so a present CSV means "done"); a rerun skips those and only computes the rest.
The settings are stored in ``out_dir/sweep_config.json``; resuming with different settings is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infoplane.io import atomic_write_csv, atomic_write_json, read_csv, read_json
from infoplane.plane import PLANE_COLUMNS, plane_table
from infoplane.probe.analyze import RESULT_COLUMNS, _columns, analyze
from infoplane.probe.models import is_native_checkpoint

__all__ = ["Checkpoint", "list_checkpoints", "sweep", "SweepResult"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: a file-system-safe ``name``, its ``path`` and training ``step`` (None if unknown)."""

    name: str
    path: Path
    step: int | None


@dataclass
class SweepResult:
    """Concatenated rows of all checkpoints (``step`` column = trajectory), plane rows and metadata."""

    rows: list[dict[str, Any]]
    plane: list[dict[str, Any]]
    metadata: dict[str, Any]
    computed: list[str]  # checkpoints analysed in this call (the rest were resumed from disk)


def _is_checkpoint(p: Path) -> bool:
    if p.is_file():
        return p.suffix == ".gguf"
    return p.is_dir() and ((p / "config.json").is_file() or is_native_checkpoint(p))


def _step_of(p: Path) -> int | None:
    for name in ("trainer_state.json", "meta.json"):
        f = p / name if p.is_dir() else None
        if f is not None and f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                data = None
            for key in ("step", "global_step"):
                if isinstance(data, dict) and isinstance(data.get(key), int):
                    return int(data[key])
    nums = re.findall(r"\d+", p.stem if p.is_file() else p.name)
    return int(nums[-1]) if nums else None


def list_checkpoints(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Checkpoint]:
    """Checkpoints of a run, ordered by step (then name).

    ``source`` is a directory whose sub-directories (``step_00001000/``, HF directories) or ``.gguf`` files
    are checkpoints, a single checkpoint, or an explicit list of checkpoint paths. The step is read from
    ``trainer_state.json``/``meta.json`` or else from the last number in the name.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.exists():
            raise FileNotFoundError(f"checkpoint directory {str(root)!r} not found")
        paths = [root] if _is_checkpoint(root) and root.is_file() else sorted(
            p for p in root.iterdir() if _is_checkpoint(p))
        if not paths and _is_checkpoint(root):
            paths = [root]
    else:
        paths = [Path(p) for p in source]
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"checkpoint {str(p)!r} not found")
    if not paths:
        raise ValueError(f"no checkpoints in {source}: expected sub-directories with config.json "
                         "(+ model.safetensors) or .gguf files")
    out = []
    seen: set[str] = set()
    for p in paths:
        name = _SAFE_NAME.sub("_", p.stem if p.is_file() else p.name) or "checkpoint"
        if name in seen:
            raise ValueError(f"two checkpoints share the name {name!r}; rename one")
        seen.add(name)
        out.append(Checkpoint(name, p, _step_of(p)))
    return sorted(out, key=lambda c: (c.step is None, c.step if c.step is not None else 0, c.name))


def _config_hash(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def sweep(
    checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
    corpus: Any = "kjv",
    out_dir: str | os.PathLike = "sweep",
    tokenizer: Any = None,
    resume: bool = True,
    progress: bool = True,
    analyze_fn: Callable[..., Any] | None = None,
    **analyze_kwargs: Any,
) -> SweepResult:
    """Analyse every checkpoint and concatenate the rows into one trajectory table.

    Args:
        checkpoints: see :func:`list_checkpoints`.
        corpus, tokenizer, analyze_kwargs: passed to :func:`infoplane.probe.analyze.analyze` (orders,
            max_tokens, seq_len, batch_size, n_bins, seed, null, sequence_labels, ...); identical for all.
        out_dir: results directory: ``checkpoints/<name>.csv`` per checkpoint, then ``sweep.csv``,
            ``sweep_plane.csv`` and ``sweep.json``.
        resume: skip checkpoints whose CSV already exists (default). ``False`` recomputes everything.
        analyze_fn: replaces :func:`analyze` (tests, custom runners).
    """
    ckpts = list_checkpoints(checkpoints)
    out = Path(out_dir)
    per_dir = out / "checkpoints"
    per_dir.mkdir(parents=True, exist_ok=True)
    fn = analyze_fn or analyze
    settings = {k: v for k, v in analyze_kwargs.items() if k not in ("progress", "device")}
    settings["corpus"] = corpus if isinstance(corpus, (str, os.PathLike)) else type(corpus).__name__
    cfg_path = out / "sweep_config.json"
    cfg = {"settings": settings, "hash": _config_hash(settings)}
    if resume and cfg_path.is_file():
        old = read_json(cfg_path)
        if old.get("hash") != cfg["hash"]:
            raise ValueError(f"{out} holds a sweep with other settings ({old.get('settings')}); use another "
                             "--out directory or resume=False to start over")
    atomic_write_json(cfg_path, cfg)
    rows: list[dict[str, Any]] = []
    computed: list[str] = []
    metas: dict[str, Any] = {}
    for c in ckpts:
        csv_path, meta_path = per_dir / f"{c.name}.csv", per_dir / f"{c.name}.json"
        if resume and csv_path.is_file():
            part = read_csv(csv_path)
            metas[c.name] = read_json(meta_path) if meta_path.is_file() else {}
        else:
            res = fn(str(c.path), corpus, tokenizer=tokenizer, model_name=c.name, step=c.step,
                     progress=progress, **analyze_kwargs)
            part = res.rows
            metas[c.name] = res.metadata
            atomic_write_json(meta_path, res.metadata)
            atomic_write_csv(csv_path, part, _columns(part, RESULT_COLUMNS))  # written last = "done"
            computed.append(c.name)
        rows.extend(part)
    plane = plane_table(rows)
    metadata = {"checkpoints": [{"name": c.name, "path": str(c.path), "step": c.step} for c in ckpts],
                "settings": settings, "per_checkpoint": metas}
    atomic_write_csv(out / "sweep.csv", rows, _columns(rows, RESULT_COLUMNS))
    atomic_write_csv(out / "sweep_plane.csv", plane, _columns(plane, PLANE_COLUMNS))
    atomic_write_json(out / "sweep.json", metadata)
    return SweepResult(rows, plane, metadata, computed)
