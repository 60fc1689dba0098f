"""Hooks reproduce HF ``output_hidden_states`` exactly, skip the LM head, and feed the same statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _probe_helpers import TEXTS, make_tiny_llama

from infoplane.estimators import SoftEntropyAccumulator
from infoplane.probe.analyze import analyze
from infoplane.probe.capture import HiddenStateCapture, find_hidden_sites, forward_batch, hidden_dims
from infoplane.probe.config import ProbeConfig
from infoplane.probe.plan import prepare_plan


def _capture(model, ids, mask):
    got = {}
    cap = HiddenStateCapture(model, lambda layer, z: got.__setitem__(layer, z.clone()))
    with cap:
        cap.set_positions(mask.bool())
        forward_batch(model, ids, mask)
    return got


def _padded_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    return ids, mask


def test_hooks_equal_output_hidden_states_llama(tiny_llama):
    ids, mask = _padded_batch()
    got = _capture(tiny_llama, ids, mask)
    with torch.no_grad():
        ref = tiny_llama(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(got) == len(ref) == tiny_llama.config.num_hidden_layers + 1
    for layer, h in enumerate(ref):
        assert torch.equal(got[layer], h[mask.bool()]), layer  # bit-identical, incl. final norm


def test_hooks_equal_output_hidden_states_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()
    assert [s.mode for s in find_hidden_sites(model)] == ["pre", "post", "post"]
    ids, mask = _padded_batch(1)
    got = _capture(model, ids, mask)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for layer, h in enumerate(ref):
        torch.testing.assert_close(got[layer], h[mask.bool()], rtol=0, atol=0)


def test_lm_head_is_never_run(tiny_llama):
    calls = []
    handle = tiny_llama.lm_head.register_forward_hook(lambda *a: calls.append(1))
    try:
        ids, mask = _padded_batch()
        got = _capture(tiny_llama, ids, mask)
    finally:
        handle.remove()
    assert calls == [] and len(got) == 4
    assert hidden_dims(tiny_llama) == [16] * 4


def test_native_gpt_hidden_modules():
    from infoplane.train import model as model_mod

    cfg = model_mod.GPTConfig(vocab_size=64, n_layer=2, n_head=2, d_model=16, block_size=32)
    model = model_mod.GPT(cfg).eval()
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    got = _capture(model, ids, mask)
    with torch.no_grad():
        out = model(ids)
    ref = [out.embeddings, *out.hidden_states]
    assert len(got) == len(ref) == 3
    for layer, h in enumerate(ref):
        assert torch.equal(got[layer], h.reshape(-1, h.shape[-1])), layer


def test_hook_statistics_equal_statistics_from_output_hidden_states(tiny_llama, char_tok):
    cfg = ProbeConfig(orders=(1, 2), max_tokens=200, seq_len=40, batch_size=3, seed=3, null=False)
    res = analyze(tiny_llama, TEXTS, cfg, tokenizer=char_tok, progress=False)
    plan = prepare_plan(TEXTS, cfg, tokenizer=char_tok)
    acc = SoftEntropyAccumulator(16, n_layers=4, seed=cfg.seed)
    for b in plan.batches:
        with torch.no_grad():
            hs = tiny_llama(input_ids=b.input_ids, attention_mask=b.attention_mask,
                            position_ids=(b.attention_mask.cumsum(-1) - 1).clamp_min(0),
                            output_hidden_states=True).hidden_states
        prepared = acc.prepare_labels(b.labels)
        for layer, h in enumerate(hs):
            acc.update(h[b.positions], prepared, layer=layer)
    ref = acc.compute()
    np.testing.assert_allclose(res.layer_values("entropy", "input_1"), ref.entropy, rtol=0, atol=1e-12)
    for name in ("input_1", "output_1", "input_2", "output_2"):
        np.testing.assert_allclose(res.layer_values("mi", name), ref.mi[name], rtol=0, atol=1e-12)
    assert res.metadata["n_samples"] == ref.n_samples == 200


def test_sites_error_for_unknown_model():
    with pytest.raises(ValueError, match="decoder layers"):
        find_hidden_sites(torch.nn.Linear(3, 3))


def _n_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_capture_installs_fires_and_removes_hooks():
    model = make_tiny_llama(seed=5, n_layers=1)
    before = _n_hooks(model)
    fired = []
    cap = HiddenStateCapture(model, lambda layer, z: fired.append((layer, tuple(z.shape))))
    assert cap.n_hidden == 2  # embedding (pre-hook on block 0), final norm (as HF output_hidden_states)
    with cap:
        assert _n_hooks(model) == before + cap.n_hidden  # one hook per hidden state, installed on entry
        ids, mask = _padded_batch()
        cap.set_positions(mask.bool())
        forward_batch(model, ids, mask)
    n_valid = int(mask.sum())
    assert fired == [(0, (n_valid, 16)), (1, (n_valid, 16))]  # each hook fired once, in order
    assert cap.fired == [0, 1]
    assert _n_hooks(model) == before  # removed on exit
    fired.clear()
    forward_batch(model, ids, mask)
    assert fired == []  # a forward outside the context reaches no sink


def test_capture_removes_hooks_when_the_sink_raises():
    model = make_tiny_llama(seed=5, n_layers=1)
    before = _n_hooks(model)

    def sink(layer, z):
        raise RuntimeError(f"sink failed at layer {layer}")

    ids, mask = _padded_batch()
    with pytest.raises(RuntimeError, match="layer 0"), HiddenStateCapture(model, sink) as cap:
        assert _n_hooks(model) > before
        cap.set_positions(mask.bool())
        forward_batch(model, ids, mask)
    assert _n_hooks(model) == before
