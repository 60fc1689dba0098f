"""Exact resume: stop after a checkpoint, resume, and reproduce the uninterrupted run step for step."""

from __future__ import annotations

import pytest
import torch
from _cfg import flat_config  # noqa: E402

from infoplane.data.corpus import embedded_corpus
from infoplane.data.lm_data import prepare_lm_data
from infoplane.train.checkpoint import load_checkpoint
from infoplane.train.config import TrainConfig
from infoplane.train.trainer import Trainer, read_log

pytestmark = pytest.mark.usefixtures("one_thread")


class Stop(Exception):
    pass


@pytest.mark.parametrize("objective", ["gapt", "ce"])
def test_resume_reproduces_uninterrupted_run(tmp_path, objective):
    tok, splits = prepare_lm_data(embedded_corpus("kjv").texts[:300], "byte", val_fraction=0.1, seed=0)
    ctrl = {"rule": "relative", "patience_mem": 2, "patience_comp": 2, "tau_ce": 0.3, "tau_mbe": 0.3,
            "ema": 0.5}

    def cfg(out):
        return flat_config(n_layer=3, n_head=2, d_model=32, block_size=32, steps=14, batch_size=4,
                           warmup_steps=3, eval_every=4, eval_batches=2, checkpoint_steps=[5, 9],
                           objective=objective, controller=ctrl, progress=False, out_dir=str(out))

    full = Trainer(cfg(tmp_path / "full"), splits=splits, tokenizer=tok).run()

    def kill_at_7(trainer, rec):  # "kill" after step 7 was computed, before it is logged
        if trainer.step == 7:
            raise Stop

    with pytest.raises(Stop):
        Trainer(cfg(tmp_path / "cut"), splits=splits, tokenizer=tok, callbacks=[kill_at_7]).run()
    assert [r["step"] for r in read_log(tmp_path / "cut" / "log.jsonl")] == [1, 2, 3, 4, 5, 6]
    resumed_tr = Trainer(cfg(tmp_path / "cut"), splits=splits, tokenizer=tok, resume=True)
    assert resumed_tr.step == 5
    resumed = resumed_tr.run()

    a, b = read_log(full.log_path), read_log(resumed.log_path)
    assert [r["step"] for r in b] == list(range(1, 15))  # records 6-7 of the killed run were dropped
    for ra, rb in zip(a, b):
        assert ra["ce"] == rb["ce"] and ra["phase"] == rb["phase"] and ra["mbe"] == rb["mbe"]
        assert ra.get("val_ce") == rb.get("val_ce") and ra["tokens"] == rb["tokens"]
    if objective == "gapt":
        assert len({r["phase"] for r in a}) == 2  # the controller state mattered
    ma, _, _ = load_checkpoint(full.checkpoints[-1])
    mb, _, _ = load_checkpoint(resumed.checkpoints[-1])
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(TrainConfig(out_dir=str(tmp_path), progress=False, tokenizer="byte"), resume=True)
