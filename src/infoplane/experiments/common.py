"""Shared machinery of the reproduction experiments: config hashing, resumable runs, statistics, progress.

Layout of an output directory ``DIR`` (one per ``infoplane reproduce`` invocation):

* ``DIR/results/<name>.json``  summary of experiment ``<name>`` (config, per-seed measurements, claims data)
* ``DIR/results/<name>_*.csv``  tidy tables (one row per seed/arm/step/layer ...)
* ``DIR/results/<name>.done.json``  done-marker: config hash, wall time, versions, seeds, finish time
* ``DIR/runs/<name>/...``  bulky intermediates (checkpoints, training logs)
* ``DIR/figures/`` and ``DIR/report.html``  written by :mod:`infoplane.report.build` from results files only

A finished experiment is skipped on a rerun when its done-marker's config hash equals the hash of the
current config and the marker's ``inputs`` (a hash of each dependency's summary file, see
:func:`dependency_hashes`) equal the current ones, so a result goes stale when a result it was computed from
changes or appears. A result that carries a ``skipped_reason`` (it could not run, e.g. a dependency or an
optional model was missing) gets no marker: it is tried again on every rerun. Every results file is written
atomically (:mod:`infoplane.io`), an old marker is removed before and the new one written last, so an
interrupted run leaves either a complete result or none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infoplane.io import atomic_write_json, read_json, versions

__all__ = [
    "kjv_run_config",
    "config_dict",
    "config_hash",
    "seed_everything",
    "summarize",
    "relative_change",
    "ExperimentPaths",
    "dependency_hashes",
    "is_done",
    "run_experiment",
    "Progress",
]


def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain JSON-able dict (tuples become lists)."""
    if not dataclasses.is_dataclass(cfg):
        raise ValueError(f"expected a dataclass config, got {type(cfg).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_hash(cfg: Any) -> str:
    """SHA-256 (first 16 hex digits) of the config's canonical JSON plus its class name."""
    payload = json.dumps({"class": type(cfg).__name__, "config": config_dict(cfg)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch global RNGs; return a fresh ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Mean, sample std (ddof=1), standard error, min, max and count of finite ``values``.

    With one value std and se are NaN (spread unknown); with none everything is NaN and n = 0.
    """
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "se": nan, "min": nan, "max": nan, "n": 0}
    std = float(v.std(ddof=1)) if n > 1 else float("nan")
    return {"mean": float(v.mean()), "std": std, "se": std / math.sqrt(n) if n > 1 else float("nan"),
            "min": float(v.min()), "max": float(v.max()), "n": n}


def relative_change(treatment: float, baseline: float) -> float:
    """(treatment - baseline) / |baseline| (NaN when the baseline is 0 or non-finite)."""
    if not math.isfinite(baseline) or baseline == 0 or not math.isfinite(treatment):
        return float("nan")
    return (treatment - baseline) / abs(baseline)


@dataclasses.dataclass(frozen=True)
class ExperimentPaths:
    """Where experiment ``name`` writes inside output directory ``root``."""

    root: Path
    name: str

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def runs(self) -> Path:
        return self.root / "runs" / self.name

    @property
    def summary(self) -> Path:
        return self.results / f"{self.name}.json"

    @property
    def marker(self) -> Path:
        return self.results / f"{self.name}.done.json"

    def table(self, suffix: str) -> Path:
        return self.results / f"{self.name}_{suffix}.csv"


class Progress:
    """Line-oriented progress messages on stderr (``[  12.3s] name: message``); silent when disabled."""

    def __init__(self, name: str, enabled: bool = True, stream=None) -> None:
        self.name, self.enabled, self.t0 = name, enabled, time.perf_counter()
        self.stream = stream or sys.stderr

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:7.1f}s] {self.name}: {msg}", file=self.stream, flush=True)


def dependency_hashes(root: str | Path, depends_on: Sequence[str]) -> dict[str, str | None]:
    """``{dependency: SHA-256 (16 hex digits) of results/<dependency>.json}``, None when it is absent."""
    out: dict[str, str | None] = {}
    for dep in depends_on:
        p = ExperimentPaths(Path(root), dep).summary
        out[dep] = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else None
    return out


def is_done(root: str | Path, name: str, cfg: Any, depends_on: Sequence[str] = ()) -> bool:
    """True when ``root`` holds a finished result of experiment ``name`` for exactly this config, computed
    from the current results of the experiments in ``depends_on``."""
    paths = ExperimentPaths(Path(root), name)
    if not paths.marker.exists() or not paths.summary.exists():
        return False
    try:
        marker = read_json(paths.marker)
    except (OSError, ValueError):
        return False
    return (marker.get("config_hash") == config_hash(cfg)
            and marker.get("inputs", {}) == dependency_hashes(root, depends_on))


def _seeds_of(cfg: Any) -> list[int]:
    d = config_dict(cfg)
    if "seeds" in d:
        return [int(s) for s in d["seeds"]]
    if "seed" in d:
        return [int(d["seed"])]
    return []


def run_experiment(name: str, cfg: Any, root: str | Path,
                   fn: Callable[[Any, ExperimentPaths, Progress], dict[str, Any]],
                   force: bool = False, progress: bool = True, *,
                   depends_on: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``fn(cfg, paths, progress) -> summary`` unless a finished result with the same config (and the same
    results of the experiments in ``depends_on``, see :func:`is_done`) exists.

    The summary (a JSON-able dict) is augmented with ``name``, ``config``, ``config_hash``, ``seeds``,
    ``versions``, ``wall_time_s`` and written to ``results/<name>.json``; then the done-marker. Returns the
    summary (read back from disk when skipped). ``summary["skipped_reason"]`` (set by ``fn``) marks an
    experiment that could not run (e.g. a dependency or an optional model missing): its summary is written
    (the report shows the reason) but no done-marker, so the next run tries again.
    """
    root = Path(root)
    paths = ExperimentPaths(root, name)
    log = Progress(name, enabled=progress)
    if not force and is_done(root, name, cfg, depends_on):
        log("finished result with the same config found; skipping")
        out = read_json(paths.summary)
        out["resumed"] = True
        return out
    paths.results.mkdir(parents=True, exist_ok=True)
    paths.runs.mkdir(parents=True, exist_ok=True)
    paths.marker.unlink(missing_ok=True)  # the old result is about to be replaced
    inputs = dependency_hashes(root, depends_on)  # what this result is computed from
    log(f"starting (config {config_hash(cfg)})")
    t0, c0 = time.perf_counter(), time.process_time()
    summary = fn(cfg, paths, log)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = dict(summary)
    summary.update({
        "name": name,
        "config_class": type(cfg).__name__,
        "config": config_dict(cfg),
        "config_hash": config_hash(cfg),
        "seeds": _seeds_of(cfg),
        "versions": versions(),
        "wall_time_s": wall,
        "cpu_time_s": cpu,
        "torch_threads": torch.get_num_threads(),
    })
    atomic_write_json(paths.summary, summary)
    if summary.get("skipped_reason"):
        log(f"not run ({summary['skipped_reason']}); no done-marker, so the next run tries again")
    else:
        marker = {"config_hash": config_hash(cfg), "wall_time_s": wall, "cpu_time_s": cpu,
                  "seeds": _seeds_of(cfg), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "versions": versions()}
        if depends_on:
            marker["inputs"] = inputs
        atomic_write_json(paths.marker, marker)
        log(f"done in {wall:.1f}s")
    summary["resumed"] = False
    return summary


def fresh_dir(path: str | Path) -> Path:
    """Remove ``path`` (a run directory under ``DIR/runs/<experiment>/``) if it exists and recreate it empty,
    so that a rerun never mixes its checkpoints with those of an interrupted or differently configured run."""
    import shutil

    p = Path(path)
    if p.exists():
        shutil.rmtree(p)
    p.mkdir(parents=True)
    return p


def kjv_run_config(cfg: Any, *, seed: int, out_dir: str | Path, objective: Any, model: Any = None,
                   **fields: Any) -> Any:
    """The :class:`~infoplane.train.config.TrainConfig` of one compact-GPT run on the embedded KJV corpus.

    Read from the experiment config ``cfg``: ``tokenizer``, ``val_fraction``, ``steps``, ``batch_size``,
    ``lr``, ``warmup_steps``, ``num_threads`` (if it has one) and, unless ``model`` (a ``GPTConfig``) is
    given, the model shape ``n_layer`` x ``n_head`` x ``d_model`` with context ``block_size``. The run
    validates only at the end (``eval_every=0``, one batch), keeps only its final checkpoint and shows no
    progress bar; any ``fields`` (TrainConfig field names: ``controller``, ``schedule``, ``grad_accum``, ...)
    override these.
    """
    from infoplane.train.config import TrainConfig
    from infoplane.train.model import GPTConfig

    if model is None:
        model = GPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model,
                          block_size=cfg.block_size)
    base: dict[str, Any] = {
        "corpus": "kjv", "tokenizer": cfg.tokenizer, "val_fraction": cfg.val_fraction, "model": model,
        "objective": objective, "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
        "warmup_steps": cfg.warmup_steps, "eval_every": 0, "eval_batches": 1, "checkpoint_steps": "final",
        "seed": seed, "out_dir": str(out_dir), "progress": False,
        "num_threads": getattr(cfg, "num_threads", None),
    }
    return TrainConfig(**{**base, **fields})


def mean_over(rows: Sequence[dict[str, Any]], key: str, **where: Any) -> float:
    """Mean of ``row[key]`` over rows matching all ``where`` items (NaN when none)."""
    vals = [float(r[key]) for r in rows if all(r.get(k) == v for k, v in where.items())]
    return float(np.mean(vals)) if vals else float("nan")


_LM_DATA_CACHE: dict[tuple, Any] = {}


def lm_data(tokenizer: str = "bpe:512", val_fraction: float = 0.05, seed: int = 0, corpus: str = "kjv"):
    """``(tokenizer, TokenSplits, val_texts)`` of the embedded corpus, built once per process and reused.

    The document split and the tokenizer depend only on these arguments (not on a run's model seed), so all
    arms and seeds of an experiment see identical data.
    """
    key = (tokenizer, val_fraction, seed, corpus)
    if key not in _LM_DATA_CACHE:
        from infoplane.data.corpus import load_corpus
        from infoplane.data.lm_data import prepare_lm_data, split_documents

        tok, splits = prepare_lm_data(corpus, tokenizer, val_fraction, seed)
        texts = load_corpus(corpus).texts
        _, va = split_documents(len(texts), val_fraction, seed)
        _LM_DATA_CACHE[key] = (tok, splits, [texts[i] for i in va])
    return _LM_DATA_CACHE[key]
