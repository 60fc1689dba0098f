"""``InfoPlaneMonitor``: the information plane while a model trains, every ``every`` optimiser steps.

The probe is :func:`~infoplane.probe.analyze.analyze`'s, composed from the same parts: the plan
(:func:`infoplane.probe.analyze.prepare` -> :func:`~infoplane.probe.plan.prepare_plan`: a fixed, seeded,
held-out probe set, tokenised and labelled ONCE), the memory plan
(:func:`~infoplane.probe.memory.plan_memory`), the forward hooks and accumulator
(:func:`~infoplane.probe.run.run_plan`), then :func:`~infoplane.probe.result.result_rows` ->
:func:`infoplane.plane.plane_table`. So a monitored step gives the rows ``analyze`` gives for a
checkpoint of the same weights with the same :class:`ProbeConfig`.

Each probe appends tidy rows to ``out_dir/plane_monitor.csv`` (one per (step, hidden state, n) plus the layer
means, :data:`MONITOR_COLUMNS` first): H(Z), complexity I(X_n;Z), expressivity I(Z;Y_n), their permutation
nulls, optimality (Conklin et al. 2026, sec. 2; all divided by log m) and ``mbe``, the matrix-based Renyi-2
entropy (nats) of the same analysed hidden states ``[N, d]`` (Yu 2025, sec. 3; mod_gpt ``src/mbe.py``
``OnlineMBE``). The table is rewritten atomically after every probe; ``plane_monitor.json`` holds the
settings, the probe set's fingerprint and the seconds of each probe.

Two ways to attach it:

* native trainer: ``Trainer(cfg, callbacks=[monitor])`` (``monitor(trainer, record)`` after every step; the
  default probe set is the run's held-out split; the record gets ``monitor_seconds`` on probed steps);
* ``transformers.Trainer``: ``Trainer(..., callbacks=[monitor])`` (``on_train_begin`` / ``on_step_end`` /
  ``on_evaluate``; hidden states come from the probe's hooks on ``model``; pass ``corpus``).

Resume: when a run resumes at step ``s`` the monitor keeps the table's rows with ``step <= s`` and continues,
so the table has neither duplicates nor gaps. A fresh run (step 0) replaces a table left in ``out_dir``
(except rows this monitor wrote itself, e.g. ``monitor.probe(model, 0)`` before training). Only rank 0 probes.
The probe runs in eval mode under ``torch.no_grad`` and restores the model's mode and the global RNG state,
so training is unchanged by it.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from infoplane.estimators.matrix import OnlineMatrixEntropy
from infoplane.io import atomic_write_csv, atomic_write_json, read_csv, read_json, versions
from infoplane.plane import PLANE_COLUMNS, plane_table
from infoplane.probe.analyze import PreparedProbe, prepare
from infoplane.probe.capture import find_hidden_sites, hidden_dims
from infoplane.probe.config import ProbeConfig
from infoplane.probe.memory import plan_memory
from infoplane.probe.models import LoadedModel
from infoplane.probe.result import ordered_columns, result_rows
from infoplane.probe.run import make_accumulator, run_plan

__all__ = ["InfoPlaneMonitor", "MONITOR_COLUMNS", "MONITOR_TABLE", "held_out_sequences"]

MONITOR_TABLE = "plane_monitor.csv"
MONITOR_COLUMNS = ["step", "layer", "n", "entropy", "complexity", "expressivity", "complexity_null",
                   "expressivity_null", "optimality", "mbe", "n_samples"]
_COLUMNS = MONITOR_COLUMNS + [c for c in PLANE_COLUMNS if c not in MONITOR_COLUMNS]
# quantities written as TensorBoard scalars (per hidden state and layer mean, per n)
_TB_QUANTITIES = ("entropy", "complexity", "expressivity", "complexity_null", "expressivity_null",
                  "optimality", "mbe")


class _WithMatrixEntropy:
    """The soft-entropy accumulator, plus one :class:`OnlineMatrixEntropy` per hidden state fed with the same
    ``z: [N, d]`` (``[L, N, d]`` for an all-layers update); everything else is delegated to ``inner``."""

    def __init__(self, inner: Any, dim: int, layers: Sequence[int]) -> None:
        self.inner = inner
        self.layers = list(layers)  # hidden-state index of accumulator layer j
        self.mbe = [OnlineMatrixEntropy(dim) for _ in self.layers]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, z: torch.Tensor, labels: Any = None, layer: int | None = None) -> None:
        self.inner.update(z, labels, layer=layer)
        if layer is None:
            for j in range(z.shape[0]):
                self.mbe[j].update(z[j])
        else:
            self.mbe[layer].update(z)

    def matrix_entropies(self) -> dict[int, float]:
        """``{hidden-state index: MBE in nats}`` (alpha = 2, Yu 2025, sec. 3); NaN for all-zero states."""
        out = {}
        for idx, m in zip(self.layers, self.mbe):
            try:
                out[idx] = m.compute(2.0)
            except ValueError:  # no rows, or every row zero: the entropy is undefined
                out[idx] = math.nan
        return out


def _step_of(row: Mapping[str, Any]) -> int:
    return int(row["step"])


class InfoPlaneMonitor:
    """Probe the information plane every ``every`` optimiser steps of a native or Hugging Face training run.

    Args:
        corpus: the probe set, as for :func:`~infoplane.probe.analyze.analyze` (texts, a corpus name/path,
            token-id sequences or an ``input_ids`` mapping); it should be held out from training. None = the
            native trainer's validation split, cut into sequences of ``config.seq_len`` tokens (a
            ``transformers.Trainer`` run needs it given).
        config: every probe setting (:class:`ProbeConfig` or its ``to_dict()``; None = defaults); ``seed``
            fixes the sample of the probe set, the reference points and the null, so every step sees the
            same positions.
        every: probe when the completed optimiser step is a multiple of ``every`` (an int >= 1), or at the
            listed steps (a sequence of distinct ints >= 1, e.g. log-spaced early and dense late).
        tokenizer: for text corpora (default: the HF Trainer's ``processing_class``).
        sequence_values: per-sequence label values for token-id corpora (see ``analyze``).
        out_dir: where the table goes (default: the trainer's ``out_dir`` / ``args.output_dir``).
        table: file name of the table (``plane_monitor.csv``); its metadata goes next to it as ``.json``.
        model_name: value of the ``model`` column (default: the model's class name).
        at_end: also probe the run's last step when it is no multiple of ``every``.
        on_evaluate: (``transformers.Trainer``) also probe at every evaluation.
        tensorboard: False, True (a ``SummaryWriter`` in ``out_dir/tb_monitor``) or any object with
            ``add_scalar(tag, value, step)``; scalars ``plane/<quantity>/n<n>/<layer>``.
        mbe: also compute the matrix entropy of the analysed hidden states (column ``mbe``).

    Attributes:
        rows: the table (list of dicts, ascending step); ``seconds``: probe wall time per probed step.
    """

    def __init__(self, corpus: Any = None, config: ProbeConfig | Mapping[str, Any] | None = None, *,
                 every: int | Sequence[int] = 100, tokenizer: Any = None,
                 sequence_values: Mapping[str, Sequence[Any]] | None = None,
                 out_dir: str | os.PathLike | None = None, table: str = MONITOR_TABLE,
                 model_name: str | None = None, at_end: bool = True, on_evaluate: bool = False,
                 tensorboard: Any = False, mbe: bool = True) -> None:
        every = _check_every(every)
        if not isinstance(table, str) or not table.endswith(".csv") or Path(table).name != table:
            raise ValueError(f"InfoPlaneMonitor.table must be a file name ending in .csv, got {table!r}")
        if model_name is not None and not isinstance(model_name, str):
            raise ValueError(f"InfoPlaneMonitor.model_name must be a string or None, got {model_name!r}")
        if not (isinstance(tensorboard, bool) or hasattr(tensorboard, "add_scalar")):
            raise ValueError("InfoPlaneMonitor.tensorboard must be True/False or an object with "
                             f"add_scalar(tag, value, step), got {type(tensorboard).__name__}")
        self.config = (ProbeConfig.from_dict(config) if isinstance(config, Mapping)
                       else ProbeConfig.resolve(config))
        self.corpus = corpus
        self.every = every
        self.tokenizer = tokenizer
        self.sequence_values = sequence_values
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.table = table
        self.model_name = model_name
        self.at_end = bool(at_end)
        self.on_evaluate_probe = bool(on_evaluate)
        self.mbe = bool(mbe)
        self._tb_spec = tensorboard
        self._tb: Any = None
        self.rows: list[dict[str, Any]] = []
        self.seconds: dict[int, float] = {}
        self._prepared: PreparedProbe | None = None
        self._own_steps: set[int] = set()  # steps this monitor probed in this process
        self._owner: Any = None  # the native trainer (or HF state) this monitor is attached to

    # ------------------------------------------------------------------ files
    @property
    def path(self) -> Path:
        """The table's path (``out_dir / table``)."""
        if self.out_dir is None:
            raise ValueError("InfoPlaneMonitor has no out_dir yet: pass out_dir= or attach it to a trainer")
        return self.out_dir / self.table

    @property
    def metadata_path(self) -> Path:
        return self.path.with_suffix(".json")

    def _metadata(self) -> dict[str, Any]:
        p = self._prepared
        plan = p.plan if p is not None else None
        return {
            "table": self.table, "every": self.every, "probe": self.config.to_dict(),
            "model": p.name if p is not None else self.model_name,
            "corpus_source": plan.corpus_source if plan else None,
            "corpus_fingerprint": plan.corpus_fingerprint if plan else None,
            "n_samples": plan.n_samples if plan else None, "n_texts": plan.n_texts if plan else None,
            "tokens_forwarded": plan.tokens_forwarded if plan else None,
            "label_stats": plan.label_stats if plan else None,
            "seq_len": p.config.seq_len if p is not None else None,
            "probe_seconds": {str(k): round(v, 4) for k, v in sorted(self.seconds.items())},
            "versions": versions(),
        }

    def _write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        self.rows.sort(key=_step_of)
        atomic_write_csv(self.path, self.rows, ordered_columns(self.rows, _COLUMNS))
        atomic_write_json(self.metadata_path, self._metadata())

    # ------------------------------------------------------------------ run start / resume
    def begin(self, resumed_step: int, model: torch.nn.Module, *, out_dir: str | os.PathLike | None = None,
              default_corpus: Any = None, tokenizer: Any = None) -> None:
        """Start (``resumed_step == 0``) or resume a run at ``resumed_step`` completed optimiser steps:
        prepare the probe set once, then keep the table's rows with ``step <= resumed_step`` and rewrite it.

        Raises:
            ValueError: no probe set, or an existing table was written with other probe settings or another
                probe set (it is never mixed with new rows).
        """
        if self.out_dir is None:
            if out_dir is None:
                raise ValueError("InfoPlaneMonitor needs out_dir= (no trainer output directory was given)")
            self.out_dir = Path(out_dir)
        self._ensure_prepared(model, default_corpus, tokenizer)
        kept = [r for r in self.rows if r["step"] in self._own_steps]
        if resumed_step > 0 and self.path.is_file():
            self._check_compatible()
            kept = [r for r in read_csv(self.path) if _step_of(r) <= resumed_step]
            old = read_json(self.metadata_path).get("probe_seconds", {})
            self.seconds = {int(k): float(v) for k, v in old.items() if int(k) <= resumed_step}
        else:
            self.seconds = {k: v for k, v in self.seconds.items() if k in self._own_steps}
        self.rows = kept
        self._write()

    def _check_compatible(self) -> None:
        if not self.metadata_path.is_file():
            raise ValueError(f"{str(self.path)!r} has no {self.metadata_path.name} beside it: cannot tell "
                             "which probe settings wrote it; remove the table or choose another table= name")
        old = read_json(self.metadata_path)
        new = self._metadata()
        diff = [k for k in ("probe", "corpus_fingerprint", "n_samples", "every")
                if old.get(k) != new.get(k) and not (k == "probe" and _same_probe(old.get(k), new.get(k)))]
        if diff:
            raise ValueError(f"{str(self.path)!r} was written with other monitor settings "
                             f"({', '.join(diff)}: {[old.get(k) for k in diff]} there, "
                             f"{[new.get(k) for k in diff]} now); resume with the same monitor settings, "
                             "or choose another table= name")

    def _ensure_prepared(self, model: torch.nn.Module, default_corpus: Any, tokenizer: Any) -> None:
        if self._prepared is not None:
            return
        corpus = self.corpus if self.corpus is not None else default_corpus
        if corpus is None:
            raise ValueError("InfoPlaneMonitor needs a probe set: pass corpus= (texts, token-id sequences or "
                             "an input_ids mapping held out from training)")
        tok = self.tokenizer if self.tokenizer is not None else tokenizer
        name = self.model_name or type(model).__name__
        # a LoadedModel as is: load_model() would switch the training model to eval mode and hash its weights
        loaded = LoadedModel(model, tok, name, "", "module")
        self._prepared = prepare(loaded, corpus, self.config, tokenizer=tok,
                                 sequence_values=self.sequence_values, model_name=name)

    # ------------------------------------------------------------------ the probe
    def probe(self, model: torch.nn.Module, step: int) -> list[dict[str, Any]]:
        """Probe ``model`` now as step ``step`` (replacing that step's rows) and rewrite the table; returns
        the new rows. Usable without a trainer (e.g. step 0 before training) once ``out_dir`` is known."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        if self.out_dir is None:
            raise ValueError("InfoPlaneMonitor.probe needs out_dir= (given to the monitor)")
        self._ensure_prepared(model, None, None)
        t0 = time.perf_counter()
        result, mbe = self._measure(model)
        rows = plane_table(result_rows(result, self._prepared.name, step))  # type: ignore[union-attr]
        n_samples = self._prepared.plan.n_samples  # type: ignore[union-attr]
        for r in rows:
            r["n_samples"] = n_samples
            if self.mbe:
                r["mbe"] = _mean_excl_embedding(mbe) if r["layer"] == "mean" else mbe.get(int(r["layer"]))
        self.seconds[step] = time.perf_counter() - t0
        self._own_steps.add(step)
        self.rows = [r for r in self.rows if _step_of(r) != step] + rows
        self._write()
        self._tensorboard(rows, step)
        return rows

    def _measure(self, model: torch.nn.Module) -> tuple[Any, dict[int, float]]:
        """One pass per layer group of the memory plan (as :func:`~infoplane.probe.analyze.run_planned`),
        with the model in eval mode and the global RNG state restored afterwards; the probe batches are moved
        to the device of the model's parameters."""
        from infoplane.estimators.result import concat_layers

        plan = self._prepared.plan  # type: ignore[union-attr]
        # the probe batches go where the model's parameters are (the native trainer's ``trainer.device``,
        # e.g. ``cuda:N``); a parameterless model runs on CPU
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        was_training = model.training
        parts, mbe = [], {}
        with torch.random.fork_rng(devices=rng_devices):
            model.eval()
            try:
                sites = find_hidden_sites(model)
                dims = hidden_dims(model, sites, device)
                mplan = plan_memory(plan, len(sites), dims[0], device)
                for group in mplan.groups:
                    layers = None if mplan.n_passes == 1 else list(group)
                    inner = make_accumulator(plan.config, dims[0], len(group))
                    acc = _WithMatrixEntropy(inner, dims[0], list(group)) if self.mbe else inner
                    run_plan(plan, model, progress=False, accumulator=acc, layers=layers,
                             row_counts=mplan.row_counts, device=device)
                    parts.append(inner.compute())
                    if self.mbe:
                        mbe.update(acc.matrix_entropies())
            finally:
                model.train(was_training)
        return (parts[0] if len(parts) == 1 else concat_layers(parts)), mbe

    def _tensorboard(self, rows: list[dict[str, Any]], step: int) -> None:
        if self._tb_spec is False:
            return
        if self._tb is None:
            if self._tb_spec is True:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    warnings.warn("InfoPlaneMonitor(tensorboard=True) but tensorboard is not installed; "
                                  "continuing without scalars", RuntimeWarning, stacklevel=3)
                    self._tb_spec = False
                    return
                self._tb = SummaryWriter(str(self.out_dir / "tb_monitor"))  # type: ignore[operator]
            else:
                self._tb = self._tb_spec
        for r in rows:
            where = "mean" if r["layer"] == "mean" else f"layer{int(r['layer'])}"
            for q in _TB_QUANTITIES:
                v = r.get(q)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(f"plane/{q}/n{r['n']}/{where}", float(v), step)

    def _due(self, step: int, last_step: int | None) -> bool:
        due = step in self.every if isinstance(self.every, list) else step % self.every == 0
        return due or (self.at_end and last_step is not None and step == last_step)

    # ------------------------------------------------------------------ native trainer
    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        """Callback of :class:`infoplane.train.trainer.Trainer`: after every step; probes due steps and adds
        ``monitor_seconds`` to their log record."""
        if getattr(trainer, "rank", 0) != 0:
            return
        step = int(record["step"])
        if self._owner is not trainer:
            self._owner = trainer
            self.begin(step - 1, trainer.model, out_dir=trainer.out_dir,
                       default_corpus=held_out_sequences(trainer, self.config))
        if self._due(step, int(trainer.config.steps)):
            self.probe(trainer.model, step)
            record["monitor_seconds"] = self.seconds[step]

    # ------------------------------------------------------------------ transformers.TrainerCallback
    def __getattr__(self, name: str) -> Any:  # every other TrainerCallback event is a no-op
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       processing_class: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._owner = state
        self.begin(int(state.global_step), model, out_dir=args.output_dir, tokenizer=processing_class)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and self._due(int(state.global_step), int(state.max_steps)):
            self.probe(model, int(state.global_step))

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        step = int(state.global_step)
        if self.on_evaluate_probe and state.is_world_process_zero and step not in self.seconds:
            self.probe(model, step)


def _check_every(every: Any) -> int | list[int]:
    """An int >= 1 as is; a sequence of distinct ints >= 1 as a sorted list; else a ValueError."""
    def ok(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, int) and v >= 1

    if ok(every):
        return int(every)
    if isinstance(every, Sequence) and not isinstance(every, str) and every and all(ok(v) for v in every):
        steps = sorted(int(v) for v in every)
        if len(set(steps)) == len(steps):
            return steps
    raise ValueError("InfoPlaneMonitor.every must be an integer >= 1 (probe every k optimiser steps) or a "
                     f"non-empty sequence of distinct integers >= 1 (the steps to probe), got {every!r}")


def _same_probe(a: Any, b: Any) -> bool:
    """Probe settings equal up to ``memory_budget`` (which never changes the results)."""
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        return False
    strip = ("memory_budget",)
    norm = [{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items() if k not in strip}
            for d in (a, b)]
    return norm[0] == norm[1]


def _mean_excl_embedding(mbe: Mapping[int, float]) -> float | None:
    """Plain mean over hidden states >= 1, as the plane's layer means (embedding excluded)."""
    vals = [v for k, v in mbe.items() if k >= 1]
    return sum(vals) / len(vals) if vals else None


def held_out_sequences(trainer: Any, config: ProbeConfig) -> list[list[int]]:
    """The native trainer's validation tokens cut into consecutive sequences of ``seq_len`` tokens (capped at
    the model's ``block_size``); the plan samples them with ``config.seed``."""
    splits = getattr(trainer, "splits", None)
    val = getattr(splits, "val", None)
    length = min(config.seq_len, int(trainer.config.block_size))
    if val is None or val.numel() < length:
        raise ValueError(f"the run has {0 if val is None else val.numel()} held-out tokens, fewer than one "
                         f"probe sequence of {length}: pass corpus= to InfoPlaneMonitor")
    ids = val.tolist()
    return [ids[i:i + length] for i in range(0, len(ids) - length + 1, length)]
