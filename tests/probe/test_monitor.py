"""InfoPlaneMonitor: rows equal analyze on the same weights; native and transformers.Trainer callbacks;
resume without duplicates or gaps; GAPT signals in the Trainer's logs."""

from __future__ import annotations

import math

import pytest
import torch
import transformers  # a hard dependency: an ImportError must fail, not skip
from _probe_helpers import make_tiny_llama

from infoplane.data.corpus import embedded_corpus
from infoplane.data.lm_data import prepare_lm_data
from infoplane.estimators.matrix import matrix_entropy
from infoplane.io import read_csv
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.monitor import MONITOR_TABLE, InfoPlaneMonitor
from infoplane.train.checkpoint import load_causal_lm
from infoplane.train.config import TrainConfig
from infoplane.train.hf import GaptLoss, gapt_trainer_class
from infoplane.train.phases import Phase, PhaseController
from infoplane.train.trainer import Trainer, read_log

PROBE = ProbeConfig(orders=(1, 2), max_tokens=240, seq_len=32, batch_size=4, n_bins=16, seed=3)
_PLANE_KEYS = ("entropy", "complexity", "expressivity", "complexity_null", "expressivity_null", "optimality",
               "distance", "backoff_in", "backoff_out")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return prepare_lm_data(embedded_corpus("kjv").texts[:200], "byte", val_fraction=0.2, seed=0)


def held_out(splits, length=32):
    ids = splits.val.tolist()
    return [ids[i:i + length] for i in range(0, len(ids) - length + 1, length)]


def native_cfg(out, steps, checkpoints, dropout=0.0):
    return TrainConfig(model={"n_layer": 2, "n_head": 2, "d_model": 16, "block_size": 32, "dropout": dropout},
                       steps=steps,
                       batch_size=4, warmup_steps=1, eval_every=0, checkpoint_steps=checkpoints,
                       progress=False, out_dir=str(out))


def close(a, b, tol=1e-12):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=0, abs_tol=tol)


def test_monitor_rows_equal_analyze_of_checkpoints_and_mbe_of_the_same_states(tmp_path, data):
    tok, splits = data
    corpus = held_out(splits)
    mon = InfoPlaneMonitor(corpus, PROBE, every=2, model_name="gpt")
    res = Trainer(native_cfg(tmp_path, 4, [2, 4]), splits=splits, tokenizer=tok, callbacks=[mon]).run()
    table = read_csv(tmp_path / MONITOR_TABLE)
    assert sorted({r["step"] for r in table}) == [2, 4]
    probed = [r.get("monitor_seconds") is not None for r in read_log(res.log_path)]
    assert probed == [False, True, False, True]
    for ckpt, step in zip(res.checkpoints, (2, 4)):
        ref = analyze(ckpt, corpus, PROBE, model_name="gpt", progress=False)
        mine = {(r["layer"], r["n"]): r for r in table if r["step"] == step}
        assert len(mine) == len(ref.plane) == 2 * 3 + 2  # (3 hidden states + mean) x 2 orders
        assert all(r["n_samples"] == ref.metadata["n_samples"] == 240 for r in mine.values())
        for p in ref.plane:
            row = mine[(p["layer"], p["n"])]
            for k in _PLANE_KEYS:
                assert close(row[k], p[k]), (step, p["layer"], p["n"], k, row[k], p[k])
        # mbe: matrix entropy (alpha 2) of exactly the analysed hidden states, recomputed from the checkpoint
        lm, _ = load_causal_lm(ckpt)
        mon_plan = mon._prepared.plan
        states: list[list[torch.Tensor]] = [[] for _ in range(3)]
        with torch.no_grad():
            for b in mon_plan.batches:
                hs = lm(b.input_ids, output_hidden_states=True).hidden_states
                for layer, h in enumerate(hs):
                    states[layer].append(h[b.positions])
        for layer in range(3):
            want = float(matrix_entropy(torch.cat(states[layer]).double()))
            assert mine[(layer, 1)]["mbe"] == pytest.approx(want, abs=1e-9)
        assert mine[("mean", 1)]["mbe"] == pytest.approx((mine[(1, 1)]["mbe"] + mine[(2, 1)]["mbe"]) / 2)


class Stop(Exception):
    pass


