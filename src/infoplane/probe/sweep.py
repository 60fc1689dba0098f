"""``sweep(checkpoints) -> trajectory``: the information plane of every checkpoint of a training run.

Every checkpoint is analysed with the same seed, text sample and reference points, so values are comparable
across steps. Resumable: each finished checkpoint is written atomically to ``out/checkpoints/<name>.csv``
(metadata first, the CSV last, so a present CSV means "done"); a rerun skips those and only computes the rest.
The resume guard in ``out/sweep_config.json`` holds the :class:`~infoplane.probe.config.ProbeConfig`, a hash
of the corpus *content* and the tokenizer; resuming with any of them different is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infoplane.io import atomic_write_csv, atomic_write_json, check_output_dir, read_csv, read_json
from infoplane.plane import PLANE_COLUMNS, plane_table
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.integrity import check_checkpoint, weight_files, weights_sha256
from infoplane.probe.models import check_device, is_native_checkpoint
from infoplane.probe.plan import corpus_content_hash, is_token_input
from infoplane.probe.result import RESULT_COLUMNS, ordered_columns

__all__ = ["Checkpoint", "list_checkpoints", "sweep", "SweepResult", "SweepSetup", "open_sweep", "screen",
           "analyse_one", "unique_checkpoints", "assemble"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")


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
    corrupt: list[dict[str, Any]] = field(default_factory=list)  # {name, path, step, reason}: skipped
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # {name, path, step, same_as}


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
    are checkpoints, a single checkpoint, or an explicit list of checkpoint paths. A training run directory
    (``infoplane train --out``: no weights of its own, a ``checkpoints/`` folder) is accepted with a warning
    naming the ``checkpoints/`` folder used. The step is read from ``trainer_state.json``/``meta.json`` or
    else from the last number in the name.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.exists():
            raise FileNotFoundError(f"checkpoint directory {str(root)!r} not found")
        if root.is_dir() and (root / "checkpoints").is_dir() \
                and not any(p.suffix in _WEIGHT_SUFFIXES and p.is_file() for p in root.iterdir()):
            warnings.warn(f"{str(root)!r} is a training run directory, not a checkpoint folder: sweeping its "
                          f"checkpoints folder {str(root / 'checkpoints')!r}", stacklevel=2)
            root = root / "checkpoints"
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


def _tokenizer_id(tokenizer: Any) -> str | None:
    """What identifies an explicitly passed tokenizer in the resume guard (class, name, vocabulary size)."""
    if tokenizer is None:
        return None
    return (f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}:"
            f"{getattr(tokenizer, 'name_or_path', '')}:{getattr(tokenizer, 'vocab_size', '')}")


def _guard(config: ProbeConfig, corpus: Any, sequence_values: Any, tokenizer: Any) -> dict[str, Any]:
    """What a resumed sweep must share with the one on disk: every probe setting, the corpus *content*
    (never its type or name: two in-memory corpora with different texts differ) and the tokenizer."""
    # memory_budget never changes results; zero_policy only when positions were skipped, which the default
    # ("error") never does, so sweeps saved before the setting existed stay resumable
    settings = {k: v for k, v in config.to_dict().items()
                if k != "memory_budget" and not (k == "zero_policy" and v == "error")}
    guard = {"config": settings, "corpus_sha256": corpus_content_hash(corpus, sequence_values),
             "tokenizer": _tokenizer_id(tokenizer)}
    guard["hash"] = hashlib.sha256(json.dumps(guard, sort_keys=True, default=str).encode()).hexdigest()
    return guard


def _cached_sha256(path: Path, cache: dict[str, Any]) -> str:
    """:func:`weights_sha256` of a checkpoint, reused from ``cache`` while its weight files keep their
    sizes and modification times (a sweep's resume does not re-read every checkpoint)."""
    stamp = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in weight_files(path)]
    hit = cache.get(str(path))
    if isinstance(hit, dict) and hit.get("stamp") == stamp:
        return str(hit["sha256"])
    sha = weights_sha256(path)
    cache[str(path)] = {"stamp": stamp, "sha256": sha}
    return sha


def _reusable(corpus: Any) -> Any:
    """A corpus that can be read once per checkpoint: one-shot iterables of texts become a Corpus."""
    if isinstance(corpus, (str, os.PathLike, Mapping, list, tuple)) or is_token_input(corpus):
        return corpus
    from infoplane.data.corpus import Corpus, load_corpus

    return corpus if isinstance(corpus, Corpus) else load_corpus(corpus)


