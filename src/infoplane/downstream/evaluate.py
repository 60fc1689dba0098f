"""Evaluate a model on the local task suite through lm-evaluation-harness 0.4, offline, and read its results.

* :func:`evaluate`: ``lm_eval.simple_evaluate`` on tasks loaded by ``TaskManager(include_path=...)`` from a
  suite folder (:mod:`infoplane.downstream.tasks`); the suite's YAMLs name their JSONL relative to the
  folder, so they are copied into a temporary include folder with absolute paths first. Datasets load
  through ``datasets``' ``json`` builder with ``HF_DATASETS_OFFLINE=1``: nothing is downloaded.
* :func:`write_results`: the results in lm-eval's own file format (``results_<date>.json`` as its
  ``EvaluationTracker`` writes it: ``results``, ``configs``, ``versions``, ``n-shot``, ``config``,
  ``model_name``), read back by :func:`read_results` and ``infoplane correlate``.
* :func:`native_lm` / :func:`hf_lm`: the lm-eval model of a native checkpoint or an HF model object.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_SUITE", "evaluate", "native_lm", "hf_lm", "write_results", "read_results",
           "aggregate_score", "PRIMARY_METRICS"]

DEFAULT_SUITE = Path(__file__).resolve().parent / "suite"
# task -> (metric key in lm-eval's results, higher is better): the score each task contributes
PRIMARY_METRICS: dict[str, tuple[str, bool]] = {
    "infoplane_brown_ppl": ("bits_per_byte,none", False),
    "infoplane_brown_cloze": ("acc,none", True),
    "infoplane_brown_pairs": ("acc,none", True),
    "infoplane_arith_exact": ("exact_match,none", True),
}


def _offline() -> None:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _include_dir(suite: Path, tasks: Sequence[str], tmp: Path) -> Path:
    """Copy the suite's YAMLs to ``tmp`` with ``data_files`` made absolute (lm-eval resolves relative paths
    against the working directory, not the YAML)."""
    for name in tasks:
        src = suite / f"{name}.yaml"
        if not src.is_file():
            avail = sorted(p.stem for p in suite.glob("*.yaml"))
            raise ValueError(f"task {name!r} not in suite {str(suite)!r}: available {avail}")
        text = src.read_text(encoding="utf-8")
        data = (suite / f"{name}.jsonl").resolve()
        if not data.is_file():
            raise FileNotFoundError(f"task {name!r}: data file {str(data)!r} missing")
        quoted = json.dumps(str(data))
        pattern = rf"(\n\s+test:\s*){re.escape(name)}\.jsonl"
        text, n = re.subn(pattern, lambda m, q=quoted: m.group(1) + q, text)
        if n != 1:
            raise ValueError(f"{src}: expected one 'test: {name}.jsonl' data file entry")
        (tmp / src.name).write_text(text, encoding="utf-8")
    return tmp


def native_lm(model: Any, tokenizer: Any = None, **kwargs: Any) -> Any:
    """:class:`~infoplane.downstream.lm.NativeLM` of a GPT / NativeCausalLM, or of a checkpoint directory
    (its saved tokenizer is used unless ``tokenizer`` is given)."""
    from .lm import NativeLM

    if isinstance(model, (str, os.PathLike)):
        from infoplane.train.checkpoint import load_causal_lm

        model, saved = load_causal_lm(model)
        tokenizer = tokenizer if tokenizer is not None else saved
    if tokenizer is None:
        raise ValueError("a native model needs its tokenizer: pass tokenizer= (none was saved with it)")
    return NativeLM(model, tokenizer, **kwargs)


def hf_lm(model: Any, tokenizer: Any, *, batch_size: int = 8, **kwargs: Any) -> Any:
    """lm-eval's ``HFLM(pretrained=model_object, tokenizer=...)`` of a loaded transformers model."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **kwargs)


