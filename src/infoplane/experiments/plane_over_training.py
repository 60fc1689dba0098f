"""Experiment 5: the information plane over training (Conklin et al. 2026) on the checkpoints of exp. 2.

Every saved checkpoint of the baseline and GAPT runs of :mod:`infoplane.experiments.lm_gapt` is probed with
:func:`infoplane.probe.sweep.sweep` on held-out KJV verses (the documents that experiment 2 held out), giving
per checkpoint the layer-mean (embedding excluded) complexity I(X_n;Z), expressivity I(Z;Y_n) and distance to
the bound I(X;Z) - I(Y;Z) (soft entropy, normalised by log m).

MI is taken above its permutation null (``complexity_excess`` = I(X;Z) - null, ``expressivity_excess``
likewise): raw MI of rare labels sits near the estimator's capacity (Conklin et al. 2026, estimator bias).

Computed tests:

* *fitting then compression*: per **baseline** run (independent seeds; GAPT runs share their first steps with
  the baseline of the same seed, so they are not independent replicates of a trajectory shape), least-squares
  slopes of token-level (n = 1) null-corrected complexity against log10(step) over the first and the second
  half of the checkpoints; the run's score is ``min(slope_first, -slope_second)`` (positive only if
  complexity rises and then falls). Declared preconditions: validation CE saturated at the end (improving
  < 1% over the last doubling of steps), MI above its null, at least 3 checkpoints.
* *GAPT vs bound*: final null-corrected distance I(X;Z) - I(Z;Y), GAPT vs baseline, paired by seed (each GAPT
  run ends on its own training; the final points are paired comparisons, not a shape claim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infoplane.experiments.common import ExperimentPaths, Progress, fresh_dir, lm_data, summarize
from infoplane.io import atomic_write_csv, read_json
from infoplane.probe.config import ProbeConfig

NAME = "plane_over_training"

__all__ = ["NAME", "PlaneConfig", "run", "rise_fall_score"]


@dataclass(frozen=True)
class PlaneConfig:
    """Probe settings and the declared saturation rule (the runner reruns this experiment whenever the results
    of experiment 2 change: its done-marker records their hash)."""

    arms: tuple[str, ...] = ("baseline", "gapt")
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(orders=(1, 2), max_tokens=4096, seq_len=64,
                                                                   batch_size=16, null=True))
    saturation_tol: float = 0.01  # declared: val CE improving < 1% over the last doubling of steps

    @classmethod
    def quick(cls) -> PlaneConfig:
        return cls(probe=cls().probe.replace(max_tokens=1024))

    @classmethod
    def demo(cls) -> PlaneConfig:
        return cls()

    @classmethod
    def full(cls) -> PlaneConfig:
        return cls(probe=cls().probe.replace(max_tokens=8192))


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])  # least-squares slope


def rise_fall_score(steps, values) -> dict[str, float]:
    """Slopes of ``values`` vs log10(step) over the first and second half of the points and their score
    ``min(slope_first, -slope_second)`` (> 0: rise then fall). Halves overlap in the middle point when the
    count is odd; at least 3 points are needed (else NaN)."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(s)
    s, v = s[order], v[order]
    if s.size < 3 or np.any(s <= 0):
        nan = float("nan")
        return {"slope_first": nan, "slope_second": nan, "score": nan}
    h = math.ceil(s.size / 2)
    x = np.log10(s)
    a, b = _slope(x[:h], v[:h]), _slope(x[-h:], v[-h:])
    return {"slope_first": a, "slope_second": b, "score": min(a, -b)}


def _num(x) -> float:
    return float(x) if x is not None else float("nan")


def _diff(a, b) -> float:
    return _num(a) - _num(b)


def val_ce_saturation(log_path: str | Path) -> float:
    """Relative held-out CE gain over the last doubling of steps, ``(v(T/2) - v(T)) / v(T/2)``, from a
    training log (``val_ce`` records; the record nearest step T/2 is used); NaN with fewer than 2
    validation points."""
    from infoplane.train.trainer import read_log

    pts = [(r["step"], r["val_ce"]) for r in read_log(log_path) if r.get("val_ce") is not None]
    if len(pts) < 2:
        return float("nan")
    t_end, v_end = pts[-1]
    t_half, v_half = min(pts[:-1], key=lambda p: abs(p[0] - t_end / 2))
    return (v_half - v_end) / v_half