def test_resumed_native_run_continues_the_table_without_duplicates_or_gaps(tmp_path, data):
    tok, splits = data
    corpus = held_out(splits)
    full = InfoPlaneMonitor(corpus, PROBE, every=2)
    Trainer(native_cfg(tmp_path / "full", 8, [4]), splits=splits, tokenizer=tok, callbacks=[full]).run()

    def kill_at_7(trainer, rec):  # killed after the monitor wrote step 6 and probed nothing at 7
        if trainer.step == 7:
            raise Stop

    cut = tmp_path / "cut"
    with pytest.raises(Stop):
        Trainer(native_cfg(cut, 8, [4]), splits=splits, tokenizer=tok,
                callbacks=[InfoPlaneMonitor(corpus, PROBE, every=2), kill_at_7]).run()
    assert sorted({r["step"] for r in read_csv(cut / MONITOR_TABLE)}) == [2, 4, 6]  # 6 is past checkpoint 4
    again = InfoPlaneMonitor(corpus, PROBE, every=2)
    on_disk = {}

    def peek(trainer, rec):  # the table as the resumed run starts: rows past the checkpoint are gone
        on_disk.setdefault(trainer.step, sorted({r["step"] for r in read_csv(cut / MONITOR_TABLE)}))

    tr = Trainer(native_cfg(cut, 8, [4]), splits=splits, tokenizer=tok, callbacks=[again, peek], resume=True)
    assert tr.step == 4
    tr.run()
    assert on_disk[5] == [2, 4] and on_disk[6] == [2, 4, 6]
    a, b = read_csv(tmp_path / "full" / MONITOR_TABLE), read_csv(cut / MONITOR_TABLE)
    steps = [r["step"] for r in b]
    assert sorted(set(steps)) == [2, 4, 6, 8] and len(steps) == len(set(steps)) * 8  # 8 rows per step
    assert a == b  # values equal the uninterrupted run's (exact resume, CSV round trip)
    # other probe settings never mix into an existing table
    with pytest.raises(ValueError, match="other monitor settings"):
        Trainer(native_cfg(cut, 10, [4]), splits=splits, tokenizer=tok, resume=True,
                callbacks=[InfoPlaneMonitor(corpus, PROBE.replace(n_bins=8), every=2)]).run()


def test_monitor_leaves_training_unchanged(tmp_path, data):
    tok, splits = data
    # with dropout, a probe that left eval mode on or consumed the global RNG would change the CE
    torch.manual_seed(0)  # dropout draws from the global RNG, which the trainer does not seed
    plain = Trainer(native_cfg(tmp_path / "a", 4, "final", 0.2), splits=splits, tokenizer=tok).run()
    mon = InfoPlaneMonitor(None, PROBE, every=1)  # default probe set: the run's held-out split
    torch.manual_seed(0)
    seen = Trainer(native_cfg(tmp_path / "b", 4, "final", 0.2), splits=splits, tokenizer=tok,
                   callbacks=[mon]).run()
    assert [r["ce"] for r in read_log(plain.log_path)] == [r["ce"] for r in read_log(seen.log_path)]
    assert mon._prepared.plan.corpus_source == "token_ids" and sorted(mon.seconds) == [1, 2, 3, 4]


