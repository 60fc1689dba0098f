"""Trainer: every objective runs and logs what it should; non-finite steps are skipped; config files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _cfg import flat_config  # noqa: E402

from infoplane.data.corpus import embedded_corpus
from infoplane.data.lm_data import prepare_lm_data
from infoplane.train.config import TrainConfig, checkpoint_schedule
from infoplane.train.phases import PhaseControllerConfig
from infoplane.train.trainer import NonFiniteLossError, Trainer, lr_at, read_log

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    texts = embedded_corpus("kjv").texts[:400]
    return prepare_lm_data(texts, "byte", val_fraction=0.1, seed=0)


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(n_layer=3, n_head=2, d_model=32, block_size=32, steps=16, batch_size=4, lr=3e-3,
                warmup_steps=2, eval_every=8, eval_batches=2, checkpoint_steps="final", progress=False,
                out_dir=str(tmp_path / "run"), seed=0)
    base.update(kw)
    return flat_config(**base)


def run(cfg, data, **kw):
    tok, splits = data
    tr = Trainer(cfg, splits=splits, tokenizer=tok, **kw)
    res = tr.run()
    return tr, res, read_log(res.log_path)


def test_ce_objective_logs_every_step(tmp_path, data):
    cfg = tiny_cfg(tmp_path, objective="ce")
    _, res, recs = run(cfg, data)
    assert [r["step"] for r in recs] == list(range(1, 17))
    assert all(r["phase"] == "memorize" and r["loss"] == r["ce"] and not r["skipped"] for r in recs)
    assert [r["tokens"] for r in recs] == [4 * 32 * s for s in range(1, 17)]
    assert set(recs[0]["mbe"]) == {"1"}  # "middle" of 3 layers, logged without being penalised
    assert "val_ce" in recs[7] and "val_ce" in recs[15] and "val_ce" not in recs[8]
    assert set(recs[-1]["val_mbe"]) == {"0", "1", "2"}
    assert res.final_val_ce == recs[-1]["val_ce"] < math.log(256)  # learnt something from bytes
    assert recs[-1]["ce"] < recs[0]["ce"] - 1.0
    assert (tmp_path / "run" / "summary.json").is_file() and len(res.checkpoints) == 1


def test_static_mbe_objective_adds_weighted_penalty_and_compresses(tmp_path, data):
    cfg = tiny_cfg(tmp_path, objective="ce+mbe", mbe_weight=2.0, mbe_layers="all")
    _, res, recs = run(cfg, data)
    for r in recs:
        assert r["phase"] == "compress"
        # L = CE + lambda * mean_l MBE_l
        assert r["loss"] == pytest.approx(r["ce"] + 2.0 * r["mbe_mean"], abs=1e-5)
    _, base, _ = run(tiny_cfg(tmp_path / "b", objective="ce", mbe_layers="all"), data)
    assert res.final_val_mbe_mean < base.final_val_mbe_mean


def test_gapt_switches_phases_and_logs_reasons(tmp_path, data):
    ctrl = {"rule": "relative", "patience_mem": 2, "patience_comp": 2, "tau_ce": 0.5, "tau_mbe": 0.5}
    cfg = tiny_cfg(tmp_path, objective="gapt", controller=ctrl, align_every=4)
    tr, res, recs = run(cfg, data)
    phases = [r["phase"] for r in recs]
    assert phases[0] == "memorize" and "compress" in phases
    switches = [e for r in recs for e in r.get("switch", [])]
    assert len(switches) == len(res.switches) >= 2
    assert {e["reason"] for e in switches} <= {"ce_plateau", "mbe_plateau", "ce_spike"}
    for r, nxt in zip(recs, recs[1:]):  # the controller's decision is the next step's phase
        assert r["next_phase"] == nxt["phase"]
    for r in recs:
        if r["phase"] == "compress":
            assert r["loss"] > r["ce"]
        else:
            assert r["loss"] == r["ce"]
    aligned = [r for r in recs if "align" in r]
    assert [r["step"] for r in aligned] == [4, 8, 12, 16]
    for r in aligned:
        assert -1 <= r["align"]["cos"] <= 1 and set(r["align"]["cos_layer"]) == {"0", "1", "2"}


def test_nonfinite_step_is_skipped_without_touching_weights(tmp_path, data):
    tok, splits = data
    tr = Trainer(tiny_cfg(tmp_path, objective="gapt", steps=6), splits=splits, tokenizer=tok)
    bad_steps = {3}
    hook = tr.model.lm_head.register_forward_hook(
        lambda m, i, o: o * float("nan") if tr.step + 1 in bad_steps else None)
    recs = []
    for _ in range(6):
        before = {k: v.clone() for k, v in tr.model.state_dict().items()}
        opt_before = tr.optimizer.state_dict()["state"][0]["step"].item() if tr.step else 0
        rec = tr.train_step()
        recs.append(rec)
        if rec["step"] in bad_steps:
            assert rec["skipped"] and rec["ce"] is None
            assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
            assert tr.optimizer.state_dict()["state"][0]["step"].item() == opt_before
            assert all(p.grad is None for p in tr.model.parameters())
    hook.remove()
    assert [r["skipped"] for r in recs] == [False, False, True, False, False, False]
    assert tr.tokens == 5 * 4 * 32 and tr.consecutive_nonfinite == 0
    assert all(math.isfinite(v.abs().sum().item()) for v in tr.model.state_dict().values())
    assert tr.controller.step_count == 5  # skipped steps are not fed to the controller


@pytest.mark.parametrize("objective", ["ce+mbe", "gapt"])
def test_nonfinite_hidden_state_is_skipped_not_crashed(tmp_path, data, objective):
    tok, splits = data
    cfg = tiny_cfg(tmp_path, objective=objective, steps=3, align_every=1)
    tr = Trainer(cfg, splits=splits, tokenizer=tok)
    h = tr.model.blocks[1].register_forward_hook(lambda m, i, o: o * float("nan") if tr.step == 1 else None)
    recs = [tr.train_step() for _ in range(3)]
    h.remove()
    assert [r["skipped"] for r in recs] == [False, True, False]


def test_repeated_nonfinite_raises_clear_error(tmp_path, data):
    tok, splits = data
    tr = Trainer(tiny_cfg(tmp_path, max_nonfinite=3), splits=splits, tokenizer=tok)
    tr.model.lm_head.register_forward_hook(lambda m, i, o: o * float("inf") if tr.step >= 1 else None)
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        tr.run()
    recs = read_log(tr.log_path)
    assert [r["skipped"] for r in recs] == [False, True, True, True]


def test_grad_accumulation_matches_full_batch(tmp_path, data):
    _, _, a = run(tiny_cfg(tmp_path / "a", steps=4, eval_every=0), data)
    _, _, b = run(tiny_cfg(tmp_path / "b", steps=4, eval_every=0, grad_accum=2), data)
    for ra, rb in zip(a, b):
        assert ra["ce"] == pytest.approx(rb["ce"], abs=1e-5)


def test_callbacks_can_add_fields(tmp_path, data):
    seen = []

    def cb(trainer, rec):
        seen.append(trainer.step)
        rec["custom"] = trainer.step * 2

    _, _, recs = run(tiny_cfg(tmp_path, steps=3), data, callbacks=[cb])
    assert seen == [1, 2, 3] and [r["custom"] for r in recs] == [2, 4, 6]


def test_lr_schedule_known_values():
    cfg = TrainConfig(steps=110, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half-way through the cosine: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1)
    const = cfg.replace(schedule="constant")
    assert lr_at(100, const) == 1.0


def test_config_files_and_validation(tmp_path):
    (tmp_path / "c.toml").write_text('steps = 7\n[objective]\nkind = "gapt"\n[controller]\nrule = "paper"\n')
    (tmp_path / "c.yaml").write_text("steps: 9\nobjective: {layers: [1, 2]}\nbetas: [0.9, 0.99]\n")
    t = TrainConfig.from_file(tmp_path / "c.toml", seed=3)
    assert (t.steps, t.objective.kind, t.seed) == (7, "gapt", 3)
    assert t.controller == PhaseControllerConfig(rule="paper")
    y = TrainConfig.from_file(tmp_path / "c.yaml")
    assert y.objective.layers == (1, 2) and y.betas == (0.9, 0.99)
    assert TrainConfig.from_dict(y.to_dict()) == y
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="kind"):
        TrainConfig(objective={"kind": "mbe"})
    with pytest.raises(ValueError, match="divisible by grad_accum"):
        TrainConfig(batch_size=6, grad_accum=4)
    with pytest.raises(ValueError, match=r"\.yaml"):
        (tmp_path / "c.ini").write_text("x")
        TrainConfig.from_file(tmp_path / "c.ini")


def test_typed_parts_reject_typos_at_load_time(tmp_path):
    (tmp_path / "typo.toml").write_text('[controller]\npatience_memory = 3\n')
    with pytest.raises(ValueError, match=r"unknown PhaseControllerConfig keys \['patience_memory'\]"):
        TrainConfig.from_file(tmp_path / "typo.toml")
    with pytest.raises(ValueError, match="unknown GPTConfig keys"):
        TrainConfig.from_dict({"model": {"n_layers": 3}})
    with pytest.raises(ValueError, match="unknown ObjectiveConfig keys"):
        TrainConfig.from_dict({"objective": {"lambda": 3}})
    with pytest.raises(ValueError, match="patience_mem"):
        TrainConfig.from_dict({"controller": {"patience_mem": 0}})
    with pytest.raises(ValueError, match="even grad_accum"):
        TrainConfig(objective={"kind": "gapt", "scheme": "alternating"}, grad_accum=1)


def test_two_layer_model_trains_with_ce_and_refuses_mbe_layers_that_do_not_fit(tmp_path, data):
    cfg = tiny_cfg(tmp_path, n_layer=2, steps=2, objective="ce")  # "middle" of 2 layers is empty: not used
    _, _, recs = run(cfg, data)
    assert [r["mbe"] for r in recs] == [{}, {}]
    with pytest.raises(ValueError, match="does not fit model.n_layer=2"):
        tiny_cfg(tmp_path, n_layer=2, objective="gapt")
    run(tiny_cfg(tmp_path / "all", n_layer=2, steps=2, objective="gapt", mbe_layers="all"), data)


def test_checkpoint_schedule():
    assert checkpoint_schedule("log:4", 1000) == [1, 10, 100, 1000]
    assert checkpoint_schedule("every:40", 100) == [40, 80, 100]
    assert checkpoint_schedule([5, 1], 10) == [1, 5, 10]
    assert checkpoint_schedule(None, 10) == [10]
    with pytest.raises(ValueError, match="outside"):
        checkpoint_schedule([11], 10)
    with pytest.raises(ValueError, match="log:N"):
        checkpoint_schedule("sometimes", 10)


def test_cli_train_with_config_file_and_overrides(tmp_path, capsys):
    from infoplane.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(embedded_corpus("kjv").texts[:200]), encoding="utf-8")
    (tmp_path / "cfg.yaml").write_text(
        "model: {n_layer: 3, n_head: 2, d_model: 32, block_size: 32}\nbatch_size: 4\nsteps: 50\n"
        "eval_batches: 2\nobjective: {kind: gapt}\n"
        "controller: {rule: relative, patience_mem: 2, patience_comp: 2}\n")
    out = tmp_path / "out"
    args = ["train", "--config", str(tmp_path / "cfg.yaml"), "--corpus", str(corpus), "--tokenizer", "byte",
            "--steps", "4", "--out", str(out), "--no-progress", "--checkpoints", "2", "--threads", "1"]
    assert main(args + ["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 4
    assert main(args) == 0
    assert "4 steps" in capsys.readouterr().out
    assert [r["step"] for r in read_log(out / "log.jsonl")] == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    assert main(["train", "--out", str(tmp_path / "none"), "--resume", "--tokenizer", "byte",
                 "--corpus", str(corpus), "--no-progress"]) == 2
    assert main(["train", "--controller", "[1]", "--dry-run"]) == 2


def test_tensorboard_optional(tmp_path, data):
    import importlib.util

    cfg = tiny_cfg(tmp_path, steps=2, tensorboard=True)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.warns(RuntimeWarning, match="tensorboard is not installed"):
            run(cfg, data)
    else:
        run(cfg, data)
        assert (tmp_path / "run" / "tb").is_dir()


def test_dropout_runs_are_reproducible_from_the_seed(tmp_path, data):
    torch.manual_seed(123)  # whatever the caller's global RNG state, the run's seed decides
    _, _, a = run(tiny_cfg(tmp_path / "a", dropout=0.2, steps=4), data)
    torch.manual_seed(456)
    _, _, b = run(tiny_cfg(tmp_path / "b", dropout=0.2, steps=4), data)
    _, _, c = run(tiny_cfg(tmp_path / "c", dropout=0.2, steps=4, seed=1), data)
    assert [r["ce"] for r in a] == [r["ce"] for r in b] != [r["ce"] for r in c]
