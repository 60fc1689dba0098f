"""``analyze(model, corpus, config) -> ProbeResult``: per-layer soft entropy and n-gram/per-text MI of an LM.

Composition (one pass over the model, bounded memory):

1. :func:`prepare`: load the model, cap ``seq_len`` at its context, build the plan
   (:func:`infoplane.probe.plan.prepare_plan`: sample -> tokens -> batches -> label pre-pass);
2. :func:`run_planned`: the memory plan (:mod:`infoplane.probe.memory`: exact state from the label
   pre-pass, layer groups in separate passes to fit ``config.memory_budget``, or a clear refusal), then
   :func:`infoplane.probe.run.run_plan` per pass: one forward per batch, hooks feed the accumulator;
3. ``acc.compute()`` -> :func:`finish`: tidy rows (one per layer x label set) ->
   :func:`infoplane.plane.plane_table` -> :class:`~infoplane.probe.result.ProbeResult` with metadata.

:func:`infoplane.probe.distributed.analyze_distributed` composes the same three steps with a shard of the
batches and an accumulator sync in between.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infoplane.estimators.memory import MemoryPlan
from infoplane.io import check_output_dir, versions
from infoplane.plane import plane_table
from infoplane.probe.capture import _accepts, find_hidden_sites, hidden_dims
from infoplane.probe.config import ProbeConfig
from infoplane.probe.memory import plan_memory
from infoplane.probe.models import LoadedModel, check_device, load_model
from infoplane.probe.plan import ProbePlan, prepare_plan
from infoplane.probe.result import ProbeResult, result_rows
from infoplane.probe.run import ProbeRun, run_plan

__all__ = ["analyze", "prepare", "run_planned", "finish", "PreparedProbe", "model_context_length",
           "model_vocab_size"]


@dataclass
class PreparedProbe:
    """A loaded model and its plan, ready to run: ``config`` is the effective configuration (``seq_len``
    capped at the model's context); ``name``/``step`` fill the ``model``/``step`` columns."""

    loaded: LoadedModel
    config: ProbeConfig
    plan: ProbePlan
    name: str
    step: int | None
    t_start: float

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model


def model_context_length(model: torch.nn.Module) -> int | None:
    """The longest input the model accepts (HF ``max_position_embeddings``/``n_positions``, native
    ``block_size``), or None when the model declares no limit."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "block_size"):
        value = getattr(config, key, None) if config is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_vocab_size(model: torch.nn.Module) -> int | None:
    """Rows of the input embedding (``get_input_embeddings()``), else ``config.vocab_size``; None if
    neither is declared."""
    get = getattr(model, "get_input_embeddings", None)
    try:
        emb = get() if callable(get) else None
    except NotImplementedError:
        emb = None
    if isinstance(emb, torch.nn.Embedding):
        return int(emb.num_embeddings)
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return value if isinstance(value, int) and value > 0 else None


def _check_token_ids(plan: ProbePlan, vocab: int | None, model_id: str) -> None:
    """Every forwarded token id must index the embedding (an IndexError deep in the forward otherwise)."""
    if vocab is None:
        return
    bad = [((b.input_ids < 0) | (b.input_ids >= vocab)) & b.attention_mask.bool() for b in plan.batches]
    n_bad = sum(int(x.sum()) for x in bad)
    if n_bad == 0:
        return
    k = next(i for i, x in enumerate(bad) if bool(x.any()))
    b = plan.batches[k]
    row, t = torch.nonzero(bad[k], as_tuple=False)[0].tolist()
    text = b.text_indices[row] if b.text_indices is not None else row
    raise ValueError(f"token id {int(b.input_ids[row, t])} (text {text}, position {t}) is outside the "
                     f"vocabulary of model {model_id!r}, which has {vocab} ids (0..{vocab - 1}); {n_bad} "
                     "token(s) are out of range. The corpus was tokenised for another model: pass this "
                     "model's tokenizer, or token ids of this model")


def _default_name(loaded: LoadedModel) -> str:
    if loaded.kind == "module":
        return loaded.model_id
    name = Path(loaded.model_id).name
    return name[: -len(".gguf")] if name.endswith(".gguf") else name


def prepare(
    model: str | os.PathLike | torch.nn.Module | LoadedModel,
    corpus: Any,
    config: ProbeConfig | None = None,
    *,
    tokenizer: Any = None,
    sequence_values: Mapping[str, Sequence[Any]] | None = None,
    model_name: str | None = None,
    step: int | None = None,
    device: str | torch.device = "cpu",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> PreparedProbe:
    """Validate, load the model and build the plan (no forward pass yet); arguments as in :func:`analyze`."""
    t_start = time.perf_counter()
    config = ProbeConfig.resolve(config)
    check_device(device)
    loaded = model if isinstance(model, LoadedModel) else load_model(
        model, tokenizer, gguf_file=gguf_file, trust_remote_code=trust_remote_code, device=device)
    tok = tokenizer if tokenizer is not None else loaded.tokenizer
    net = loaded.model
    if config.padding_side == "left" and not _accepts(net.forward, "attention_mask"):
        raise ValueError(f"{type(net).__name__}.forward takes no attention_mask: only right padding is valid")
    pad_id = 0
    if tok is not None and getattr(tok, "pad_token_id", None) is not None:
        pad_id = int(tok.pad_token_id)
    context = model_context_length(net)
    if context is not None and config.seq_len > context:  # never more positions than the model was built for
        warnings.warn(f"seq_len={config.seq_len} exceeds the model's context length {context}; "
                      f"using {context}", stacklevel=3)
        config = config.replace(seq_len=context)
    plan = prepare_plan(corpus, config, tokenizer=tok, sequence_values=sequence_values, pad_id=pad_id,
                        tokenizer_error=loaded.tokenizer_error)
    _check_token_ids(plan, model_vocab_size(net), loaded.model_id)
    return PreparedProbe(loaded, config, plan, model_name or _default_name(loaded),
                         step if step is not None else loaded.step, t_start)


def run_planned(
    prepared: PreparedProbe,
    indices: list[int] | None = None,
    *,
    progress: bool = True,
    device: str | torch.device = "cpu",
    compute: Callable[[Any], Any] | None = None,
    budget_indices: list[int] | None = None,
    budget: int | None = None,
) -> tuple[ProbeRun, Any, MemoryPlan]:
    """Plan the memory, then run one pass per layer group and join the per-pass results.

    The plan (:func:`infoplane.probe.memory.plan_memory`) uses the exact label-row counts of the batches
    at ``budget_indices`` (default: ``indices``, i.e. the batches this process forwards); a ValueError is
    raised before any forward when one layer per pass does not fit. ``compute(acc)`` finalises one pass
    (default ``acc.compute()``); ``budget`` overrides ``config.memory_budget``. Returns the joined run (all
    sites, summed forward time), the joined ``SoftEntropyResult`` and the plan; the plan is printed to
    stderr when ``progress``.
    """
    from infoplane.estimators.result import concat_layers

    model = prepared.model
    param = next(model.parameters(), None)
    fwd_device = param.device if param is not None else torch.device(device)
    sites = find_hidden_sites(model)
    dims = hidden_dims(model, sites, fwd_device)
    mplan = plan_memory(prepared.plan, len(sites), dims[0], fwd_device,
                        indices=budget_indices if budget_indices is not None else indices, budget=budget)
    if progress:
        print(mplan.describe(), file=sys.stderr)
    finalise = compute or (lambda acc: acc.compute())
    runs, parts = [], []
    for k, group in enumerate(mplan.groups):
        desc = prepared.name if mplan.n_passes == 1 else f"{prepared.name} [pass {k + 1}/{mplan.n_passes}]"
        run = run_plan(prepared.plan, model, indices, progress=progress, desc=desc,
                       layers=None if mplan.n_passes == 1 else group, row_counts=mplan.row_counts)
        parts.append(finalise(run.accumulator))
        runs.append(run)
        if mplan.n_passes > 1:
            run.accumulator = None  # free this pass's state before the next one
    joined = runs[0] if len(runs) == 1 else ProbeRun(runs[-1].accumulator, sites, dims[0],
                                                      runs[0].batch_indices, sum(r.seconds for r in runs))
    return joined, (parts[0] if len(parts) == 1 else concat_layers(parts)), mplan


def finish(prepared: PreparedProbe, run: ProbeRun, result: Any,
           shard: tuple[int, int] | None = None) -> ProbeResult:
    """Rows, plane table and metadata from the accumulator's ``result`` (a ``SoftEntropyResult``)."""
    plan, cfg, loaded = prepared.plan, prepared.config, prepared.loaded
    rows = result_rows(result, prepared.name, prepared.step)
    metadata = {
        "model": prepared.name, "model_id": loaded.model_id, "model_kind": loaded.kind,
        "weights_sha256": loaded.weights_sha256, "step": prepared.step,
        "corpus_source": plan.corpus_source, "corpus_fingerprint": plan.corpus_fingerprint,
        "n_texts": plan.n_texts, "tokens_forwarded": plan.tokens_forwarded, "n_samples": plan.n_samples,
        "orders": list(plan.orders), "sequence_labels": plan.sequence_labels, "label_stats": plan.label_stats,
        "seq_len": cfg.seq_len, "batch_size": cfg.batch_size, "max_tokens": cfg.max_tokens,
        "padding_side": cfg.padding_side,
        "seed": cfg.seed, "n_bins": int(result.n_bins), "temperature": float(result.temperature),
        "calibration": cfg.calibration if cfg.temperature is None else "given",
        "reference_hash": result.reference_hash,
        "hidden_dim": run.hidden_dim, "n_hidden_states": run.n_hidden_states,
        "hidden_sites": [s.name for s in run.sites],
        "null": cfg.null, "min_count": cfg.min_count, "shard": list(shard) if shard else None,
        "all_layers_update": cfg.all_layers_update, "zero_policy": cfg.zero_policy,
        "n_skipped_zero": [int(x) for x in result.n_skipped_zero],
        "forward_seconds": round(run.seconds, 3),
        "total_seconds": round(time.perf_counter() - prepared.t_start, 3),
        "versions": versions(),
    }
    skipped = metadata["n_skipped_zero"]
    if any(skipped):
        warnings.warn(f"{prepared.name}: skipped {sum(skipped)} position(s) whose hidden state is exactly "
                      f"zero (zero_policy='skip'), per hidden state {skipped}; those hidden states are "
                      "measured on fewer samples (n_skipped_zero in the metadata)", stacklevel=3)
    return ProbeResult(rows, plane_table(rows), metadata)


def analyze(
    model: str | os.PathLike | torch.nn.Module | LoadedModel,
    corpus: Any = "kjv",
    config: ProbeConfig | None = None,
    *,
    tokenizer: Any = None,
    sequence_values: Mapping[str, Sequence[Any]] | None = None,
    model_name: str | None = None,
    step: int | None = None,
    device: str | torch.device = "cpu",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    out: str | os.PathLike | None = None,
) -> ProbeResult:
    """Soft entropy H(Z), I(X_n; Z), I(Z; Y_n) and per-sequence-label MI of every hidden state of ``model``
    (Conklin et al. 2026, sec. 2).

    Args:
        model: a path (HF directory, ``.gguf`` file, native checkpoint), ``"smollm2"``, an ``nn.Module``
            (then pass ``tokenizer`` unless ``corpus`` holds token ids) or a :class:`LoadedModel`.
        corpus: see :func:`~infoplane.probe.plan.prepare_plan` (texts, a corpus name/path, token ids or an
            ``input_ids`` mapping).
        config: every probe setting (:class:`~infoplane.probe.config.ProbeConfig`; None = defaults).
        tokenizer: for texts, when the model does not ship one.
        sequence_values: per-sequence label values for token-id input (``name -> [one per sequence]``).
        model_name, step: values of the ``model`` and ``step`` columns (default: file name / known step).
        device: where a model loaded from a path is put (a given module stays where it is).
        gguf_file, trust_remote_code: loading options for HF directories.
        progress: show a progress bar.
        out: if given, results are written there (``probe.csv``, ``probe_plane.csv``, ``probe.json``); a
            file or an unwritable directory is refused before the model is loaded.
    Returns:
        :class:`~infoplane.probe.result.ProbeResult` (values normalised by log m, as in the paper).
    """
    if out is not None:
        check_output_dir(out, "out")
    prepared = prepare(model, corpus, config, tokenizer=tokenizer, sequence_values=sequence_values,
                       model_name=model_name, step=step, device=device, gguf_file=gguf_file,
                       trust_remote_code=trust_remote_code)
    run, result, mplan = run_planned(prepared, progress=progress, device=device)
    res = finish(prepared, run, result)
    res.metadata["memory_plan"] = mplan.to_dict()
    if out is not None:
        res.save(out)
    return res