@dataclass
class SweepSetup:
    """A validated sweep: its checkpoints, the reusable corpus, the resume guard and the output folders."""

    ckpts: list[Checkpoint]
    corpus: Any
    config: ProbeConfig
    out_dir: Path
    guard: dict[str, Any]
    settings: dict[str, Any]
    hashes: dict[str, Any]  # weight-hash cache (weights_sha256.json)

    @property
    def per_dir(self) -> Path:
        return self.out_dir / "checkpoints"


def open_sweep(checkpoints: Any, corpus: Any, config: ProbeConfig | None, out: str | os.PathLike,
               tokenizer: Any, sequence_values: Any, resume: bool, device: Any,
               write: bool = True) -> SweepSetup:
    """Validate the arguments, list the checkpoints and check the resume guard (a ValueError when ``out``
    holds a sweep of other settings); ``write`` stores the guard (one writer per output directory)."""
    config = ProbeConfig.resolve(config)
    check_device(device)
    check_output_dir(out, "out")
    ckpts = list_checkpoints(checkpoints)
    corpus = _reusable(corpus)
    out_dir = Path(out)
    guard = _guard(config, corpus, sequence_values, tokenizer)
    settings = {**config.to_dict(),
                "corpus": str(corpus) if isinstance(corpus, (str, os.PathLike)) else type(corpus).__name__}
    cfg_path = out_dir / "sweep_config.json"
    if resume and cfg_path.is_file():
        old = read_json(cfg_path)
        if old.get("hash") != guard["hash"]:
            what = ", ".join(k for k in ("config", "corpus_sha256", "tokenizer") if old.get(k) != guard[k])
            raise ValueError(f"{out_dir} holds a sweep with other settings (differs in: {what or 'format'}; "
                             f"stored settings {old.get('config')}); use another output directory or "
                             "resume=False to start over")
    if write:
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg_path, guard)
    hash_path = out_dir / "weights_sha256.json"
    hashes = read_json(hash_path) if hash_path.is_file() else {}
    return SweepSetup(ckpts, corpus, config, out_dir, guard, settings, hashes)


def screen(sw: SweepSetup, c: Checkpoint, strict: bool) -> dict[str, Any]:
    """Integrity check and weight hash of one checkpoint: ``{"name", "path", "step", "reason"}`` for a
    corrupt one (warned; a ValueError when ``strict``), else ``{"name", "sha256"}``."""
    why = check_checkpoint(c.path)
    if why is not None:
        if strict:
            raise ValueError(f"corrupt checkpoint {str(c.path)!r} (strict sweep): {why}")
        warnings.warn(f"skipping corrupt checkpoint {str(c.path)!r}: {why}", stacklevel=3)
        return {"name": c.name, "path": str(c.path), "step": c.step, "reason": why}
    return {"name": c.name, "sha256": _cached_sha256(c.path, sw.hashes)}