def run(cfg: PlaneConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """Sweep the checkpoints of experiment 2; writes ``plane_over_training_trajectory.csv`` (layer means per
    checkpoint and n), ``plane_over_training_layers.csv`` (per-layer plane rows) and ``..._runs.csv``."""
    src = paths.results / "lm_gapt.json"
    if not src.is_file():
        return {"title": "Information plane over training",
                "skipped_reason": "experiment 2 (lm_gapt) has not run in this output directory; "
                                  "run it first (e.g. --only 2 5)"}
    lm = read_json(src)
    from infoplane.probe.sweep import sweep

    lm_cfg = lm["config"]
    _, _, val_texts = lm_data(lm_cfg["tokenizer"], lm_cfg["val_fraction"], 0)
    traj, layers, runs = [], [], []
    for r in lm["runs"]:
        if r["arm"] not in cfg.arms:
            continue
        ckpt_root = paths.root / r["run_dir"] / "checkpoints"
        out = fresh_dir(paths.runs / f"{r['arm']}_seed{r['seed']}")
        res = sweep(str(ckpt_root), val_texts, cfg.probe, out=out, resume=False, progress=False)
        for p in res.plane:
            row = {"arm": r["arm"], "seed": r["seed"], **{k: p.get(k) for k in (
                "step", "layer", "n", "entropy", "complexity", "expressivity", "optimality", "distance",
                "complexity_null", "expressivity_null", "complexity_excess", "expressivity_excess")}}
            (traj if p.get("layer") == "mean" else layers).append(row)
        tok1 = sorted((t for t in traj if t["arm"] == r["arm"] and t["seed"] == r["seed"] and t["n"] == 1),
                      key=lambda t: t["step"])
        steps = [t["step"] for t in tok1]
        comp = [_num(t["complexity_excess"]) for t in tok1]
        rf = rise_fall_score(steps, comp)
        final = tok1[-1]
        sat = val_ce_saturation(paths.root / r["run_dir"] / "log.jsonl")
        runs.append({"arm": r["arm"], "seed": r["seed"], "n_checkpoints": len(tok1),
                     "peak_step": steps[int(np.nanargmax(comp))], **rf,
                     "max_complexity_excess": float(np.nanmax(comp)), "val_ce_gain_last_doubling": sat,
                     "final_complexity": final["complexity"], "final_expressivity": final["expressivity"],
                     "final_distance": final["distance"], "final_optimality": final["optimality"],
                     "final_distance_excess": _diff(final["complexity_excess"],
                                                    final["expressivity_excess"])})
        log(f"{r['arm']} seed {r['seed']}: {len(tok1)} checkpoints, complexity "
            + " -> ".join(f"{c:.3f}" for c in comp) + f"; score {rf['score']:.4f}")
    atomic_write_csv(paths.table("trajectory"), traj)
    atomic_write_csv(paths.table("layers"), layers)
    atomic_write_csv(paths.table("runs"), runs)

    def col(key: str, arm: str | None = None) -> list[float]:
        return [float(x[key]) for x in runs if arm is None or x["arm"] == arm]

    stats = {arm: {k: summarize(col(k, arm)) for k in ("score", "slope_first", "slope_second",
                                                        "final_complexity", "final_expressivity",
                                                        "final_distance", "final_optimality",
                                                        "final_distance_excess", "val_ce_gain_last_doubling")}
             for arm in cfg.arms}
    scale = (f"{len(runs)} runs of experiment 2 ({', '.join(cfg.arms)}), "
             f"{runs[0]['n_checkpoints'] if runs else 0} checkpoints each, "
             f"{cfg.probe.max_tokens} held-out tokens, m = {cfg.probe.n_bins}, "
             f"orders {list(cfg.probe.orders)}")
    base = [x for x in runs if x["arm"] == "baseline"]
    gains = [x["val_ce_gain_last_doubling"] for x in base]
    saturated = bool(base) and all(math.isfinite(g) and g < cfg.saturation_tol for g in gains)
    above = [x["max_complexity_excess"] for x in base]
    mi_ok = bool(base) and all(math.isfinite(a) and a > 0 for a in above)
    pre = [{"name": "loss_saturated", "passed": saturated,
            "detail": "val CE gain over the last doubling of steps per baseline run: "
                      + ", ".join(f"{100 * g:.1f}%" for g in gains)
                      + f" (declared: < {100 * cfg.saturation_tol:g}%)"},
           {"name": "mi_above_null", "passed": mi_ok,
            "detail": "max null-corrected complexity per run: " + ", ".join(f"{a:.4f}" for a in above)},
           {"name": "min_checkpoints", "passed": all(x["n_checkpoints"] >= 3 for x in base),
            "detail": f"{min((x['n_checkpoints'] for x in base), default=0)} checkpoints (>= 3 needed)"}]
    claims = {"plane_compression": {"treatment": [x["score"] for x in base], "baseline": None,
                                    "paired": False,
                                    "null": 0.0, "seeds": [x["seed"] for x in base], "preconditions": pre,
                                    "replicates": "independent baseline runs (GAPT runs share their prefix)",
                                    "unit": "slope per decade", "scale": scale,
                                    "treatment_label": "baseline runs", "baseline_label": "0"}}
    if "gapt" in cfg.arms and "baseline" in cfg.arms:
        g = {x["seed"]: x for x in runs if x["arm"] == "gapt"}
        b = {x["seed"]: x for x in runs if x["arm"] == "baseline"}
        seeds = sorted(set(g) & set(b))
        above_b = [min(g[s]["max_complexity_excess"], b[s]["max_complexity_excess"]) for s in seeds]
        claims["plane_gapt_bound"] = {
            "treatment": [g[s]["final_distance_excess"] for s in seeds],
            "baseline": [b[s]["final_distance_excess"] for s in seeds], "paired": True, "seeds": seeds,
            "preconditions": [{"name": "mi_above_null", "passed": bool(seeds) and all(a > 0 for a in above_b),
                               "detail": "max null-corrected complexity per seed (min of the two arms): "
                                         + ", ".join(f"{a:.4f}" for a in above_b)}],
            "replicates": "independent training seeds (paired)", "unit": "normalised MI above null",
            "scale": scale, "treatment_label": "GAPT", "baseline_label": "baseline"}
    return {"title": "Information plane over training", "stats": stats, "claims": claims, "scale": scale,
            "source": str(Path("results") / "lm_gapt.json"), "source_config_hash": lm.get("config_hash"),
            "tables": [paths.table(k).name for k in ("trajectory", "layers", "runs")]}


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers (per arm: rise/fall score, final plane position)."""
    from infoplane.experiments.presentation import stat_pm

    st = summary.get("stats", {})

    def m(arm: str, key: str) -> str:
        return stat_pm(st, arm, key)

    return [f"{arm}: rise/fall score {m(arm, 'score')} (slope first half {m(arm, 'slope_first')}, "
            f"second half {m(arm, 'slope_second')} per decade of steps); final complexity "
            f"{m(arm, 'final_complexity')}, expressivity {m(arm, 'final_expressivity')}, "
            f"distance to the bound {m(arm, 'final_distance')}." for arm in st]


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Information-plane trajectories and complexity / expressivity / distance against training step, from
    ``plane_over_training_trajectory.csv``."""
    from infoplane.experiments.presentation import ARM_COLORS, as_float, pyplot, read_table, save_png

    traj = read_table(results, "plane_over_training_trajectory")
    if not traj:
        return []
    out = []
    rows = [{**r, "model": f"{r['arm']} s{r['seed']}"} for r in traj]
    try:
        from infoplane.plots import plot_plane

        paths = plot_plane(rows, figs, color_by="step", stem="plane_over_training")
        png = [p for p in paths if p.suffix == ".png"]
        if png:
            out.append((png[0], "Information-plane trajectories over training (layer means, embedding "
                                "excluded); colour = training step, dashed = bound."))
    except Exception as exc:  # the plane figure is optional; the trajectory panel below always renders
        print(f"report: plane figure skipped ({exc})")
    plt = pyplot()
    ns = sorted({int(r["n"]) for r in traj})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for key, ax in zip(("complexity", "expressivity", "distance"), axes):
        for arm in sorted({r["arm"] for r in traj}):
            for s in sorted({r["seed"] for r in traj}):
                rs = sorted((r for r in traj if r["arm"] == arm and r["seed"] == s and int(r["n"]) == ns[0]),
                            key=lambda r: r["step"])
                if rs:
                    ax.plot([r["step"] for r in rs], [as_float(r[key]) for r in rs], "o-", ms=3, lw=1,
                            color=ARM_COLORS.get(arm, "0.5"), label=f"{arm}" if s == 0 else None)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{key} (n = {ns[0]}, layer mean)", fontsize=9)
    axes[0].legend(fontsize=7)
    out.append((save_png(fig, figs / "plane_over_training_steps.png"),
                "Token-level complexity, expressivity and distance to the bound against training step."))
    return out