def test_probe_batches_go_to_the_device_of_the_trainers_model(tmp_path, data, monkeypatch):
    import infoplane.probe.monitor as monitor_mod

    tok, splits = data
    devices, inputs = [], []
    real_run_plan = monitor_mod.run_plan

    def spy(plan, model, *args, **kwargs):
        devices.append(kwargs.get("device"))
        hook = model.register_forward_pre_hook(lambda mod, a: inputs.append(a[0].device))
        try:
            return real_run_plan(plan, model, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(monitor_mod, "run_plan", spy)
    mon = InfoPlaneMonitor(None, PROBE, every=1)
    tr = Trainer(native_cfg(tmp_path, 1, "final"), splits=splits, tokenizer=tok, callbacks=[mon])
    tr.run()
    # the monitor names the device of the model's parameters (the trainer's device; CUDA on a GPU run)
    assert devices and all(d == tr.device == next(tr.model.parameters()).device for d in devices)
    assert inputs and all(d == tr.device for d in inputs)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n=16, T=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        base = torch.randint(0, 128, (n, 4), generator=g)
        self.ids = base.repeat(1, T // 4)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]),
                "labels": self.ids[i]}


def _args(out, steps=4, **kw):
    return transformers.TrainingArguments(output_dir=str(out), per_device_train_batch_size=4, max_steps=steps,
                                          learning_rate=3e-3, report_to=[], logging_steps=1,
                                          save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, **kw)


def test_hf_trainer_callback_writes_rows_and_tensorboard_scalars(tmp_path):
    corpus = [list(range(i, i + 40)) for i in range(0, 80, 8)]
    scalars = []

    class Writer:
        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

    model = make_tiny_llama(seed=1)
    mon = InfoPlaneMonitor(corpus, PROBE, every=2, tensorboard=Writer())
    transformers.Trainer(model=model, args=_args(tmp_path, steps=5), train_dataset=_Rows(),
                         callbacks=[mon]).train()
    table = read_csv(tmp_path / MONITOR_TABLE)
    assert sorted({r["step"] for r in table}) == [2, 4, 5]  # every 2, and the last step
    assert {r["layer"] for r in table} == {0, 1, 2, 3, "mean"}
    assert all(r["complexity"] > 0 and r["mbe"] > 0 for r in table)
    assert model.training  # the probe restored the training mode
    mean5 = next(r for r in table if r["step"] == 5 and r["layer"] == "mean" and r["n"] == 1)
    assert ("plane/complexity/n1/mean", mean5["complexity"], 5) in scalars
    assert ("plane/mbe/n1/layer2", next(r["mbe"] for r in table if r["step"] == 2 and r["layer"] == 2), 2) \
        in scalars


class Scripted(PhaseController):
    """A controller whose phase follows a script (deterministic phases for the log test)."""

    def __init__(self, script):
        super().__init__()
        self.script, self._i = list(script), 0

    @property
    def phase(self):
        return Phase(self.script[min(self._i, len(self.script) - 1)])

    def step(self, ce, mbe):
        self._i += 1
        return self.phase


def test_gapt_under_hf_trainer_logs_phase_ce_and_mbe(tmp_path):
    model = make_tiny_llama(seed=2)
    loss_fn = GaptLoss(Scripted(["memorize"] * 2 + ["compress"] * 10), layers="all")
    mon = InfoPlaneMonitor([list(range(i, i + 40)) for i in range(0, 80, 8)], PROBE, every=2)
    tr = gapt_trainer_class()(model=model, args=_args(tmp_path), train_dataset=_Rows(), gapt_loss=loss_fn,
                              callbacks=[mon])
    tr.train()
    logged = [h for h in tr.state.log_history if "loss" in h]
    assert len(logged) == 4
    assert [h["gapt_phase"] for h in logged] == [0.0, 0.0, 1.0, 1.0]
    for h, g in zip(logged, tr.gapt_callback.history):
        assert h["gapt_ce"] == g["ce"] and {f"gapt_mbe_{k}" for k in g["mbe"]} <= set(h)
        assert {"gapt_mbe_0", "gapt_mbe_1", "gapt_mbe_2"} <= set(h) and h["gapt_mbe_mean"] > 0
    assert sorted({r["step"] for r in read_csv(tmp_path / MONITOR_TABLE)}) == [2, 4]


def test_monitor_validates_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        InfoPlaneMonitor(every=0)
    with pytest.raises(ValueError, match="table must be a file name ending in .csv"):
        InfoPlaneMonitor(table="x/plane.txt")
    with pytest.raises(ValueError, match="config must be a ProbeConfig"):
        InfoPlaneMonitor(config=3)
    with pytest.raises(ValueError, match="unknown ProbeConfig key"):
        InfoPlaneMonitor(config={"bins": 3})
    mon = InfoPlaneMonitor(None, PROBE)
    with pytest.raises(ValueError, match="needs out_dir"):
        mon.probe(make_tiny_llama(), 0)
    with pytest.raises(ValueError, match="needs a probe set"):
        InfoPlaneMonitor(None, PROBE, out_dir=tmp_path).probe(make_tiny_llama(), 0)


def test_gapt_callback_on_log_fills_logs_and_history_without_overwriting():
    from types import SimpleNamespace

    from infoplane.train.hf import GaptCallback

    cb = GaptCallback(GaptLoss(Scripted(["compress"]), layers="all"))
    state = SimpleNamespace(global_step=3, log_history=[{"loss": 1.0, "step": 3}])
    logs = {"loss": 1.0}
    cb.on_log(None, state, None, logs=logs)
    assert logs == {"loss": 1.0}  # nothing before the first step
    cb.history.append({"step": 3, "phase": "compress", "ce": 2.5, "mbe": {0: 1.0, 1: 3.0}})
    logs = {"loss": 1.0, "gapt_ce": 9.0}
    cb.on_log(None, state, None, logs=logs)
    assert logs == {"loss": 1.0, "gapt_ce": 9.0, "gapt_phase": 1.0, "gapt_mbe_0": 1.0, "gapt_mbe_1": 3.0,
                    "gapt_mbe_mean": 2.0}
    assert state.log_history[-1]["gapt_mbe_mean"] == 2.0 and "gapt_ce" not in state.log_history[-1]


def test_monitor_probes_at_a_list_of_steps_log_early_dense_late(tmp_path, data):
    tok, splits = data
    mon = InfoPlaneMonitor(None, PROBE, every=[5, 1, 2], at_end=True)  # any order; stored sorted
    res = Trainer(native_cfg(tmp_path / "a", 6, "final"), splits=splits, tokenizer=tok, callbacks=[mon]).run()
    assert mon.every == [1, 2, 5]
    assert sorted({r["step"] for r in read_csv(tmp_path / "a" / MONITOR_TABLE)}) == [1, 2, 5, 6]  # + last
    probed = [r["step"] for r in read_log(res.log_path) if r.get("monitor_seconds") is not None]
    assert probed == [1, 2, 5, 6]
    mon = InfoPlaneMonitor(None, PROBE, every=(3,), at_end=False)
    Trainer(native_cfg(tmp_path / "b", 6, "final"), splits=splits, tokenizer=tok, callbacks=[mon]).run()
    assert sorted(mon.seconds) == [3]
    for bad in ([], [0, 2], [2, 2], "12", [1.5], [True]):
        with pytest.raises(ValueError, match="every must be an integer >= 1 .* or a non-empty sequence"):
            InfoPlaneMonitor(every=bad)
