"""Scripted-sequence tests for the GAPT phase controller (both rule sets, mbe-and-gapt.md §3.1 / §3.2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.train.phases import Phase, PhaseController

M, C = "memorize", "compress"


def run(ctrl: PhaseController, ces, mbes) -> list[str]:
    return [ctrl.step(ce, mbe).value for ce, mbe in zip(ces, mbes)]


def switches(ctrl: PhaseController) -> list[tuple[int, str, str]]:
    return [(e["step"], e["to"], e["reason"]) for e in ctrl.events]


def test_phase_enum_is_string_like_and_default_start():
    assert Phase.MEMORIZE == "memorize" and Phase.COMPRESS == "compress"
    ctrl = PhaseController()
    assert ctrl.rule == "relative"
    assert ctrl.phase is Phase.MEMORIZE and ctrl.step_count == 0 and ctrl.events == []
    assert json.loads(json.dumps(Phase.COMPRESS)) == "compress"
    paper = PhaseController("paper")
    assert (paper.patience_mem, paper.patience_comp, paper.tau_ce, paper.tau_mbe, paper.spike_tol) == (
        125,
        125,
        0.01,
        0.002,
        0.1,
    )
    rel = PhaseController("relative")
    assert (rel.patience_mem, rel.patience_comp, rel.tau_ce, rel.tau_mbe, rel.spike_tol) == (
        5,
        5,
        0.01,
        0.01,
        0.1,
    )


# ----------------------------------------------------------------------------- relative rule (§3.2)


@pytest.mark.parametrize("p_m", [1, 2, 5, 9])
def test_relative_cold_plateau_switches_exactly_at_p_m(p_m):
    ctrl = PhaseController("relative", patience_mem=p_m, patience_comp=1000)
    phases = run(ctrl, [2.0] * (p_m + 5), [1.0] * (p_m + 5))
    assert phases == [M] * (p_m - 1) + [C] * 6
    assert switches(ctrl) == [(p_m, C, "ce_plateau")]


def test_relative_constant_signals_full_cycle():
    ctrl = PhaseController("relative", patience_mem=3, patience_comp=2)
    phases = run(ctrl, [1.0] * 11, [2.0] * 11)
    assert phases == [M, M, C, C, M, M, M, C, C, M, M]
    assert switches(ctrl) == [
        (3, C, "ce_plateau"),
        (5, M, "mbe_plateau"),
        (8, C, "ce_plateau"),
        (10, M, "mbe_plateau"),
    ]


def test_relative_plateau_after_improvement_counts_from_last_improvement():
    # CE falls 5 % per step for 10 steps (relative gain 0.05 > 0.01), then is flat
    ces = [1.0 * 0.95**k for k in range(10)] + [0.95**9] * 10
    ctrl = PhaseController("relative", patience_mem=4, patience_comp=100)
    phases = run(ctrl, ces, [1.0] * len(ces))
    assert phases[:13] == [M] * 13
    assert switches(ctrl) == [(14, C, "ce_plateau")]  # last improving step 10, then 4 flat steps


def test_relative_spike_returns_to_memorize_immediately():
    base = [1.0, 1.0, 1.0]  # -> compress at step 3 (p_m = 3)
    for ce_next, expect_spike in [(1.09, False), (1.11, True), (1.5, True)]:
        ctrl = PhaseController("relative", patience_mem=3, patience_comp=50)
        # MBE keeps improving by 5 %, so only a spike can end compression
        phases = run(ctrl, base + [1.0, ce_next], [1.0, 0.95, 0.9, 0.85, 0.8])
        assert phases[:4] == [M, M, C, C]
        if expect_spike:
            assert phases[4] == M and switches(ctrl)[-1] == (5, M, "ce_spike")
        else:
            assert phases[4] == C and len(ctrl.events) == 1


def test_relative_mbe_improvement_keeps_compressing_and_plateau_ends_it():
    ctrl = PhaseController("relative", patience_mem=2, patience_comp=3)
    mbe = [2.0, 2.0] + [2.0 * 0.97**k for k in range(1, 9)] + [2.0 * 0.97**8] * 3
    phases = run(ctrl, [1.0] * len(mbe), mbe)
    assert phases == [M, C] + [C] * 8 + [C, C, M]
    assert switches(ctrl) == [(2, C, "ce_plateau"), (13, M, "mbe_plateau")]


def test_relative_minima_are_global_never_reset():
    # compress at step 3 with best CE 1.0; in compression CE 1.15 (15 % above the global best) is a spike
    ctrl = PhaseController("relative", patience_mem=3, patience_comp=50)
    phases = run(ctrl, [1.0, 1.0, 1.0, 1.15], [1.0, 0.9, 0.8, 0.7])
    assert phases == [M, M, C, M] and switches(ctrl)[-1] == (4, M, "ce_spike")
    assert ctrl.best_ce == 1.0  # spike did not reset the minimum


# ----------------------------------------------------------------------------- paper rule (§3.1)


def test_paper_constant_signals_full_cycle():
    ctrl = PhaseController("paper", patience_mem=3, patience_comp=2)
    phases = run(ctrl, [1.0] * 11, [2.0] * 11)
    # the first step (best = +inf) always counts as an improvement: compress at p_m + 1
    assert phases == [M, M, M, C, C, M, M, M, C, C, M]
    assert switches(ctrl) == [
        (4, C, "ce_plateau"),
        (6, M, "mbe_plateau"),
        (9, C, "ce_plateau"),
        (11, M, "mbe_plateau"),
    ]


@pytest.mark.parametrize("p_m", [1, 3, 6])
def test_paper_plateau_of_p_m_steps_after_last_improvement(p_m):
    ces = [3.0, 2.5, 2.0, 1.5] + [1.5 - 0.005 * k for k in range(1, 20)]  # then gains of 0.005 < delta 0.01
    ctrl = PhaseController("paper", patience_mem=p_m, patience_comp=1000)
    phases = run(ctrl, ces, [1.0] * len(ces))
    assert switches(ctrl) == [(4 + p_m, C, "ce_plateau")]
    assert phases[: 3 + p_m] == [M] * (3 + p_m)


def test_paper_spike_and_best_ce_reset_at_compression_start():
    # compress at step 4 (best_CE := inf); step 5 CE 1.2 is *not* a spike (phase-local minimum reset),
    # step 6 CE 1.33 >= 1.1 * 1.2 is a spike
    ces = [1.0, 1.0, 1.0, 1.0, 1.2, 1.33]
    mbes = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    ctrl = PhaseController("paper", patience_mem=3, patience_comp=50)
    assert run(ctrl, ces, mbes) == [M, M, M, C, C, M]
    assert switches(ctrl) == [(4, C, "ce_plateau"), (6, M, "ce_spike")]
    # the relative rule on the same sequence (global minimum 1.0) spikes one step earlier
    rel = PhaseController("relative", patience_mem=4, patience_comp=50)
    assert run(rel, ces, mbes) == [M, M, M, C, M, M]
    assert switches(rel) == [(4, C, "ce_plateau"), (5, M, "ce_spike")]


def test_paper_spike_threshold_is_inclusive():
    # spike := CE >= (1 + spike_tol) * best_CE; 1.25 = 1.25 * 1.0 exactly representable
    ctrl = PhaseController("paper", patience_mem=1, patience_comp=50, spike_tol=0.25)
    assert run(ctrl, [1.0, 1.0, 1.0, 1.25], [1.0, 0.9, 0.8, 0.7]) == [M, C, C, M]
    assert switches(ctrl)[-1] == (4, M, "ce_spike")


def test_paper_best_mbe_reset_when_compression_ends():
    ctrl = PhaseController("paper", patience_mem=2, patience_comp=2)
    run(ctrl, [1.0] * 3, [1.0] * 3)  # compress at step 3
    assert ctrl.phase is Phase.COMPRESS and math.isinf(ctrl.best_ce) and ctrl.count_comp == 0
    assert ctrl.best_mbe  # MBE minima survive the switch into compression
    run(ctrl, [1.0, 1.0], [1.0, 1.0])  # MBE flat: back to memorize at step 5
    assert switches(ctrl)[-1] == (5, M, "mbe_plateau")
    assert ctrl.best_mbe == {} and ctrl.count_mem == 0
    # next step: MBE "improves" from +inf, so c_comp restarts at 0
    ctrl.step(1.0, 5.0)
    assert ctrl.count_comp == 0 and ctrl.count_mem == 1


def test_paper_mbe_improvement_is_max_over_layers():
    ctrl = PhaseController("paper", patience_mem=1, patience_comp=3)
    # layer 2 keeps improving by 0.01 > 0.002 while layer 1 is flat: no MBE plateau
    mbes = [{1: 1.0, 2: 1.0 - 0.01 * k} for k in range(10)]
    phases = run(ctrl, [1.0] * 10, mbes)
    assert phases == [M] + [C] * 9 and len(ctrl.events) == 1
    # both layers flat: plateau after 3 steps in compression
    ctrl2 = PhaseController("paper", patience_mem=1, patience_comp=3)
    phases2 = run(ctrl2, [1.0] * 6, [{1: 1.0, 2: 1.0}] * 6)
    # (p_m = 1: CE is flat against the kept best, so compression restarts at once)
    assert switches(ctrl2) == [(2, C, "ce_plateau"), (5, M, "mbe_plateau"), (6, C, "ce_plateau")]
    assert phases2 == [M, C, C, C, M, C]


# ----------------------------------------------------------------------------- rules differ


def test_absolute_vs_relative_thresholds_tell_rules_apart():
    # large CE falling by 0.5 per step: absolute gain 0.5 > 0.01 (paper: improving), relative 0.5% < 1%
    big = [100.0 - 0.5 * k for k in range(12)]
    paper, rel = PhaseController("paper", 4, 4), PhaseController("relative", 4, 4)
    run(paper, big, [1.0 - 0.1 * k for k in range(12)])
    run(rel, big, [1.0 - 0.1 * k for k in range(12)])
    assert paper.events == [] and switches(rel) == [(4, C, "ce_plateau")]
    # small CE falling by 0.005 per step: absolute 0.005 < 0.01 (paper: plateau), relative ~5% > 1%
    small = [0.1 - 0.005 * k for k in range(12)]
    paper, rel = PhaseController("paper", 4, 40), PhaseController("relative", 4, 40)
    run(paper, small, [1.0] * 12)
    run(rel, small, [1.0] * 12)
    assert switches(paper) == [(5, C, "ce_plateau")] and rel.events == []


# ----------------------------------------------------------------------------- EMA


def test_ema_values_and_spike_damping():
    beta = 0.9
    ces = [1.0, 1.0, 1.0, 1.15, 1.0]
    ctrl = PhaseController("relative", patience_mem=3, patience_comp=50, ema=beta)
    phases = run(ctrl, ces, [1.0, 0.9, 0.8, 0.7, 0.6])
    expected = ces[0]
    for x in ces[1:]:
        expected = beta * expected + (1 - beta) * x
    assert ctrl.state_dict()["ema_ce"] == pytest.approx(expected)
    # the single-step 15 % jump is smoothed to 1.015: no spike (the raw rule would spike, see above)
    assert phases == [M, M, C, C, C]
    raw = PhaseController("relative", patience_mem=3, patience_comp=50)
    assert run(raw, ces, [1.0, 0.9, 0.8, 0.7, 0.6])[3] == M


def test_ema_per_layer_mbe():
    ctrl = PhaseController("paper", ema=0.5)
    ctrl.step(1.0, {0: 1.0, 3: 2.0})
    ctrl.step(1.0, {0: 3.0, 3: 2.0})
    ema = dict((k, v) for k, v in ctrl.state_dict()["ema_mbe"])
    assert ema == {0: 2.0, 3: 2.0}


def test_ema_zero_equals_raw():
    rng = np.random.default_rng(0)
    ces = (2.0 + 0.05 * rng.standard_normal(200)).tolist()
    mbes = (1.0 + 0.05 * rng.standard_normal(200)).tolist()
    a, b = PhaseController("relative", 5, 5, ema=0.0), PhaseController("relative", 5, 5)
    assert run(a, ces, mbes) == run(b, ces, mbes)


# ----------------------------------------------------------------------------- state dict, non-finite


def _noisy_sequence(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    ces = (3.0 * np.exp(-np.arange(n) / 80) + 1.0 + 0.03 * rng.standard_normal(n)).tolist()
    mbes = [
        {1: float(1.5 + 0.05 * rng.standard_normal()), 2: float(1.2 + 0.05 * rng.standard_normal())}
        for _ in range(n)
    ]
    return ces, mbes


@pytest.mark.parametrize("rule,ema", [("paper", None), ("relative", None), ("relative", 0.8), ("paper", 0.5)])
def test_state_dict_roundtrip_mid_sequence_identical_continuation(rule, ema):
    ces, mbes = _noisy_sequence(1)
    ref = PhaseController(rule, patience_mem=7, patience_comp=5, ema=ema)
    ref_phases = run(ref, ces, mbes)
    assert len(ref.events) >= 4  # the sequence exercises several switches
    first = PhaseController(rule, patience_mem=7, patience_comp=5, ema=ema)
    head = run(first, ces[:137], mbes[:137])
    blob = json.dumps(first.state_dict(), allow_nan=False)  # strict JSON
    resumed = PhaseController()  # default config: load_state_dict restores the saved one
    resumed.load_state_dict(json.loads(blob))
    assert resumed.step_count == 137 and resumed.phase.value == head[-1]
    tail = run(resumed, ces[137:], mbes[137:])
    assert head + tail == ref_phases
    assert resumed.events == json.loads(json.dumps(ref.events))
    assert PhaseController.from_state_dict(json.loads(blob)).state_dict() == json.loads(blob)


@pytest.mark.parametrize("rule", ["paper", "relative"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_step_is_skipped(rule, bad):
    ces, mbes = [1.0] * 12, [2.0] * 12
    ref = PhaseController(rule, 3, 2)
    ref_phases = run(ref, ces, mbes)
    ctrl = PhaseController(rule, 3, 2)
    phases = run(ctrl, ces[:2], mbes[:2])
    before = ctrl.state_dict()
    phases.append(ctrl.step(bad, 2.0).value)  # CE non-finite
    phases.append(ctrl.step(1.0, {0: bad}).value)  # MBE non-finite
    after = ctrl.state_dict()
    for key in ("phase", "best_ce", "best_mbe", "count_mem", "count_comp", "ema_ce", "events"):
        assert after[key] == before[key]
    assert ctrl.step_count == 4
    assert [s["step"] for s in ctrl.skipped] == [3, 4] and all(
        s["reason"] == "non_finite" for s in ctrl.skipped
    )
    phases += run(ctrl, ces[2:], mbes[2:])
    # identical decisions, shifted by the two skipped steps
    assert phases[:2] + phases[4:] == ref_phases
    assert [(s - 2, to, r) for s, to, r in switches(ctrl)] == switches(ref)
    json.dumps(ctrl.state_dict(), allow_nan=False)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rule": "adaptive"}, "rule"),
        ({"patience_mem": 0}, "patience_mem"),
        ({"patience_comp": -3}, "patience_comp"),
        ({"patience_mem": 2.5}, "patience_mem"),
        ({"patience_mem": True}, "patience_mem"),
        ({"tau_ce": -0.1}, "tau_ce"),
        ({"tau_mbe": float("nan")}, "tau_mbe"),
        ({"spike_tol": -1}, "spike_tol"),
        ({"ema": 1.0}, "ema"),
        ({"ema": -0.1}, "ema"),
        ({"start": "expand"}, "start"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhaseController(**kwargs)


def test_zero_tolerances_allowed_and_start_compress():
    ctrl = PhaseController(
        "relative", patience_mem=2, patience_comp=2, tau_ce=0.0, tau_mbe=0.0, spike_tol=0.0, start="compress"
    )
    assert ctrl.phase is Phase.COMPRESS
    with pytest.raises(ValueError, match="mbe"):
        ctrl.step(1.0, {})
    with pytest.raises(ValueError, match="state_dict"):
        ctrl.load_state_dict({"config": {}})


@pytest.mark.parametrize("rule", ["paper", "relative"])
def test_mbe_none_leaves_mbe_bookkeeping_untouched(rule):
    ctrl = PhaseController(rule, patience_mem=2, patience_comp=2)
    while ctrl.phase is Phase.MEMORIZE:  # flat CE, MBE not measured: CE logic alone reaches compression
        ctrl.step(1.0, None)
        assert ctrl.step_count < 10
    assert switches(ctrl)[0][1:] == (C, "ce_plateau") and ctrl.best_mbe == {}
    state = ctrl.state_dict()
    for _ in range(5):  # no MBE information: the MBE plateau cannot complete
        assert ctrl.step(1.0, None) is Phase.COMPRESS
    assert ctrl.count_comp == state["count_comp"] and ctrl.events[0]["values"]["mbe"] is None
    # first measured MBE: paper counts it as an improvement over +inf, relative as gain 0 (counts)
    expected = [C, C, M] if rule == "paper" else [C, M, M]
    assert run(ctrl, [1.0] * 3, [2.0] * 3) == expected and switches(ctrl)[-1][2] == "mbe_plateau"


@settings(max_examples=60, deadline=None)
@given(
    rule=st.sampled_from(["paper", "relative"]),
    p_m=st.integers(1, 6),
    p_c=st.integers(1, 6),
    ema=st.sampled_from([None, 0.5]),
    seed=st.integers(0, 10_000),
)
def test_invariants_on_random_sequences(rule, p_m, p_c, ema, seed):
    rng = np.random.default_rng(seed)
    n = 150
    ces = (2.0 + 0.3 * np.cumsum(rng.standard_normal(n)) / np.sqrt(n) + 0.05 * rng.standard_normal(n)).clip(
        0.1
    )
    mbes = 1.0 + 0.1 * rng.standard_normal(n)
    ces[rng.random(n) < 0.03] = np.nan
    ctrl = PhaseController(rule, patience_mem=p_m, patience_comp=p_c, ema=ema)
    phases = run(ctrl, ces.tolist(), mbes.tolist())
    skipped = {s["step"] for s in ctrl.skipped}
    assert skipped == {i + 1 for i in range(n) if not np.isfinite(ces[i])}
    prev_to, prev_step = M, 0
    for e in ctrl.events:
        assert e["from"] == prev_to != e["to"]
        assert e["step"] not in skipped
        processed = sum(1 for s in range(prev_step + 1, e["step"] + 1) if s not in skipped)
        if e["to"] == C:  # a memorisation phase lasts at least p_m processed steps
            assert e["reason"] == "ce_plateau" and processed >= p_m
        elif e["reason"] == "mbe_plateau":  # compression without spike lasts at least p_c steps
            assert processed >= p_c
        else:
            assert e["reason"] == "ce_spike"
        assert phases[e["step"] - 1] == e["to"]
        prev_to, prev_step = e["to"], e["step"]
    # the returned phase only changes at event steps
    changes = [i + 1 for i in range(1, n) if phases[i] != phases[i - 1]]
    assert changes == [e["step"] for e in ctrl.events if e["step"] > 1]
    json.dumps(ctrl.state_dict(), allow_nan=False)
