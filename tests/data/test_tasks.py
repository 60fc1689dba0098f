"""Tests for the synthetic GAPT tasks (arithmetic and conflicting experience)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.data.tasks import (
    ARITH_VOCAB,
    BOS,
    EOS,
    CharTokenizer,
    encode_arithmetic,
    make_arithmetic_examples,
    make_arithmetic_splits,
    make_conflict_task,
    make_conflict_teacher,
    sample_conflict_inputs,
    sample_operands,
)


def test_vocab_matches_reference_layout():
    assert len(ARITH_VOCAB) == 15
    tok = CharTokenizer()
    assert tok.encode("12 x 3 = 36") == [BOS, 6, 7, 4, 2, 4, 8, 4, 3, 4, 8, 11, EOS]
    assert tok.decode(tok.encode("7 x 8 = 56")) == "7 x 8 = 56"
    with pytest.raises(ValueError, match="vocabulary"):
        tok.encode("1 + 2")


def test_known_answer_encoding_and_masks():
    b = encode_arithmetic([(12, 3), (7, 8)])
    tok = CharTokenizer()
    assert tok.decode(b.ids[0][b.valid[0]]) == "12 x 3 = 36"
    assert tok.decode(b.ids[1][b.valid[1]]) == "7 x 8 = 56"
    # answer digits only
    assert tok.decode(b.ids[0][b.answer_mask[0]]) == "36"
    assert tok.decode(b.ids[1][b.answer_mask[1]]) == "56"
    # padding with eos after the real eos
    assert int(b.ids[1, b.eos_pos[1]]) == EOS and not bool(b.valid[1, b.eos_pos[1] + 1])
    loss, ans, exact = b.target_masks()
    assert loss.shape == (2, b.ids.shape[1] - 1)
    # shifted answer mask selects the answer digits as targets
    assert tok.decode(b.ids[0, 1:][ans[0]]) == "36"
    assert int(exact[0].sum()) == 3 and int(b.ids[0, 1:][exact[0]][-1]) == EOS


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(0, 3))
def test_operands_respect_digit_range(seed, lo, extra):
    hi = lo + extra
    x = sample_operands(200, lo, hi, np.random.default_rng(seed))
    digits = np.array([len(str(v)) for v in x])
    assert digits.min() >= lo and digits.max() <= hi


def test_examples_deterministic_distinct_and_correct_products():
    a = make_arithmetic_examples(500, 1, 2, seed=3)
    b = make_arithmetic_examples(500, 1, 2, seed=3)
    c = make_arithmetic_examples(500, 1, 2, seed=4)
    assert a == b and a != c
    assert len(set(a)) == 500
    batch = encode_arithmetic(a[:20])
    tok = CharTokenizer()
    for i, (x, y) in enumerate(a[:20]):
        assert tok.decode(batch.ids[i][batch.answer_mask[i]]) == str(x * y)


def test_splits_disjoint_and_ood_longer():
    s = make_arithmetic_splits(2000, 200, 200, train_digits=(1, 2), ood_digits=(3, 3), seed=0)
    sets = [set(s.train), set(s.val_id), set(s.test_id), set(s.test_ood)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not sets[i] & sets[j]
    assert all(len(str(a)) == 3 and len(str(b)) == 3 for a, b in s.test_ood)
    assert all(len(str(a)) <= 2 and len(str(b)) <= 2 for a, b in s.train)


def test_too_many_pairs_rejected():
    with pytest.raises(ValueError, match="at most"):
        make_arithmetic_examples(101, 1, 1, seed=0)
    with pytest.raises(ValueError, match="min_digits"):
        sample_operands(3, 2, 1, np.random.default_rng(0))


def test_conflict_inputs_means_and_determinism():
    x1 = sample_conflict_inputs(4000, 1, rng=0)
    x2 = sample_conflict_inputs(4000, 2, rng=0)
    assert torch.allclose(x1.mean(0)[:5], torch.ones(5), atol=0.02)
    assert torch.allclose(x1.mean(0)[5:], torch.zeros(5), atol=0.02)
    assert torch.allclose(x2.mean(0)[5:], torch.ones(5), atol=0.02)
    assert abs(float(x1.std(0).mean()) - 0.25) < 0.01
    assert torch.equal(x1, sample_conflict_inputs(4000, 1, rng=0))
    with pytest.raises(ValueError, match="which"):
        sample_conflict_inputs(3, 3)


def test_teacher_shifts_are_rank3_and_opposite():
    t = make_conflict_teacher(seed=1)
    assert torch.linalg.matrix_rank(t.dW1) == 3 and torch.linalg.matrix_rank(t.dW2) == 3
    ratio1 = float(t.dW1.norm() / t.W1.norm())
    assert 0.5 <= ratio1 <= 5.0
    x, y_pos = make_conflict_task(64, "positive", t, seed=0)
    # positive = theta0 + delta on p1; the same inputs under -delta give different targets
    assert torch.allclose(y_pos, t(x, +1))
    assert not torch.allclose(t(x, +1), t(x, -1))
    xn, yn = make_conflict_task(64, "negative", t, seed=0)
    assert torch.allclose(yn, t(xn, -1)) and float(xn[:, 5:].mean()) > 0.8
    t2 = make_conflict_teacher(seed=1)
    assert torch.equal(t.dW1, t2.dW1)
