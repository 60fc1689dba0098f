"""One model of experiment 9 (:mod:`infoplane.experiments.population`) trained, probed and scored.

- :func:`train_model`: a compact GPT of the grid trained with the native trainer (CE, static CE + lambda MBE
  or GAPT) on KJV;
- :func:`measure`: the same measurements for any causal LM on the same held-out text: the information plane
  at token back-off (n = 1) with its permutation null, in-domain held-out CE, layer-mean MBE and effective
  rank of the same hidden states, preference information with the text-level null, and the local suite's
  scores through lm-eval (result file in lm-eval's own format);
- :func:`effective_rank`: exp of the Shannon entropy of the normalised singular values (Roy & Vetterli 2007).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infoplane.experiments.population_config import ModelSpec, PopulationConfig

__all__ = ["effective_rank", "hidden_state_measures", "train_model", "measure", "preference_set",
           "heldout_windows", "layer_mean"]


def effective_rank(z: torch.Tensor) -> float:
    """Effective rank of ``z`` ``[N, d]`` after removing its mean row: ``exp(-sum p_i log p_i)`` with
    ``p_i = s_i / sum s`` over the singular values ``s`` (Roy & Vetterli 2007, eq. 1-2); in
    ``[1, min(N, d)]``."""
    if z.ndim != 2 or min(z.shape) < 1:
        raise ValueError(f"z must be [N, d] with N, d >= 1, got shape {tuple(z.shape)}")
    x = z.double() - z.double().mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    total = float(s.sum())
    if total <= 0:
        return 1.0  # every row equal: one direction at most
    p = s[s > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))  # Roy & Vetterli 2007, eq. 2


def layer_mean(values: Sequence[float]) -> float:
    """Mean over hidden states excluding the embedding output (index 0), as the plane's layer means."""
    v = [float(x) for x in list(values)[1:]]
    return float(np.mean(v)) if v else math.nan


def hidden_state_measures(z: torch.Tensor, groups: np.ndarray, patch_size: int) -> dict[str, Any]:
    """Per hidden state: MBE (mean over patches of ``patch_size`` tokens within each text; Yu 2025 patch MBE)
    and effective rank of all positions; ``z`` ``[L, N, d]``, ``groups`` ``[N]`` text index per position."""
    from infoplane.estimators import patch_matrix_entropy

    mbe, erank = [], []
    bounds = np.flatnonzero(np.diff(groups)) + 1
    spans = list(zip(np.r_[0, bounds], np.r_[bounds, groups.size]))
    for layer in range(z.shape[0]):
        vals = [patch_matrix_entropy(z[layer, a:b][None], patch_size=patch_size, remainder="drop_start",
                                     reduction="none").flatten() for a, b in spans if b - a >= patch_size]
        mbe.append(float(torch.cat(vals).mean()) if vals else math.nan)
        erank.append(effective_rank(z[layer]))
    return {"mbe_layers": mbe, "erank_layers": erank, "mbe": layer_mean(mbe), "erank": layer_mean(erank)}


def heldout_windows(cfg: PopulationConfig) -> tuple[Any, Any, list[list[int]]]:
    """``(tokenizer, splits, windows)``: the population's tokenizer and KJV splits, and the first
    ``probe_seqs`` consecutive held-out windows of ``block_size`` tokens (the text every model is probed
    on)."""
    from infoplane.experiments.common import lm_data

    tok, splits, _ = lm_data(cfg.tokenizer, cfg.val_fraction, 0)
    n = cfg.probe_seqs * cfg.block_size
    if len(splits.val) < n:
        raise ValueError(f"held-out split has {len(splits.val)} tokens, probe_seqs x block_size = {n} needed")
    return tok, splits, splits.val[:n].reshape(cfg.probe_seqs, cfg.block_size).tolist()


