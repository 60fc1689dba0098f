"""The windowed plateau rule: it can fail, it adapts after warm-up, phases vary in length on a real run."""

from __future__ import annotations

import json
import math

from infoplane.train.config import TrainConfig
from infoplane.train.model import GPTConfig
from infoplane.train.objective import ObjectiveConfig
from infoplane.train.phases import PhaseController, PhaseControllerConfig, phase_lengths
from infoplane.train.trainer import Trainer


def test_steadily_improving_ce_never_switches():
    c = PhaseController(rule="windowed", patience_mem=10, tau_ce=0.01)
    for t in range(500):
        c.step(5.0 * math.exp(-t / 100), 1.0)  # ~ 10 % better per 10-step window: the test never passes
    assert c.events == [] and c.phase == "memorize"


def test_plateau_after_fast_warmup_is_found_at_its_own_scale():
    # fast warm-up then a slow tail (~0.15 %/step, 1.5 % per 10-step window): a per-step 1 % rule (relative)
    # calls the tail a plateau at once; the windowed rule waits for the flat stretch
    ce = [8.0 - 4.0 * (1 - math.exp(-t / 5)) - 0.006 * t for t in range(60)]
    ce += [ce[-1]] * 60
    rel = PhaseController(rule="relative", patience_mem=10, tau_ce=0.01)
    c = PhaseController(rule="windowed", patience_mem=10, tau_ce=0.01)
    for v in ce:
        c.step(v, 1.0)
        rel.step(v, 1.0)
    assert rel.events[0]["step"] < 50
    first = c.events[0]
    assert first["reason"] == "ce_plateau"
    assert 60 <= first["step"] <= 80  # during the flat stretch, within two windows of its start


def test_mbe_exit_relative_to_the_phase_start_and_spike():
    c = PhaseController(rule="windowed", patience_mem=5, patience_comp=5, tau_mbe=0.01, start="compress")
    mbe = 1.0
    steps = 0
    while c.phase == "compress" and steps < 200:
        mbe *= 0.99 if steps < 40 else 1.0  # 1 %/step compression for 40 steps, then flat
        c.step(3.0, {1: mbe, 2: 2 * mbe})
        steps += 1
    assert c.events[-1]["reason"] == "mbe_plateau" and 40 < c.events[-1]["step"] <= 55
    c2 = PhaseController(rule="windowed", patience_mem=5, patience_comp=5)
    for _ in range(10):
        c2.step(3.0, 1.0)
    assert c2.phase == "compress"
    for _ in range(3):
        c2.step(3.6, 1.0)  # CE 20 % over its reference: back to memorisation
    assert c2.events[-1]["reason"] == "ce_spike"


def test_windowed_state_dict_round_trip_continues_identically():
    a = PhaseController(rule="windowed", patience_mem=4, patience_comp=3)
    sig = [(4.0 - 0.01 * (t % 17), {1: 1.0 - 0.002 * t}) for t in range(120)]
    for ce, m in sig[:50]:
        a.step(ce, m)
    b = PhaseController.from_state_dict(json.loads(json.dumps(a.state_dict())))
    for ce, m in sig[50:]:
        assert a.step(ce, m) == b.step(ce, m)
    assert a.events == b.events


def test_phase_lengths_from_events():
    ev = [{"step": 10, "to": "compress"}, {"step": 25, "to": "memorize"}]
    out = phase_lengths(ev, 40)
    assert [(p["phase"], p["length"], p["complete"]) for p in out] == [
        ("memorize", 10, True), ("compress", 15, True), ("memorize", 15, False)]


def test_real_run_phase_lengths_are_not_all_the_patience(tmp_path):
    window = 10
    cfg = TrainConfig(
        corpus="kjv", tokenizer="byte", val_fraction=0.05,
        model=GPTConfig(n_layer=3, n_head=2, d_model=32, block_size=32),
        objective=ObjectiveConfig(kind="gapt", mbe_weight=0.3, layers="rotate"),
        controller=PhaseControllerConfig(rule="windowed", patience_mem=window, patience_comp=window,
                                         tau_ce=0.005, tau_mbe=0.005, ema=None),
        steps=200, batch_size=8, lr=3e-3, warmup_steps=10, eval_every=0, eval_batches=1,
        checkpoint_steps="final", seed=0, out_dir=str(tmp_path / "run"), progress=False, num_threads=1)
    res = Trainer(cfg).run()
    phases = [p for p in phase_lengths(res.switches, res.steps) if p["complete"]]
    assert len(phases) >= 2, res.switches
    lengths = {p["length"] for p in phases}
    assert lengths != {window} and len(lengths) > 1, phases  # the controller adapts
    assert all(p["length"] >= 2 * window for p in phases)
