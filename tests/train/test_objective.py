"""The one GAPT step: the native trainer, the Hugging Face path and an experiment arm agree on one batch."""

from __future__ import annotations

import copy

import pytest
import torch

from infoplane.data.lm_data import TokenSplits
from infoplane.data.tasks import encode_arithmetic, make_arithmetic_splits
from infoplane.experiments.arithmetic import arm_step, lm_loss
from infoplane.train.config import TrainConfig
from infoplane.train.hf import GaptLoss, gapt_training_step
from infoplane.train.model import GPTConfig, NativeOutput
from infoplane.train.objective import GaptObjective, ObjectiveConfig, mean_signals
from infoplane.train.phases import PhaseControllerConfig
from infoplane.train.trainer import Trainer

CTRL = PhaseControllerConfig(rule="relative", patience_mem=2, patience_comp=2, tau_ce=0.5, tau_mbe=0.5)
# 15 input positions per example = 3 patches of 5: per-row patches and the arm's packed real tokens align
OBJ = ObjectiveConfig(kind="gapt", mbe_weight=0.5, patch_size=5, layers="all")
STEPS = 8


class HFStyle(torch.nn.Module):
    """The HF causal-LM protocol (labels=, output_hidden_states=) around a native GPT (native CE)."""

    def __init__(self, gpt: torch.nn.Module) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, input_ids, labels=None, output_hidden_states=False):
        out = self.gpt(input_ids, labels)
        return NativeOutput(out.logits, out.loss, (out.embeddings, *out.hidden_states))


def _optimizer(model: torch.nn.Module) -> torch.optim.AdamW:  # the trainer's parameter groups
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": rest, "weight_decay": 0.0}],
                             lr=3e-3, betas=(0.9, 0.95), foreach=False)


@pytest.fixture(scope="module")
def batch():
    # equal-length examples (2-digit operands, 4-digit products): no padding, so the arithmetic arm's MBE over
    # real tokens only sees the same hidden states as the trainer and the HF path
    pairs = [p for p in make_arithmetic_splits(200, 8, 8, seed=0).train
             if p[0] >= 10 and p[1] >= 10 and p[0] * p[1] >= 1000][:16]
    b = encode_arithmetic(pairs)
    assert len(pairs) == 16 and bool(b.valid.all())
    return b


def test_trainer_hf_path_and_experiment_arm_share_one_gapt_step(tmp_path, batch):
    torch.manual_seed(0)
    loss_mask, _, _ = batch.target_masks()
    x, y = batch.ids[:, :-1], batch.ids[:, 1:].masked_fill(~loss_mask, -100)
    T = x.shape[1]
    toks = torch.randint(0, 15, (2000,))
    splits = TokenSplits(train=toks, val=toks[:300], n_docs_train=1, n_docs_val=1, eos_id=0)
    cfg = TrainConfig(model=GPTConfig(n_layer=3, n_head=2, d_model=32, block_size=T), objective=OBJ,
                      controller=CTRL, steps=STEPS, batch_size=x.shape[0], lr=3e-3, warmup_steps=0,
                      schedule="constant", weight_decay=0.0, grad_clip=1.0, eval_every=0, eval_batches=1,
                      checkpoint_steps="final", progress=False, out_dir=str(tmp_path / "run"))
    tr = Trainer(cfg, splits=splits, vocab_size=15)
    tr.sampler.next_batch = lambda: (x.clone(), y.clone())
    gpt_hf, gpt_arm = copy.deepcopy(tr.model), copy.deepcopy(tr.model)

    native = [tr.train_step() for _ in range(STEPS)]

    hf_model = HFStyle(gpt_hf)
    hf_opt = _optimizer(gpt_hf)
    loss_fn = GaptLoss(objective=GaptObjective(OBJ, controller_config=CTRL))
    hf = [gapt_training_step(hf_model, {"input_ids": x, "labels": y}, hf_opt, loss_fn, grad_clip=1.0)
          for _ in range(STEPS)]

    arm_opt = _optimizer(gpt_arm)
    arm_obj = GaptObjective(OBJ, controller_config=CTRL)
    arm = []
    for step in range(STEPS):
        terms, events, skipped = arm_step(gpt_arm, arm_opt, arm_obj, batch, step)
        assert not skipped
        arm.append({"loss": float(terms.loss.detach()), "ce": terms.base, "phase": terms.phase,
                    "switch": events})

    phases = [r["phase"] for r in native]
    assert "compress" in phases and "memorize" in phases  # the comparison covers both phases
    assert [r["phase"] for r in hf] == phases == [r["phase"] for r in arm]
    assert [[e["to"] for e in r.get("switch", [])] for r in native] == \
        [[e["to"] for e in r["switch"]] for r in hf] == [[e["to"] for e in r["switch"]] for r in arm]
    for a, b, c in zip(native, hf, arm):
        assert a["ce"] == pytest.approx(b["ce"], rel=1e-6) == pytest.approx(c["ce"], rel=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) == pytest.approx(c["loss"], rel=1e-6)
    assert lm_loss(gpt_arm, batch)[0].item() == pytest.approx(lm_loss(gpt_hf, batch)[0].item(), rel=1e-6)


def test_alternating_scheme_puts_ce_and_mbe_on_alternating_micro_batches():
    obj = GaptObjective(ObjectiveConfig(kind="ce+mbe", mbe_weight=2.0, patch_size=4, layers="rotate",
                                        scheme="alternating"))
    torch.manual_seed(0)
    hidden = [torch.randn(2, 8, 6, requires_grad=True) for _ in range(4)]
    base = torch.tensor(3.0, requires_grad=True)
    t0, t1 = obj(base, hidden, step=5, micro=0), obj(base, hidden, step=5, micro=1)
    assert t0.with_base and not t0.penalised and t0.loss.item() == 3.0
    assert not t1.with_base and t1.penalised and list(t1.mbe) == [2]  # rotate: middle[5 % 2] = block 2
    assert t1.loss.item() == pytest.approx(2.0 * t1.mbe[2])
    t1.loss.backward()
    assert base.grad is None and hidden[2].grad is not None and hidden[1].grad is None
    assert mean_signals([t0, t1]) == (3.0, {2: pytest.approx((t0.mbe[2] + t1.mbe[2]) / 2)})


def test_objective_validates_inputs():
    with pytest.raises(ValueError, match="kind"):
        ObjectiveConfig(kind="mbe")
    with pytest.raises(ValueError, match="mbe_weight"):
        ObjectiveConfig(mbe_weight=float("nan"))
    with pytest.raises(ValueError, match="layers"):
        ObjectiveConfig(layers="middle-ish")
    with pytest.raises(ValueError, match="only 'gapt'"):
        GaptObjective(ObjectiveConfig(kind="ce"), controller=CTRL.build())
    with pytest.raises(ValueError, match="0-d tensor"):
        GaptObjective()(torch.ones(2), [torch.zeros(1, 8, 4)])
    with pytest.raises(ValueError, match="unknown ObjectiveConfig keys"):
        ObjectiveConfig.from_dict({"weight": 1})
