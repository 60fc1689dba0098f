"""HF bridges: NativeCausalLM mirrors the native GPT HF-style; GAPT trains a tiny random Llama offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402  (a hard dependency: an ImportError must fail, not skip)

from infoplane.data.tokenizer import ByteTokenizer  # noqa: E402
from infoplane.train.checkpoint import load_causal_lm, save_checkpoint  # noqa: E402
from infoplane.train.hf import GaptLoss, gapt_trainer_class, gapt_training_step  # noqa: E402
from infoplane.train.model import GPT, GPTConfig  # noqa: E402
from infoplane.train.phases import PhaseController  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)
    return LlamaForCausalLM(cfg)


def batch(seed=0, B=4, T=32):
    g = torch.Generator().manual_seed(seed)
    # a learnable pattern: repeating short cycles
    base = torch.randint(0, 64, (B, 4), generator=g)
    ids = base.repeat(1, T // 4)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class Scripted(PhaseController):
    """A controller whose phase follows a script (for deterministic tests of the wrapper)."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self._i = 0

    @property
    def phase(self):
        from infoplane.train.phases import Phase

        return Phase(self.script[min(self._i, len(self.script) - 1)])

    def step(self, ce, mbe):
        before = self.phase
        self._i += 1
        if self.phase != before:
            self.events.append({"step": self._i, "from": before.value, "to": self.phase.value,
                                "reason": "scripted"})
        return self.phase


def test_native_wrapper_matches_model_and_hooks(tmp_path):
    m = GPT(GPTConfig(vocab_size=40, n_layer=3, n_head=2, d_model=16, block_size=16))
    p = save_checkpoint(tmp_path, 1, m, tokenizer=ByteTokenizer())
    lm, tok = load_causal_lm(p)
    assert isinstance(tok, ByteTokenizer) and lm.config.num_hidden_layers == 3
    ids = torch.randint(0, 40, (2, 10))
    out = lm(ids, output_hidden_states=True)
    ref = m.eval()(ids)
    assert torch.equal(out.logits, ref.logits)
    assert len(out.hidden_states) == 4
    assert torch.equal(out.hidden_states[0], ref.embeddings)
    for a, b in zip(out.hidden_states[1:], ref.hidden_states):
        assert torch.equal(a, b)
    seen = []
    hooks = [mod.register_forward_hook(lambda _m, _i, o: seen.append(o)) for mod in lm.hidden_modules()]
    lm(ids)
    for h in hooks:
        h.remove()
    assert len(seen) == 4 and all(torch.equal(a, b) for a, b in zip(seen, out.hidden_states))
    # HF-style shifted loss with right padding
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    o2 = lm(ids, attention_mask=mask, labels=ids)
    full = torch.nn.functional.cross_entropy(ref.logits[0, :-1], ids[0, 1:], reduction="sum")
    part = torch.nn.functional.cross_entropy(ref.logits[1, :6], ids[1, 1:7], reduction="sum")
    assert torch.allclose(o2.loss, (full + part) / (9 + 6), atol=1e-6)
    with pytest.raises(ValueError, match="right-padded"):
        lm(ids, attention_mask=torch.tensor([[0] * 5 + [1] * 5] * 2))


def test_gapt_step_on_tiny_llama_trains_and_switches_when_scripted():
    model = tiny_llama()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ctrl = Scripted(["memorize"] * 3 + ["compress"] * 4 + ["memorize"] * 3)
    loss_fn = GaptLoss(ctrl, mbe_weight=1.0, layers="all", patch_size=8)
    recs = [gapt_training_step(model, batch(), opt, loss_fn) for _ in range(10)]
    assert [r["phase"] for r in recs] == ["memorize"] * 3 + ["compress"] * 4 + ["memorize"] * 3
    assert [e["to"] for r in recs for e in r["switch"]] == ["compress", "memorize"]
    for r in recs:
        assert set(r["mbe"]) == {0, 1, 2} and not r["skipped"]
        if r["phase"] == "compress":
            assert r["loss"] == pytest.approx(r["ce"] + r["mbe_mean"], abs=1e-5)
        else:
            assert r["loss"] == r["ce"]
    assert recs[-1]["ce"] < recs[0]["ce"]
    # compression lowers the regularised MBE relative to its value when the phase began
    comp = [r["mbe_mean"] for r in recs if r["phase"] == "compress"]
    assert comp[-1] < comp[0]


def test_gapt_step_with_real_controller_and_nan_skip():
    model = tiny_llama(1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ctrl = PhaseController("relative", patience_mem=1, patience_comp=50, tau_ce=10.0)
    r1 = gapt_training_step(model, batch(1), opt, ctrl, layers="middle")
    assert r1["phase"] == "memorize" and r1["next_phase"] == "compress"
    assert r1["switch"][0]["reason"] == "ce_plateau"
    assert set(r1["mbe"]) == {1}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    h = model.lm_head.register_forward_hook(lambda m, i, o: o * float("nan"))
    r2 = gapt_training_step(model, batch(1), opt, ctrl)
    h.remove()
    assert r2["skipped"] and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    r3 = gapt_training_step(model, batch(1), opt, ctrl)
    assert r3["phase"] == "compress" and r3["loss"] > r3["ce"]
    with pytest.raises(ValueError, match="output_hidden_states"):
        GaptLoss()(transformers.modeling_outputs.CausalLMOutput(loss=torch.tensor(1.0), logits=None))


def test_gapt_with_transformers_trainer(tmp_path):
    from torch.utils.data import Dataset

    class DS(Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            b = batch(i, B=1)
            return {k: v[0] for k, v in b.items()}

    model = tiny_llama(2)
    ctrl = Scripted(["memorize"] * 2 + ["compress"] * 10)
    loss_fn = GaptLoss(ctrl, layers="all")
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                          max_steps=4, learning_rate=3e-3, report_to=[], logging_steps=100,
                                          save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    tr = gapt_trainer_class()(model=model, args=args, train_dataset=DS(), gapt_loss=loss_fn)
    tr.train()
    hist = tr.gapt_callback.history
    assert [h["phase"] for h in hist] == ["memorize", "memorize", "compress", "compress"]
    assert [e["to"] for h in hist for e in h["switch"]] == ["compress"]
