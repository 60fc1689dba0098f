"""Correlations between information-plane measures and downstream scores across models (paper sec. 3).

Given plane rows of several models (one layer-mean row per model at back-off order ``n``) and a table of
scores, each measure is correlated with each score by Pearson's r and Spearman's rho with two-sided p-values
(``scipy.stats``). The paper reports e.g. r(optimality, aggregate score) = 0.52 over 47 models with token
back-off (n = 1); correlational only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["correlate", "DEFAULT_MEASURES"]

DEFAULT_MEASURES = ("entropy", "complexity", "expressivity", "optimality", "distance")


def _score_table(scores: Mapping[str, float] | Iterable[Mapping[str, Any]], model_key: str
                 ) -> dict[str, dict[str, float]]:
    """-> {score name: {model: value}}"""
    if isinstance(scores, Mapping):
        return {"score": {str(k): float(v) for k, v in scores.items()}}
    out: dict[str, dict[str, float]] = {}
    for i, row in enumerate(scores):
        if model_key not in row:
            raise ValueError(f"score row {i} lacks the column {model_key!r} naming the model")
        for k, v in row.items():
            if k == model_key or v is None or v == "":
                continue
            try:
                out.setdefault(k, {})[str(row[model_key])] = float(v)
            except (TypeError, ValueError):
                continue  # non-numeric column (e.g. family name)
    if not out:
        raise ValueError("no numeric score columns found")
    return out


def correlate(
    plane_rows: Iterable[Mapping[str, Any]],
    scores: Mapping[str, float] | Iterable[Mapping[str, Any]],
    measures: Sequence[str] | None = None,
    n: int = 1,
    layer: Any = "mean",
    model_key: str = "model",
) -> list[dict[str, Any]]:
    """Pearson and Spearman correlation of every measure with every score, across models.

    Args:
        plane_rows: rows of :func:`infoplane.plane.plane_table` (several models; the last ``step`` of a model
            is used when it has several).
        scores: ``{model: score}`` or rows with a ``model`` column and one column per score.
        measures: plane columns to correlate (default: entropy, complexity, expressivity, optimality,
            distance and every ``seq_mi_*`` column present).
        n: back-off order of the rows used (paper: token level, n = 1).
        layer: ``"mean"`` (layer mean excluding the embedding) or a layer index.
    Returns:
        rows ``measure, score, n_models, pearson_r, pearson_p, spearman_r, spearman_p`` (NaN when a
        measure or score is constant across models).
    Raises:
        ValueError: fewer than 3 models have both a measure and a score.
    """
    from scipy import stats

    table = _score_table(scores, model_key)
    chosen: dict[str, Mapping[str, Any]] = {}
    for r in plane_rows:
        if str(r.get("layer")) != str(layer) or r.get("n") is None or int(r["n"]) != int(n):
            continue
        m = str(r.get(model_key))
        prev = chosen.get(m)
        if prev is None or (r.get("step") or 0) >= (prev.get("step") or 0):
            chosen[m] = r
    if not chosen:
        raise ValueError(f"no plane rows with layer={layer!r} and n={n}")
    if measures is None:
        extra = sorted({k for r in chosen.values() for k in r if k.startswith("seq_mi_")
                        and not k.startswith("seq_mi_null_")})
        measures = [*DEFAULT_MEASURES, *extra]
    out = []
    for score_name, by_model in table.items():
        for meas in measures:
            xs, ys = [], []
            for m, r in sorted(chosen.items()):
                v = r.get(meas)
                if m in by_model and v is not None and v != "" and math.isfinite(float(v)):
                    xs.append(float(v))
                    ys.append(by_model[m])
            if len(xs) < 3:
                raise ValueError(f"{len(xs)} models have both {meas!r} and score {score_name!r}: need >= 3 "
                                 f"(models in plane rows: {sorted(chosen)}, with scores: {sorted(by_model)})")
            row = {"measure": meas, "score": score_name, "n": n, "layer": layer, "n_models": len(xs)}
            if len(set(xs)) == 1 or len(set(ys)) == 1:  # correlation undefined for a constant input
                row.update(pearson_r=math.nan, pearson_p=math.nan, spearman_r=math.nan, spearman_p=math.nan)
            else:
                pr, sr = stats.pearsonr(xs, ys), stats.spearmanr(xs, ys)
                row.update(pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue),
                           spearman_r=float(sr.statistic), spearman_p=float(sr.pvalue))
            out.append(row)
    return out