def evaluate(lm: Any, *, suite: str | os.PathLike | None = None, tasks: Sequence[str] | None = None,
             limit: int | None = None, seed: int = 0, bootstrap_iters: int = 0,
             log_samples: bool = False) -> dict[str, Any]:
    """Run lm-eval on the suite's tasks; returns ``simple_evaluate``'s dict (``results``, ``configs``, ...).

    Args:
        lm: an ``lm_eval.api.model.LM`` (:func:`native_lm`, :func:`hf_lm`).
        suite: folder of task YAMLs + JSONL (default: the suite shipped with the package).
        tasks: task names (default: every YAML in the suite).
        limit: at most this many items per task (testing only).
        seed: lm-eval's random, numpy and torch seeds.
        bootstrap_iters: lm-eval's bootstrap of metric standard errors (0 = off).
    """
    _offline()
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager

    if not isinstance(lm, LM):
        raise ValueError(f"lm must be an lm_eval LM (native_lm(...) or hf_lm(...)), got {type(lm).__name__}")
    suite_dir = Path(suite) if suite is not None else DEFAULT_SUITE
    if not suite_dir.is_dir():
        raise FileNotFoundError(f"task suite folder {str(suite_dir)!r} not found (build it with "
                                "python -m infoplane.downstream.tasks)")
    names = list(tasks) if tasks is not None else sorted(p.stem for p in suite_dir.glob("*.yaml"))
    if not names:
        raise ValueError(f"no tasks: {str(suite_dir)!r} holds no task YAML")
    with tempfile.TemporaryDirectory(prefix="infoplane-tasks-") as tmp:
        tm = TaskManager(include_path=str(_include_dir(suite_dir, names, Path(tmp))), include_defaults=False)
        out = simple_evaluate(model=lm, tasks=names, task_manager=tm, limit=limit, random_seed=seed,
                              numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                              bootstrap_iters=bootstrap_iters, log_samples=log_samples)
    if out is None:
        raise RuntimeError("lm-eval returned no results (a non-zero rank of a distributed run)")
    return out


def write_results(results: Mapping[str, Any], out: str | os.PathLike, *, model_name: str) -> Path:
    """Write ``results`` in lm-eval's output format: ``<out>/results_<date>.json`` (what ``lm_eval
    --output_path`` writes), with ``model_name`` set; ``samples`` are left out. Returns the path."""
    from lm_eval.utils import handle_non_serializable

    from infoplane.io import atomic_write_text

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in results.items() if k != "samples"}
    body["model_name"] = model_name
    stamp = str(body.get("date", "0")).replace(".", "-").replace(":", "-")
    path = d / f"results_{stamp}.json"
    atomic_write_text(path, json.dumps(body, indent=2, default=handle_non_serializable, ensure_ascii=False))
    return path


def _model_of(obj: Mapping[str, Any], path: Path) -> str:
    if obj.get("model_name"):
        return str(obj["model_name"])
    args = (obj.get("config") or {}).get("model_args")
    if isinstance(args, str):
        m = re.search(r"pretrained=([^,]+)", args)
        if m:
            return m.group(1)
    return path.parent.name


def read_results(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Long rows ``model, task, metric, value, stderr, file`` from lm-eval result files (``results_*.json``
    or folders holding them, searched recursively; the newest file of each folder wins). The model name is
    the file's ``model_name``, else ``pretrained=`` of ``config.model_args``, else the folder name."""
    rows: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(path.rglob("results_*.json"))
            if not found:
                raise FileNotFoundError(f"no lm-eval results_*.json under {str(path)!r}")
            newest = {f.parent: f for f in found}  # one model per folder: its newest file (sorted by date)
            files = [newest[k] for k in sorted(newest)]
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"lm-eval results {str(path)!r} not found")
        for f in files:
            try:
                obj = json.loads(f.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{f}: not JSON ({exc.msg})") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("results"), dict):
                raise ValueError(f"{f}: expected lm-eval output with a 'results' object")
            model = _model_of(obj, f)
            for task, metrics in obj["results"].items():
                for key, value in metrics.items():
                    if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                        continue
                    stderr = metrics.get(key.replace(",", "_stderr,", 1))
                    rows.append({"model": model, "task": task, "metric": key, "value": float(value),
                                 "stderr": stderr if isinstance(stderr, (int, float)) else None,
                                 "file": str(f)})
    return rows


def aggregate_score(rows: Iterable[Mapping[str, Any]], *, tasks: Sequence[str] | None = None
                    ) -> dict[str, dict[str, float]]:
    """Per model: each task's primary metric (:data:`PRIMARY_METRICS`) and ``aggregate``, the mean of the
    higher-is-better (accuracy-type) ones, like the leaderboard average of Conklin et al. 2026, sec. 5
    (perplexity stays a column of its own: it is close to the in-domain loss the partial correlations
    control for).

    Returns ``{model: {task: value, ..., "aggregate": mean}}``; a model lacking one of ``tasks`` (default:
    every accuracy-type task any model has) gets no aggregate.
    """
    table: dict[str, dict[str, float]] = {}
    for r in rows:
        spec = PRIMARY_METRICS.get(str(r["task"]))
        if spec is None or r["metric"] != spec[0]:
            continue
        table.setdefault(str(r["model"]), {})[str(r["task"])] = float(r["value"])
    wanted = list(tasks) if tasks is not None else sorted({t for v in table.values() for t in v
                                                           if PRIMARY_METRICS[t][1]})
    for scores in table.values():
        if wanted and all(t in scores for t in wanted):
            scores["aggregate"] = sum(scores[t] for t in wanted) / len(wanted)
    return table
