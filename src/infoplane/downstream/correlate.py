"""Correlations between information-plane measures and downstream scores across models
(Conklin et al. 2026, sec. 5).

Given plane rows of several models (one layer-mean row per model at back-off order ``n``) and a table of
scores, each measure is correlated with each score by Pearson's r and Spearman's rho with two-sided p-values
(``scipy.stats``). The paper reports e.g. r(optimality, aggregate score) = 0.52 over 47 models with token
back-off (n = 1); correlational only. Optionally:

* bootstrap intervals of r and rho (:func:`infoplane.stats.bootstrap_ci`), resampling *configurations*
  (clusters) rather than models when several models share one (e.g. seeds of one architecture), so that
  near-duplicates do not shrink the interval;
* partial correlations given covariates (log parameter count, in-domain held-out CE): does the measure say
  anything the loss does not? (:func:`partial_correlation`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["correlate", "partial_correlation", "cluster_bootstrap_ci", "DEFAULT_MEASURES"]

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


def partial_correlation(x: Sequence[float], y: Sequence[float], covariates: Sequence[Sequence[float]]
                        ) -> tuple[float, float, int]:
    """Pearson correlation of ``x`` and ``y`` given ``covariates`` -> ``(r, two-sided p, df)``.

    x, y: ``[n]``; covariates: ``k`` sequences of ``[n]`` (k = 0 gives plain Pearson). Both variables are
    residualised on ``[1, covariates]`` by least squares and the residuals correlated (Fisher 1924, the
    partial correlation coefficient); p from Student's t with ``df = n - 2 - k``.
    """
    from scipy import stats

    xv, yv = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    cov = np.asarray(covariates, dtype=np.float64).reshape(-1, xv.size) if len(covariates) else \
        np.zeros((0, xv.size))
    if xv.ndim != 1 or yv.shape != xv.shape or cov.shape[1] != xv.size:
        raise ValueError(f"x, y and every covariate must be [n] of one length, got {xv.shape}, {yv.shape}, "
                         f"covariates {cov.shape}")
    k = cov.shape[0]
    df = xv.size - 2 - k
    if df < 1:
        raise ValueError(f"{xv.size} models and {k} covariates leave {df} degrees of freedom: need >= 1")
    design = np.column_stack([np.ones(xv.size), cov.T])
    # residuals of x and y on [1, covariates] (ordinary least squares)
    rx = xv - design @ np.linalg.lstsq(design, xv, rcond=None)[0]
    ry = yv - design @ np.linalg.lstsq(design, yv, rcond=None)[0]
    sx, sy = float(np.sqrt(rx @ rx)), float(np.sqrt(ry @ ry))
    if sx <= 1e-12 * max(1.0, float(np.abs(xv).max())) or sy <= 1e-12 * max(1.0, float(np.abs(yv).max())):
        return math.nan, math.nan, df  # a variable explained entirely by the covariates
    r = float(np.clip(rx @ ry / (sx * sy), -1.0, 1.0))
    t = r * math.sqrt(df / max(1e-300, 1.0 - r * r))  # t = r sqrt(df / (1 - r^2))
    return r, float(2.0 * stats.t.sf(abs(t), df)), df


def cluster_bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: str = "pearson", *,
                         clusters: Sequence[Any] | None = None, n_resamples: int = 2000,
                         confidence: float = 0.95, seed: int = 0) -> tuple[float, float, str]:
    """Bootstrap interval ``(low, high, method)`` of Pearson's r or Spearman's rho of ``x`` and ``y``.

    Resamples clusters (all models of one configuration together; ``None``: every model is its own
    cluster) through :func:`infoplane.stats.bootstrap_ci` (BCa, percentile when BCa is undefined). A
    resample with a constant variable has no correlation; if any occurs the interval is NaN (too few or too
    similar configurations for a bootstrap).
    """
    from scipy import stats

    from infoplane.stats import bootstrap_ci

    if statistic not in ("pearson", "spearman"):
        raise ValueError(f"statistic must be 'pearson' or 'spearman', got {statistic!r}")
    xv, yv = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    labels = list(range(xv.size)) if clusters is None else [str(c) for c in clusters]
    if len(labels) != xv.size:
        raise ValueError(f"clusters must name one configuration per model ({xv.size}), got {len(labels)}")
    names = sorted(set(labels))
    if len(names) < 3:
        raise ValueError(f"{len(names)} configurations: a bootstrap over clusters needs >= 3")
    members = [np.flatnonzero(np.asarray([lab == nm for lab in labels])) for nm in names]
    corr = stats.pearsonr if statistic == "pearson" else stats.spearmanr

    def stat(idx: np.ndarray) -> float:
        rows = np.concatenate([members[int(i)] for i in idx])
        a, b = xv[rows], yv[rows]
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return math.nan
        return float(corr(a, b).statistic)

    res = bootstrap_ci((np.arange(len(names)),), stat, confidence=confidence, n_resamples=n_resamples,
                       seed=seed)
    return res.ci_low, res.ci_high, res.method


def correlate(
    plane_rows: Iterable[Mapping[str, Any]],
    scores: Mapping[str, float] | Iterable[Mapping[str, Any]],
    measures: Sequence[str] | None = None,
    n: int = 1,
    layer: Any = "mean",
    model_key: str = "model",
    *,
    covariates: Mapping[str, Mapping[str, float]] | None = None,
    clusters: Mapping[str, Any] | None = None,
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
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
        covariates: ``{name: {model: value}}`` to partial out (e.g. ``log_params``, ``ce``); adds
            ``partial_r, partial_p, partial_df, controls`` (models lacking a covariate are left out of the
            partial correlation only).
        clusters: ``{model: configuration}``: the bootstrap resamples configurations (default: models).
        n_resamples: bootstrap resamples for ``*_ci_low``/``*_ci_high`` columns (0: no intervals).
        confidence, seed: of the bootstrap.
    Returns:
        rows ``measure, score, n_models, pearson_r, pearson_p, spearman_r, spearman_p`` (NaN when a
        measure or score is constant across models), plus the interval and partial columns asked for.
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
            xs, ys, ms = [], [], []
            for m, r in sorted(chosen.items()):
                v = r.get(meas)
                if m in by_model and v is not None and v != "" and math.isfinite(float(v)):
                    xs.append(float(v))
                    ys.append(by_model[m])
                    ms.append(m)
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
            if n_resamples:
                groups = [clusters.get(m, m) for m in ms] if clusters is not None else None
                row["n_clusters"] = len(set(map(str, groups))) if groups is not None else len(ms)
                for kind in ("pearson", "spearman"):
                    lo = hi = math.nan
                    if math.isfinite(row[f"{kind}_r"]):
                        lo, hi, _ = cluster_bootstrap_ci(xs, ys, kind, clusters=groups,
                                                         n_resamples=n_resamples, confidence=confidence,
                                                         seed=seed)
                    row[f"{kind}_ci_low"], row[f"{kind}_ci_high"] = lo, hi
            if covariates:
                keep = [i for i, m in enumerate(ms) if all(m in c for c in covariates.values())]
                cov = [[float(c[ms[i]]) for i in keep] for c in covariates.values()]
                row["controls"] = ",".join(covariates)
                row["partial_n"] = len(keep)
                pr_, pp_, df_ = math.nan, math.nan, len(keep) - 2 - len(covariates)
                if df_ >= 1:
                    pr_, pp_, df_ = partial_correlation([xs[i] for i in keep], [ys[i] for i in keep], cov)
                row.update(partial_r=pr_, partial_p=pp_, partial_df=df_)
            out.append(row)
    return out
