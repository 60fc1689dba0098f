"""Arithmetic experiment: padding-free MBE, temperature calibration, per-digit accuracy, a tiny run."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from infoplane.data.tasks import EOS, encode_arithmetic
from infoplane.experiments.arithmetic import ArithmeticConfig, lm_loss
from infoplane.experiments.arithmetic_metrics import (
    AnswerLogits,
    answer_logits,
    calibrated_ce,
    digit_accuracy,
    fit_temperature,
    input_mask,
    masked_patch_mbe,
)
from infoplane.experiments.common import run_experiment
from infoplane.train.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_masked_mbe_ignores_padding_rows():
    batch = encode_arithmetic([(7, 3), (123, 4), (45, 6), (9, 9)], length=20)
    mask = input_mask(batch)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(*mask.shape, 16, generator=g)
    junk = h.clone()
    junk[~mask] = 50 * torch.randn(int((~mask).sum()), 16, generator=g) + 3.0
    assert int((~mask).sum()) >= 8  # the batch has padding to spoil
    assert masked_patch_mbe(junk, mask, 8) == pytest.approx(masked_patch_mbe(h, mask, 8), rel=1e-6)
    centered = masked_patch_mbe(h, mask, 8, True)
    assert masked_patch_mbe(junk, mask, 8, True) == pytest.approx(centered, rel=1e-6)
    # without the mask the padding rows do move the value (so the check above can fail)
    everything = torch.ones_like(mask)
    assert abs(masked_patch_mbe(junk, everything, 8) - masked_patch_mbe(h, everything, 8)) > 1e-3


def test_training_mbe_input_independent_of_padding_content():
    batch = encode_arithmetic([(7, 3), (123, 4), (45, 6), (9, 9)], length=20, reverse_answer=True,
                              operand_width=3)
    model = GPT(GPTConfig(vocab_size=15, n_layer=3, n_head=2, d_model=16, block_size=19, seed=0))
    _, packed = lm_loss(model, batch)
    assert all(p.shape == (1, int(input_mask(batch).sum()), 16) for p in packed)
    spoiled = dataclasses.replace(batch, ids=batch.ids.clone())
    pad = ~batch.valid
    spoiled.ids[pad] = torch.randint(5, 15, (int(pad.sum()),), generator=torch.Generator().manual_seed(1))
    assert not torch.equal(spoiled.ids, batch.ids) and bool((batch.ids[pad] == EOS).all())
    _, packed2 = lm_loss(model, spoiled)
    from infoplane.estimators import patch_matrix_entropy

    for a, b in zip(packed, packed2):
        va = patch_matrix_entropy(a, patch_size=8, remainder="drop_start")
        vb = patch_matrix_entropy(b, patch_size=8, remainder="drop_start")
        assert float(va.detach()) == pytest.approx(float(vb.detach()), rel=1e-5)


def test_fit_temperature_recovers_known_temperature():
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(40_000, 10, generator=g, dtype=torch.float64)
    for t0 in (0.5, 2.5):
        y = torch.multinomial(torch.softmax(z / t0, dim=-1), 1, generator=g).squeeze(1)
        t = fit_temperature(z, y)
        assert t == pytest.approx(t0, rel=0.05)
        assert calibrated_ce(z, y, t) <= calibrated_ce(z, y, 1.0) + 1e-9
    with pytest.raises(ValueError, match="temperature must be"):
        calibrated_ce(z, y, 0.0)
    with pytest.raises(ValueError, match=r"logits \[M, V\]"):
        fit_temperature(z[:0], y[:0])


class _Oracle(torch.nn.Module):
    """All mass on the true next token, except uniform logits at the listed (row, emission index) answers."""

    def __init__(self, batch, spoil):
        super().__init__()
        self.ids = batch.ids
        _, ans, _ = batch.target_masks()
        self.spots = [(r, int(torch.nonzero(ans[r])[k])) for r, k in spoil]

    def forward(self, idx, targets=None):
        logits = torch.full((*idx.shape, 15), -30.0)
        logits.scatter_(2, self.ids[:, 1:].unsqueeze(-1), 30.0)
        for r, t in self.spots:
            logits[r, t] = 0.0  # argmax -> token 0 (<bos>): wrong
        return type("O", (), {"logits": logits})()


@pytest.mark.parametrize("reverse", [False, True])
def test_digit_accuracy_known_answer(reverse):
    # answers 12*34 = 408 (3 digits), 7*8 = 56 (2 digits), 99*99 = 9801 (4 digits)
    batch = encode_arithmetic([(12, 34), (7, 8), (99, 99)], reverse_answer=reverse)
    # spoil the first-written digit of row 0 and of row 2
    al = answer_logits(_Oracle(batch, [(0, 0), (2, 0)]), batch)
    acc = digit_accuracy(al, 5)
    if reverse:  # first written = units: units wrong in 2 of 3 answers
        assert acc[:4] == pytest.approx([1 / 3, 1.0, 1.0, 1.0])
    else:  # first written = leading digit: place 2 of 408 (1 of 2 answers with a hundreds digit), place 3
        assert acc[:4] == pytest.approx([1.0, 1.0, 0.5, 0.0])
    assert math.isnan(acc[4])
    assert al.exact.tolist() == [False, True, False]


def test_digit_accuracy_counts_places():
    al = AnswerLogits(torch.eye(3), torch.tensor([0, 2, 2]), torch.tensor([0, 0, 1]),
                      torch.ones(1, dtype=torch.bool))
    assert digit_accuracy(al, 2) == [0.5, 1.0]


def test_quick_run_writes_claims(tmp_path):
    from infoplane.experiments import arithmetic
    from infoplane.io import read_csv

    cfg = dataclasses.replace(ArithmeticConfig.quick(), seeds=(0, 1), steps=20, eval_every=10, n_train=400,
                              n_val=64, n_test=64, n_test_ood=64, d_model=32, patience_mem=3, patience_comp=3)
    s = run_experiment("arithmetic", cfg, tmp_path, arithmetic.run, progress=False)
    assert set(s["claims"]) == {"arith_ood", "arith_ood_exact"}
    runs = read_csv(tmp_path / "results" / "arithmetic_runs.csv")
    ood = s["claims"]["arith_ood"]
    cal = [r["test_ood_masked_ce_cal"] for r in runs if r["arm"] == "gapt"]
    assert ood["treatment"] == pytest.approx(cal)
    assert ood["preconditions"][0]["name"] == "id_exact_match_floor"
    for r in runs:
        assert r["temperature"] > 0 and math.isfinite(r["test_ood_masked_ce"])
        assert r["test_id_masked_ce_cal"] <= r["test_id_masked_ce"] + 0.05  # T fitted on ID val, not test
        assert all(0 <= r[f"test_ood_digit{k}_acc"] <= 1 for k in range(4))
    layers = read_csv(tmp_path / "results" / "arithmetic_layers.csv")
    assert len(layers) == 2 * 2 * cfg.n_layer
    assert all(0 <= r["mbe"] <= math.log(8) + 1e-6 and 0 <= r["mbe_centered"] for r in layers)
    assert arithmetic.describe(s)


def test_figures_from_a_quick_run(tmp_path):
    from infoplane.experiments import arithmetic

    cfg = dataclasses.replace(ArithmeticConfig.quick(), seeds=(0, 1), steps=10, eval_every=5, n_train=200,
                              n_val=32, n_test=32, n_test_ood=32, d_model=32)
    run_experiment("arithmetic", cfg, tmp_path, arithmetic.run, progress=False)
    figs = arithmetic.figures(tmp_path / "results", tmp_path / "figs")
    assert [p.name for p, _ in figs] == ["arithmetic.png", "arithmetic_digits.png"]
    assert all(p.stat().st_size > 1000 for p, _ in figs)


def test_task_format_options_known_answer():
    from infoplane.data.tasks import CharTokenizer, make_arithmetic_examples, make_arithmetic_splits

    tok = CharTokenizer()
    b = encode_arithmetic([(12, 3), (7, 8)], reverse_answer=True, operand_width=3)
    assert tok.decode(b.ids[0]) == "012 x 003 = 63" and tok.decode(b.ids[1][: int(b.eos_pos[1])]) == (
        "007 x 008 = 65")
    assert b.reverse_answer and tok.decode(b.ids[0][b.answer_mask[0]]) == "63"
    pairs = make_arithmetic_examples(500, 1, 3, seed=0, b_digits=(1, 1))
    assert all(b_ < 10 for _, b_ in pairs) and max(a for a, _ in pairs) >= 100
    with pytest.raises(ValueError, match="allow at most 100"):
        make_arithmetic_examples(101, 1, 1, seed=0, b_digits=(1, 1))
    sp = make_arithmetic_splits(300, 20, 20, (1, 3), (4, 4), seed=0, n_test_ood=20, b_digits=(1, 1))
    assert all(1000 <= a < 10_000 and b_ < 10 for a, b_ in sp.test_ood)
    assert not set(sp.train) & (set(sp.val_id) | set(sp.test_id))
    with pytest.raises(ValueError, match="operand_width"):
        encode_arithmetic([(1, 2)], operand_width=-1)


def test_describe_flags_an_arm_below_the_id_floor_that_the_baseline_passes():
    from infoplane.experiments.arithmetic import describe

    def arm(id_exact: float) -> dict:
        return {"test_id_exact": {"mean": id_exact, "se": 0.01, "n": 8},
                "test_ood_masked_ce": {"mean": 1.0, "se": 0.1, "n": 8}}

    below = describe({"config": {"id_exact_floor": 0.5}, "stats": {"baseline": arm(0.95), "gapt": arm(0.39)}})
    assert any(s.startswith("Caveat") and "gapt (0.39" in s for s in below)
    both = describe({"config": {"id_exact_floor": 0.5}, "stats": {"baseline": arm(0.95), "gapt": arm(0.9)}})
    assert not any(s.startswith("Caveat") for s in both)
