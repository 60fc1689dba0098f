"""Issue 14 item 6: checkpoints carry SHA-256 checksums verified at load; every load error names the file;
``train --resume`` falls back to the newest valid checkpoint and says so."""

from __future__ import annotations

import json

import pytest
import torch
from _faults import corpus_file, tiny_config, without_time

from infoplane.io import read_json
from infoplane.train.checkpoint import (
    CorruptCheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_optimizer_state,
    verify_checkpoint,
)
from infoplane.train.trainer import Trainer, read_log


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    out = tmp / "run"
    Trainer(tiny_config(out, corpus_file(tmp), steps=12)).run()
    return out


def _copy(run_dir, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def _flip(path, n=200, offset=None):
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if offset is None else offset
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_file_has_a_recorded_checksum(run_dir):
    ckpt = list_checkpoints(run_dir)[-1]
    cfg = verify_checkpoint(ckpt)
    assert set(cfg["files"]) == {"model.safetensors", "optimizer.safetensors", "trainer_state.json",
                                 "tokenizer.json"}
    assert cfg["version"] == 2 and len(cfg["config_sha256"]) == 64


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "trainer_state.json"])
def test_flipped_bytes_are_refused_naming_the_file(run_dir, tmp_path, name):
    ckpt = list_checkpoints(_copy(run_dir, tmp_path))[-1]
    _flip(ckpt / name)
    with pytest.raises(CorruptCheckpointError, match=f"{name}' is corrupt: SHA-256"):
        load_checkpoint(ckpt)


def test_altered_config_json_and_bad_json_are_named(run_dir, tmp_path):
    ckpt = list_checkpoints(_copy(run_dir, tmp_path))[-1]
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model"]["d_model"] = 64
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match="config.json.*altered after it was saved"):
        load_checkpoint(ckpt)
    (ckpt / "config.json").write_text('{"format": "infoplane-gpt", "step"')
    with pytest.raises(CorruptCheckpointError, match="config.json.*not valid JSON"):
        load_checkpoint(ckpt)
    (tmp_path / "x.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match="x.json.*not UTF-8"):
        read_json(tmp_path / "x.json")


def test_truncated_safetensors_without_checksums_is_named(run_dir, tmp_path):
    """A version-1 checkpoint (no checksums): the safetensors reader's error still names the file."""
    ckpt = list_checkpoints(_copy(run_dir, tmp_path))[-1]
    cfg = json.loads((ckpt / "config.json").read_text())
    for key in ("files", "config_sha256"):
        cfg.pop(key)
    cfg["version"] = 1
    (ckpt / "config.json").write_text(json.dumps(cfg))
    load_checkpoint(ckpt)  # still loads
    for name in ("model.safetensors", "optimizer.safetensors"):
        data = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors': cannot be read as the weights"):
        load_checkpoint(ckpt)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(CorruptCheckpointError, match="optimizer.safetensors': cannot be read"):
        load_optimizer_state(opt, ckpt)


def test_resume_falls_back_to_the_newest_valid_checkpoint_and_says_so(run_dir, tmp_path, capfd):
    out = _copy(run_dir, tmp_path)
    ckpts = list_checkpoints(out)
    _flip(ckpts[-1] / "model.safetensors")
    tr = Trainer(tiny_config(out, corpus_file(run_dir.parent), steps=12), resume=True)
    assert tr.step == 8
    res = tr.run()
    err = capfd.readouterr().err
    assert "step_00000012" in err and "failed verification" in err and "resumed from" in err
    assert (out / "checkpoints" / "corrupt-step_00000012").is_dir()  # set aside, not deleted
    assert [p.name for p in list_checkpoints(out)] == ["step_00000004", "step_00000008", "step_00000012"]
    # the resumed run equals the uninterrupted one
    a = load_checkpoint(run_dir / "checkpoints" / "step_00000012")[0].state_dict()
    b = load_checkpoint(res.checkpoints[-1])[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert without_time(read_log(run_dir / "log.jsonl")) == without_time(read_log(out / "log.jsonl"))
    for p in list_checkpoints(out):
        _flip(p / "trainer_state.json", n=5, offset=10)
    with pytest.raises(CorruptCheckpointError, match="no valid checkpoint"):
        Trainer(tiny_config(out, corpus_file(run_dir.parent), steps=12), resume=True)
