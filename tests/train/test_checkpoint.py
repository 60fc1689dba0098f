"""Checkpoints: round trip, optimizer state, atomicity under interrupted writes, no unpickling."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from infoplane.data.tokenizer import ByteTokenizer, load_tokenizer
from infoplane.train import checkpoint as ck
from infoplane.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_optimizer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from infoplane.train.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def trained(seed=0, steps=2):
    m = GPT(GPTConfig(vocab_size=40, n_layer=2, n_head=2, d_model=16, block_size=16, seed=seed))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, 40, (2, 16), generator=g)
        m(idx, idx).loss.backward()
        opt.step()
        opt.zero_grad()
    return m, opt


def test_round_trip_model_optimizer_tokenizer(tmp_path):
    m, opt = trained()
    p = save_checkpoint(tmp_path, 7, m, optimizer=opt, train_config={"steps": 7},
                        trainer_state={"sampler": {"epoch": 1}}, tokenizer=ByteTokenizer())
    assert p.name == "step_00000007"
    assert sorted(f.name for f in p.iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json", "trainer_state.json"]
    m2, cfg, meta = load_checkpoint(p)
    assert cfg == m.config and meta["step"] == 7 and meta["train"] == {"steps": 7}
    assert meta["trainer_state"]["sampler"] == {"epoch": 1}
    assert isinstance(load_tokenizer(meta["tokenizer_path"]), ByteTokenizer)
    idx = torch.randint(0, 40, (2, 16))
    m.eval()
    assert torch.equal(m(idx).logits, m2(idx).logits)
    assert m2.lm_head.weight is m2.embed.tok.weight  # tying survives
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    load_optimizer_state(opt2, p)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k])


def test_rng_state_round_trip_json():
    import json

    st = json.loads(json.dumps(rng_state()))
    a = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    set_rng_state(st)
    b = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


@pytest.mark.parametrize("where", ["commit", "mid_write"])
def test_interrupted_save_leaves_previous_checkpoint(tmp_path, monkeypatch, where):
    m, opt = trained(steps=1)
    first = save_checkpoint(tmp_path, 1, m, optimizer=opt)
    m_later, opt_later = trained(steps=3)

    if where == "commit":
        real = os.replace

        def boom(src, dst):
            if os.path.basename(str(dst)).startswith("step_"):
                raise KeyboardInterrupt("killed during the final rename")
            return real(src, dst)

        monkeypatch.setattr(ck.os, "replace", boom)
    else:
        def boom(*a, **k):
            raise OSError("disk full while writing the optimizer state")

        monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises((KeyboardInterrupt, OSError)):
        save_checkpoint(tmp_path, 2, m_later, optimizer=opt_later)
    monkeypatch.undo()
    assert list_checkpoints(tmp_path) == [first] and latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001"]  # no partial dir left
    m1, _, _ = load_checkpoint(first)
    assert torch.equal(m1.embed.tok.weight, m.embed.tok.weight)
    # re-saving the same step replaces it atomically
    save_checkpoint(tmp_path, 1, m_later)
    m1b, _, _ = load_checkpoint(first)
    assert torch.equal(m1b.embed.tok.weight, m_later.embed.tok.weight)


def test_stale_temporaries_are_ignored_and_cleaned(tmp_path):
    m, _ = trained(steps=1)
    (tmp_path / ".tmp-step_00000009-x").mkdir()
    (tmp_path / "step_00000008").mkdir()  # incomplete (no files): not a checkpoint
    assert list_checkpoints(tmp_path) == []
    save_checkpoint(tmp_path, 3, m)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003"]
    assert not (tmp_path / ".tmp-step_00000009-x").exists()


def test_loading_never_unpickles(tmp_path, monkeypatch):
    m, opt = trained()
    p = save_checkpoint(tmp_path, 1, m, optimizer=opt)

    def forbidden(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    m2, _, _ = load_checkpoint(p)
    load_optimizer_state(torch.optim.AdamW(m2.parameters()), p)
    assert all(f.suffix in (".json", ".safetensors") for f in p.iterdir())


def test_bad_paths_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="GPT"):
        save_checkpoint(tmp_path, 1, torch.nn.Linear(2, 2))
