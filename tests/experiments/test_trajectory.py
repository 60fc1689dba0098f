"""Experiment 8 (the information plane during training): the declared saturation rule on constructed curves,
the post-saturation slope on known lines, the monitor schedule, the constant-with-cooldown schedule, the
Markov source's exact block quantities, and a tiny run that records every claim."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from infoplane.data.markov import MarkovSource
from infoplane.experiments import registry
from infoplane.experiments.common import ExperimentPaths, Progress
from infoplane.experiments.trajectory import analyze_run, run
from infoplane.experiments.trajectory_config import (
    TrajectoryConfig,
    floor_saturation_step,
    monitor_steps,
    post_saturation_slope,
    saturation_step,
)
from infoplane.io import read_csv
from infoplane.train.config import TrainConfig
from infoplane.train.schedule import check_schedule, cooldown_steps, lr_at

pytestmark = pytest.mark.usefixtures("one_thread")

DOUBLINGS = [2**i for i in range(11)]  # 1 .. 1024: the monitor point nearest s/2 is exactly s/2


def test_saturation_rule_fires_where_the_gain_per_doubling_drops_below_one_percent():
    # CE = 1 + 10/s: gain over [s/2, s] = (10/s) / (1 + 20/s) = 10 / (s + 20) < 0.01  <=>  s > 980
    ce = [1 + 10 / s for s in DOUBLINGS]
    assert saturation_step(DOUBLINGS, ce, 0.01) == 1024
    assert saturation_step(DOUBLINGS, ce, 10 / 532 + 1e-9) == 512  # gain at 512 is exactly 10/532
    # a held-out CE that rises (over-fitting) has a negative gain: saturated
    assert saturation_step([10, 20, 40], [3.0, 2.5, 2.6], 0.01) == 40


def test_saturation_rule_does_not_fire_on_a_curve_still_falling():
    # CE = 5 - log10(s): gain per doubling log10(2) / (5 - log10(s/2)) > 6 % everywhere
    ce = [5 - math.log10(s) for s in DOUBLINGS]
    assert saturation_step(DOUBLINGS, ce, 0.01) is None
    # a transient plateau (warm-up, or before the model learns to use context) that training leaves later
    # is not saturation; NaN points never fire
    steps = [1, 2, 4, 8, 16, 32, 64, 128]
    plateau = [6.0, 6.0, 6.0, 5.0, 4.0, 3.0, 3.0, 3.0]
    assert saturation_step(steps, plateau, 0.01, min_step=1) == 64  # flat from 64 on (vs 32)
    assert saturation_step(steps, plateau, 0.01, min_step=100) == 128
    assert saturation_step(steps[:6], plateau[:6], 0.01, min_step=1) is None
    # the final cooldown lowers the CE again: points after ``until`` are not judged
    cooled = plateau[:-1] + [2.5]
    assert saturation_step(steps, cooled, 0.01) is None
    assert saturation_step(steps, cooled, 0.01, until=64) == 64
    assert saturation_step([1, 2, 4], [math.nan, math.nan, math.nan], 0.01) is None
    with pytest.raises(ValueError, match="strictly ascending"):
        saturation_step([2, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="2 steps but 1 CE values"):
        saturation_step([1, 2], [1.0])


def test_floor_saturation_rule_for_a_known_entropy_rate():
    steps = [10, 20, 40, 80, 160, 320]
    ce = [2.0, 1.3, 1.02, 1.06, 1.01, 1.0]  # floor 1.0, gap 5 %: dips in at 40, leaves at 80, back at 160
    assert floor_saturation_step(steps, ce, 1.0, 0.05) == 160
    assert floor_saturation_step(steps, ce, 1.0, 0.10) == 40
    assert floor_saturation_step(steps, ce, 1.0, 0.05, until=40) == 40
    assert floor_saturation_step(steps, ce, 1.0, 0.001) == 320
    assert floor_saturation_step(steps, ce, 0.9, 0.05) is None  # never within 5 % of 0.9
    with pytest.raises(ValueError, match="strictly ascending"):
        floor_saturation_step([2, 1], [1.0, 1.0], 1.0, 0.1)


def test_post_saturation_slope_known_line_ignores_points_before_saturation():
    steps = [1, 3, 10, 100, 200, 400, 800, 1600]
    vals = [9.0, -4.0, 7.0] + [0.5 - 0.04 * math.log10(s) for s in steps[3:]]  # garbage before step 100
    res = post_saturation_slope(steps, vals, 100)
    assert res["slope"] == pytest.approx(-0.04, abs=1e-12)
    assert res["intercept"] == pytest.approx(0.5, abs=1e-12)
    assert res["n_after"] == 4 and res["decades"] == pytest.approx(math.log10(16))
    assert math.isnan(post_saturation_slope(steps, vals, None)["slope"])
    assert math.isnan(post_saturation_slope(steps, vals, 1600)["slope"])  # one point: no slope
    rng = np.random.default_rng(0)  # least squares: equals numpy's fit on noisy data
    noisy = [v + rng.normal(0, 0.01) for v in vals]
    want = np.polyfit(np.log10(steps[3:]), noisy[3:], 1)[0]
    assert post_saturation_slope(steps, noisy, 100)["slope"] == pytest.approx(want, abs=1e-12)


def test_monitor_steps_log_early_dense_late():
    s = monitor_steps(1000, 5, 100, 100)
    assert s == [1, 3, 10, 32, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    assert monitor_steps(250, 2, 100, 100) == [1, 100, 200, 250]  # the last step is always probed
    with pytest.raises(ValueError, match="dense_from <= steps"):
        monitor_steps(50, 3, 100, 10)


def test_constant_with_final_cooldown_schedule():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1, schedule="constant_cooldown:0.2")
    assert cooldown_steps(cfg) == 20
    lrs = [lr_at(i, cfg) for i in range(100)]
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # warm-up
    assert lrs[10:80] == [1.0] * 70  # constant
    assert lrs[79] == 1.0 and lrs[80] < 1.0
    assert lrs[99] == pytest.approx(0.1)  # linear to min_lr_ratio * lr at the last step
    assert np.allclose(np.diff(lrs[80:]), -0.9 / 20)
    assert cooldown_steps(cfg.replace(schedule="constant_cooldown")) == 20  # default share 20 %
    assert cooldown_steps(cfg.replace(schedule="cosine")) == 0
    assert check_schedule("constant_cooldown:0.5") == "constant_cooldown:0.5"
    for bad in ("constant_cooldown:1.5", "constant_cooldown:x", "linear"):
        with pytest.raises(ValueError, match="schedule"):
            TrainConfig(schedule=bad)


def _plug_in_block_entropy(x: np.ndarray, n: int) -> float:
    c = Counter(tuple(x[i:i + n]) for i in range(len(x) - n + 1))
    p = np.array(list(c.values()), dtype=float) / sum(c.values())
    return float(-(p * np.log(p)).sum())


def test_markov_block_quantities_known_answer():
    src = MarkovSource(vocab_size=4, order=2, concentration=0.3, seed=1)
    x = src.sample(200_000, seed=2).numpy()
    for n in (1, 2, 3):
        assert src.block_entropy(n) == pytest.approx(_plug_in_block_entropy(x, n), abs=0.01)
    assert src.block_entropy(1) == pytest.approx(src.marginal_entropy(), abs=1e-12)
    assert src.block_entropy(3) - src.block_entropy(2) == pytest.approx(src.entropy_rate(), abs=1e-12)
    info = [src.next_token_information(n) for n in (1, 2, 3, 5)]
    assert info[1] == pytest.approx(src.marginal_entropy() - src.entropy_rate(), abs=1e-12)
    assert 0 < info[0] < info[1] and info[2] == info[3] == info[1]  # nothing beyond k = 2
    # order 1: H(X_1, X_2) = H(X) + entropy rate
    one = MarkovSource(vocab_size=5, order=1, concentration=0.5, seed=0)
    assert one.block_entropy(2) == pytest.approx(one.marginal_entropy() + one.entropy_rate(), abs=1e-12)
    with pytest.raises(ValueError, match="order \\+ 1 = 3"):
        src.block_entropy(4)


def _rows(step_values: dict[int, dict[int, float]], variant: str = "main") -> list[dict]:
    return [{"variant": variant, "layer": "mean", "n": n, "step": s, "complexity_excess": v,
             "expressivity_excess": v / 2, "complexity": v + 0.1, "expressivity": v / 2 + 0.1}
            for s, by_n in step_values.items() for n, v in by_n.items()]


def test_analyze_run_known_slopes_from_constructed_tables():
    cfg = TrajectoryConfig.quick()
    steps = [1, 2, 4, 8, 16, 20, 30, 40, 50, 60]
    # CE 3 + 8/s, flat at 3 from step 20: the gain since the point nearest s/2 is 25 % at 20 (vs 8),
    # 14 % at 30 (vs 16) and 0 at 40 (vs 20): saturation at 40, two points after it
    ce = [{"step": s, "val_ce": 3.0 + 8.0 / s if s < 20 else 3.0} for s in steps]
    comp = {s: {1: 0.2 + (0.3 - 0.05 * math.log10(s) if s >= 40 else 0.0)} for s in steps}
    res = analyze_run(cfg, _rows(comp) + _rows(comp, "pooled"), ce)
    assert res["saturation_step"] == 40 and res["n_after"] == 2
    assert res["complexity_slope"] == pytest.approx(-0.05, abs=1e-12)
    assert res["complexity_pooled_slope"] == pytest.approx(-0.05, abs=1e-12)
    assert res["final_distance_excess"] == pytest.approx(comp[60][1] / 2)
    k = cfg.markov_order  # beyond-k: X_{k+1} minus X_k excess, falling 0.02 per decade after saturation
    mk = {s: {1: 0.1, k: 0.3, k + 1: 0.3 + 0.1 - 0.02 * math.log10(s)} for s in steps}
    mres = analyze_run(cfg, _rows(mk), ce, markov=True)
    assert mres["beyond_k_slope"] == pytest.approx(-0.02, abs=1e-12)
    assert mres["final_beyond_k"] == pytest.approx(0.1 - 0.02 * math.log10(60))


def test_tiny_run_records_every_claim(tmp_path):
    cfg = registry.make_config(registry.get("trajectory"), "quick",
                               {"tokenizer": "byte", "steps": 24, "dense_from": 8, "dense_every": 2,
                                "saturation_min_step": 4, "markov_steps": 24, "markov_train_tokens": 4000,
                                "probe.max_tokens": 256, "markov_probe.max_tokens": 256})
    summary = run(cfg, ExperimentPaths(tmp_path, "trajectory"), Progress("trajectory", enabled=False))
    claims = summary["claims"]
    assert set(claims) == {"traj_compression", "traj_compression_pooled", "traj_gapt_bound",
                           "traj_markov_beyond_k"}
    for cid, c in claims.items():
        assert c["seeds"] == [0, 1] and len(c["treatment"]) == 2, cid
        names = {p["name"]: p["passed"] for p in c["preconditions"]}
        assert names["probe_positions"] is False, cid  # 256 positions: honestly below 32768
    assert claims["traj_gapt_bound"]["baseline"] is not None
    assert claims["traj_compression"]["baseline"] is None
    runs = read_csv(tmp_path / "results" / "trajectory_runs.csv")
    assert sorted((r["arm"], r["seed"]) for r in runs) == [(a, s) for a in ("ce", "gapt", "markov")
                                                           for s in (0, 1)]
    plane = read_csv(tmp_path / "results" / "trajectory_plane.csv")
    every = set(cfg.lm_monitor_steps())
    dense = {s for s in every if s >= cfg.dense_from}  # the pooled monitor serves the slope only
    for arm, variant, want in (("ce", "main", every), ("ce", "pooled", dense), ("gapt", "main", every)):
        got = {r["step"] for r in plane if r["arm"] == arm and r["variant"] == variant and r["seed"] == 0}
        assert got == want, (arm, variant)
    ref = read_csv(tmp_path / "results" / "trajectory_ref.csv")
    assert {r["probe_seed"] for r in ref if r["arm"] == "ce" and r["seed"] == 1} == set(cfg.ref_seeds)
    assert summary["known_answer"]["expressivity_bound_n1"] > 0
    assert summary["estimator_spread"]["ce"]["n_probe_seeds"] == 3