def preference_set(cfg: PopulationConfig) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels of the suite's ``preference.jsonl`` (first ``pref_texts`` whole pairs)."""
    from infoplane.downstream.evaluate import DEFAULT_SUITE
    from infoplane.downstream.tasks import PREFERENCE_FILE

    rows = [json.loads(line) for line in (DEFAULT_SUITE / PREFERENCE_FILE).read_text("utf-8").splitlines()
            if line.strip()]
    if cfg.pref_texts is not None:
        keep = sorted({r["pair"] for r in rows})[: max(1, cfg.pref_texts // 2)]
        rows = [r for r in rows if r["pair"] in set(keep)]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


def train_model(cfg: PopulationConfig, spec: ModelSpec, splits: Any, tok: Any, out: Path
                ) -> tuple[Any, float]:
    """Train ``spec`` with the native trainer; returns ``(GPT in eval mode, wall seconds)``."""
    from infoplane.experiments.common import kjv_run_config
    from infoplane.train.model import GPTConfig
    from infoplane.train.objective import ObjectiveConfig
    from infoplane.train.phases import PhaseControllerConfig
    from infoplane.train.trainer import Trainer

    skip = 1 if spec.n_layer >= 3 else 0  # the references skip the first and last block when they can
    kind = {"ce": "ce", "static": "ce+mbe", "gapt": "gapt"}[spec.objective]
    obj = ObjectiveConfig(kind=kind, mbe_weight=cfg.mbe_weight, patch_size=cfg.patch_size, layers="rotate",
                          skip_first=skip, skip_last=skip, log_mbe=False)
    tc = kjv_run_config(cfg, seed=spec.seed, out_dir=out, objective=obj,
                        model=GPTConfig(n_layer=spec.n_layer, n_head=cfg.n_head, d_model=spec.d_model,
                                        block_size=cfg.block_size),
                        controller=PhaseControllerConfig.from_dict(cfg.controller), steps=spec.steps,
                        schedule="cosine")
    t0 = time.perf_counter()
    tr = Trainer(tc, splits=splits, tokenizer=tok)
    tr.run()
    return tr.model.eval(), time.perf_counter() - t0


@torch.no_grad()
def _ce(model: Any, seqs: Sequence[Sequence[int]]) -> float:
    """Next-token cross-entropy (nats/token) of ``model`` on ``seqs``, each scored on its own."""
    tot, n = 0.0, 0
    for ids in seqs:
        x = torch.tensor([list(ids)], dtype=torch.long)
        logits = model(x).logits[0, :-1].float()
        tot += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
        n += x.shape[1] - 1
    return tot / max(n, 1)


def _encode(tok: Any, text: str) -> list[int]:
    ids = tok.encode(text)
    return list(ids.ids) if hasattr(ids, "ids") else list(ids)


def measure(cfg: PopulationConfig, name: str, model: Any, tok: Any, *, windows: list[list[int]] | None,
            texts: list[str] | None, pref: tuple[list[str], list[int]], lm: Any, eval_dir: Path,
            limit: int | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every measurement of one model -> ``(row, plane rows)``.

    ``windows`` (token ids, in-family) or ``texts`` (the same held-out text decoded, out-of-family) is the
    probe input; ``lm`` the lm-eval model; the lm-eval result file goes to ``eval_dir``.
    """
    from infoplane.downstream.evaluate import evaluate, write_results
    from infoplane.downstream.preference import collect_hidden_states, text_label_information
    from infoplane.probe.analyze import analyze

    row: dict[str, Any] = {"model": name}
    t0 = time.perf_counter()
    if windows is not None:
        res = analyze(model, windows, cfg.probe, model_name=name, progress=False)
        seqs = windows
    else:
        assert texts is not None
        probe = cfg.probe.replace(seq_len=4 * cfg.block_size)  # another tokenizer: the whole window's text
        res = analyze(model, texts, probe, tokenizer=tok, model_name=name, progress=False)
        seqs = [_encode(tok, t) for t in texts]
    plane = [dict(p) for p in res.plane]
    mean = next(p for p in plane if p.get("layer") == "mean" and int(p["n"]) == 1)
    for k in ("entropy", "complexity", "expressivity", "optimality", "distance", "complexity_null",
              "expressivity_null", "complexity_excess", "expressivity_excess"):
        row[k] = mean.get(k)
    z, groups = collect_hidden_states(model, seqs)
    row.update({k: v for k, v in hidden_state_measures(z, groups, cfg.patch_size).items()
                if not k.endswith("_layers")})
    row["ce"] = _ce(model, seqs)
    row["n_positions"] = res.metadata.get("n_samples")
    row["probe_seconds"] = time.perf_counter() - t0
    del z

    t0 = time.perf_counter()
    ptexts, plabels = pref
    pids = [_encode(tok, t)[: cfg.pref_max_tokens] for t in ptexts]
    pz, pgroups = collect_hidden_states(model, pids)
    pi = text_label_information(pz, np.asarray(plabels, dtype=np.int64)[pgroups], pgroups,
                                n_permutations=cfg.pref_permutations, seed=0, n_bins=cfg.probe.n_bins)
    del pz
    row.update({"pref_mi": layer_mean(pi.mi), "pref_null_text": layer_mean(pi.mi_null_text.mean(axis=0)),
                "pref_excess": layer_mean(pi.excess_text),
                "pref_p_min": float(np.min(pi.p_text[1:])) if pi.p_text.size > 1 else math.nan,
                "pref_texts": pi.n_texts, "pref_seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    out = evaluate(lm, tasks=list(cfg.tasks), limit=limit, seed=0)
    write_results(out, eval_dir, model_name=name)
    row["eval_seconds"] = time.perf_counter() - t0
    row["eval_limit"] = limit
    return row, plane
