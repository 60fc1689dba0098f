"""n-gram labels: valid positions and tuples vs brute force, collision-free ids, padding, singletons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoplane.probe.labels import (
    LabelCounter,
    NgramTable,
    SequenceLabelEncoder,
    check_orders,
    ngram_tuples,
    parse_label_set,
    valid_positions,
)


def brute_force(ids, mask, docs, pos, n_max, orders):
    """Per-position loop: segments are runs of real tokens with equal doc id and consecutive positions."""
    B, T = ids.shape
    valid = np.zeros((B, T), dtype=bool)
    for b in range(B):
        seg = [-1] * T
        sid = 0
        for t in range(T):
            if not mask[b, t]:
                continue
            cont = (t > 0 and mask[b, t - 1] and (docs is None or docs[b, t] == docs[b, t - 1])
                    and (pos is None or pos[b, t] == pos[b, t - 1] + 1))
            if not cont:
                sid += 1
            seg[t] = sid
        for t in range(T):
            if not mask[b, t]:
                continue
            hist = sum(1 for u in range(t) if seg[u] == seg[t])
            fut = sum(1 for u in range(t + 1, T) if seg[u] == seg[t])
            valid[b, t] = hist >= n_max - 1 and fut >= n_max
    tuples = {}
    for n in orders:
        where = [(b, t) for b in range(B) for t in range(T) if valid[b, t]]
        tuples[("input", n)] = [tuple(ids[b, t - n + 1:t + 1]) for b, t in where]
        tuples[("output", n)] = [tuple(ids[b, t + 1:t + n + 1]) for b, t in where]
    return valid, tuples


@st.composite
def batches(draw):
    B = draw(st.integers(1, 3))
    T = draw(st.integers(1, 14))
    vocab = draw(st.sampled_from([3, 7, 50_000, 2**40]))
    ids = np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=B * T, max_size=B * T))).reshape(B, T)
    mask = np.array(draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))).reshape(B, T)
    docs = None
    if draw(st.booleans()):
        docs = np.array(draw(st.lists(st.integers(0, 2), min_size=B * T, max_size=B * T))).reshape(B, T)
        docs = np.sort(docs, axis=1)
    pos = None
    if draw(st.booleans()):
        pos = np.array(draw(st.lists(st.integers(0, 3), min_size=B * T, max_size=B * T))).reshape(B, T)
        pos = np.cumsum(pos, axis=1) % 5
    orders = sorted(set(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))))
    return ids, mask, docs, pos, orders


@settings(max_examples=150, deadline=None)
@given(batches())
def test_valid_positions_and_tuples_match_brute_force(batch):
    ids, mask, docs, pos, orders = batch
    n_max = max(orders)
    want_valid, want = brute_force(ids, mask, docs, pos, n_max, orders)
    got_valid = valid_positions(torch.tensor(ids), n_max, torch.tensor(mask.astype(int)),
                                None if docs is None else torch.tensor(docs),
                                None if pos is None else torch.tensor(pos))
    np.testing.assert_array_equal(got_valid.numpy(), want_valid)
    for n in orders:
        for kind in ("input", "output"):
            got = ngram_tuples(torch.tensor(ids), got_valid, n, kind)
            assert [tuple(r) for r in got.tolist()] == [tuple(int(x) for x in r) for r in want[(kind, n)]]


def test_reference_range_without_padding():
    # positions n_max-1 .. L-n_max-1 (reference code's start = n-1, end = L-n exclusive)
    ids = torch.arange(10).unsqueeze(0)
    v = valid_positions(ids, 3)
    assert torch.nonzero(v[0]).flatten().tolist() == list(range(2, 7))
    assert ngram_tuples(ids, v, 3, "input")[0].tolist() == [0, 1, 2]
    assert ngram_tuples(ids, v, 3, "output")[0].tolist() == [3, 4, 5]
    assert ngram_tuples(ids, v, 1, "output")[-1].tolist() == [7]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2**62), min_size=0, max_size=12), min_size=1, max_size=4),
       st.integers(1, 3))
def test_left_and_right_padding_give_the_same_labels(seqs, n_max):
    T = max(len(s) for s in seqs) + 2
    right = torch.zeros(len(seqs), T, dtype=torch.long)
    left = torch.zeros_like(right)
    mr, ml = torch.zeros_like(right), torch.zeros_like(right)
    for i, s in enumerate(seqs):
        if s:
            right[i, :len(s)] = torch.tensor(s)
            mr[i, :len(s)] = 1
            left[i, T - len(s):] = torch.tensor(s)
            ml[i, T - len(s):] = 1
    vr, vl = valid_positions(right, n_max, mr), valid_positions(left, n_max, ml)
    assert int(vr.sum()) == int(vl.sum()) == sum(max(0, len(s) - 2 * n_max + 1) for s in seqs)
    for n in range(1, n_max + 1):
        for kind in ("input", "output"):
            assert torch.equal(ngram_tuples(right, vr, n, kind), ngram_tuples(left, vl, n, kind))


def test_ngram_ids_are_collision_free_for_huge_vocab_and_order_4():
    rng = np.random.default_rng(0)
    vocab = 2**18  # V^4 = 2^72: the reference's int64 code t0*V^3 + t1*V^2 + t2*V + t3 wraps around
    base = rng.integers(0, vocab, size=(500, 4))
    # t0 and t0 + 2^10 give the same wrapped code (2^10 * V^3 = 2^64): collisions for the reference code
    tricky = base.copy()
    tricky[:, 0] = (tricky[:, 0] + 2**10) % vocab
    powers = np.uint64(vocab) ** np.arange(3, -1, -1, dtype=np.uint64)

    def wrapped(t):
        return (t.astype(np.uint64) * powers).sum(1)

    assert (wrapped(base) == wrapped(tricky)).all()
    tuples = np.concatenate([base, tricky, base[:100]])
    table = NgramTable()
    ids = np.concatenate([table.encode(torch.tensor(tuples[:700])).numpy(),
                          table.encode(torch.tensor(tuples[700:])).numpy()])
    # ids equal exactly when tuples are equal (brute force over all pairs)
    same_tuple = (tuples[:, None, :] == tuples[None, :, :]).all(-1)
    same_id = ids[:, None] == ids[None, :]
    np.testing.assert_array_equal(same_tuple, same_id)
    assert table.n_ids(4) == len({tuple(r) for r in tuples.tolist()})
    np.testing.assert_array_equal(table.decode(4)[ids], tuples)  # persistent, invertible table


def test_singletons_are_marked_across_batches():
    counter = LabelCounter()
    counter.add("x", torch.tensor([0, 1, 2]))
    counter.add("x", torch.tensor([1, 3, 3]))
    assert counter.mark_singletons("x", torch.tensor([0, 1, 2, 3])).tolist() == [-1, 1, -1, 3]
    s = counter.summary("x")
    assert s == {"n_labels": 4, "n_singletons": 2, "singleton_fraction": 2 / 6}
    with pytest.raises(ValueError, match=">= 0"):
        counter.add("x", torch.tensor([-1]))


def test_sequence_label_encoder_is_order_independent():
    a = SequenceLabelEncoder({"genre": ["law", "poetry", "law", "history"]})
    b = SequenceLabelEncoder({"genre": ["history", "law", "poetry"]})
    assert [a.encode("genre", v) for v in ("history", "law", "poetry")] == [0, 1, 2]
    assert a.vocab == b.vocab
    with pytest.raises(ValueError, match="missing"):
        SequenceLabelEncoder({"genre": ["law", None]})


def test_bad_inputs():
    with pytest.raises(ValueError, match="integers >= 1"):
        check_orders([0, 1])
    with pytest.raises(ValueError, match="integers >= 1"):
        check_orders([])
    assert check_orders([3, 1, 2, 1]) == (1, 2, 3)
    with pytest.raises(ValueError, match="shape of input_ids"):
        valid_positions(torch.zeros(2, 5, dtype=torch.long), 1, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        valid_positions(torch.zeros(2, 2, 2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="kind"):
        ngram_tuples(torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.bool), 1, "middle")
    assert parse_label_set("input_12") == ("input", 12)
    assert parse_label_set("output_1") == ("output", 1)
    assert parse_label_set("genre") == ("sequence", None)