def analyse_one(sw: SweepSetup, c: Checkpoint, sha: str, fn: Callable[..., Any], resume: bool,
                **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """Rows and metadata of one checkpoint: read back when its CSV exists for the same weights (resume),
    else computed with ``fn`` and written atomically (metadata first, the CSV last = "done").
    Returns (rows, metadata, computed now)."""
    csv_path, meta_path = sw.per_dir / f"{c.name}.csv", sw.per_dir / f"{c.name}.json"
    old_meta = read_json(meta_path) if resume and csv_path.is_file() and meta_path.is_file() else None
    if resume and csv_path.is_file() and (old_meta or {}).get("weights_sha256", sha) == sha:
        return read_csv(csv_path), old_meta or {}, False
    res = fn(str(c.path), sw.corpus, sw.config, model_name=c.name, step=c.step, **kwargs)
    atomic_write_json(meta_path, res.metadata)
    atomic_write_csv(csv_path, res.rows, ordered_columns(res.rows, RESULT_COLUMNS))  # written last = "done"
    return res.rows, res.metadata, True


def unique_checkpoints(sw: SweepSetup, status: list[dict[str, Any]]) -> tuple[list[int], dict[int, int]]:
    """Indices of the checkpoints to analyse (the first of every weight hash, corrupt ones left out) and,
    for every later duplicate, the index of the first one with its weights."""
    first: dict[str, int] = {}
    dup: dict[int, int] = {}
    for i, st in enumerate(status):
        sha = st.get("sha256")
        if sha is None:
            continue
        if sha in first:
            dup[i] = first[sha]
        else:
            first[sha] = i
    return sorted(first.values()), dup


def assemble(sw: SweepSetup, status: list[dict[str, Any]], parts: dict[int, list[dict[str, Any]]],
             metas: dict[str, Any], computed: list[str], write: bool = True) -> SweepResult:
    """The trajectory table from every checkpoint's rows (duplicates get their first's rows under their own
    name and step), written to ``sweep.csv``/``sweep_plane.csv``/``sweep.json`` when ``write``."""
    _, dup = unique_checkpoints(sw, status)
    rows: list[dict[str, Any]] = []
    corrupt = [st for st in status if "reason" in st]
    duplicates = []
    for i, c in enumerate(sw.ckpts):
        if i in dup:
            first = sw.ckpts[dup[i]]
            duplicates.append({"name": c.name, "path": str(c.path), "step": c.step, "same_as": first.name,
                               "weights_sha256": status[i]["sha256"]})
            rows.extend({**r, "model": c.name, "step": c.step} for r in parts[dup[i]])
        elif i in parts:
            rows.extend(parts[i])
    if write:
        atomic_write_json(sw.out_dir / "weights_sha256.json", sw.hashes)
    if not parts:
        raise ValueError(f"every checkpoint of the sweep is corrupt: {[d['path'] for d in corrupt]}")
    plane = plane_table(rows)
    metadata = {"checkpoints": [{"name": c.name, "path": str(c.path), "step": c.step} for c in sw.ckpts],
                "settings": sw.settings, "corpus_sha256": sw.guard["corpus_sha256"], "per_checkpoint": metas,
                "corrupt": corrupt, "duplicates": duplicates}
    if write:
        atomic_write_csv(sw.out_dir / "sweep.csv", rows, ordered_columns(rows, RESULT_COLUMNS))
        atomic_write_csv(sw.out_dir / "sweep_plane.csv", plane, ordered_columns(plane, PLANE_COLUMNS))
        atomic_write_json(sw.out_dir / "sweep.json", metadata)
    return SweepResult(rows, plane, metadata, computed, corrupt, duplicates)


def sweep(
    checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
    corpus: Any = "kjv",
    config: ProbeConfig | None = None,
    *,
    out: str | os.PathLike = "sweep",
    tokenizer: Any = None,
    sequence_values: Mapping[str, Sequence[Any]] | None = None,
    resume: bool = True,
    progress: bool = True,
    device: str | Any = "cpu",
    analyze_fn: Callable[..., Any] | None = None,
    strict: bool = False,
) -> SweepResult:
    """Analyse every checkpoint with the same settings and concatenate the rows into one trajectory table.

    Args:
        checkpoints: see :func:`list_checkpoints`.
        corpus, config, tokenizer, sequence_values: as in :func:`infoplane.probe.analyze.analyze`; identical
            for all checkpoints (same text sample and reference points, so values compare across steps).
        out: results directory: ``checkpoints/<name>.csv`` per checkpoint, then ``sweep.csv``,
            ``sweep_plane.csv`` and ``sweep.json``.
        resume: skip checkpoints whose CSV already exists (default) -- refused with a ValueError when ``out``
            holds a sweep of other settings, another corpus content or another tokenizer. ``False``
            recomputes everything.
        progress, device: progress bar; device of each loaded checkpoint (checked first: a CUDA device
            without CUDA is a ValueError; so is an ``out`` that is a file or not writable).
        analyze_fn: replaces :func:`analyze` (tests, custom runners); called like it.
        strict: a corrupt checkpoint fails the sweep (ValueError naming its path) instead of being skipped.

    Integrity: every checkpoint is checked before it is analysed (:func:`infoplane.probe.integrity.
    check_checkpoint`: recorded checksums when present, else the weight files' structure); a corrupt one is
    reported (warning, ``SweepResult.corrupt``, ``sweep.json``) with its path and skipped, never mixed in.
    Checkpoints whose weights hash identically (:func:`~infoplane.probe.integrity.weights_sha256`) are
    analysed once: the later ones are reported in ``SweepResult.duplicates`` and get the first one's rows
    under their own name and step. A resumed checkpoint whose weights changed since it was analysed is
    recomputed.
    """
    sw = open_sweep(checkpoints, corpus, config, out, tokenizer, sequence_values, resume, device)
    fn = analyze_fn or analyze
    status = [screen(sw, c, strict) for c in sw.ckpts]  # every checkpoint checked before any compute
    todo, _ = unique_checkpoints(sw, status)
    parts: dict[int, list[dict[str, Any]]] = {}
    metas: dict[str, Any] = {}
    computed: list[str] = []
    for i in todo:
        c = sw.ckpts[i]
        parts[i], metas[c.name], done_now = analyse_one(
            sw, c, status[i]["sha256"], fn, resume, tokenizer=tokenizer, sequence_values=sequence_values,
            device=device, progress=progress)
        if done_now:
            computed.append(c.name)
    return assemble(sw, status, parts, metas, computed)
