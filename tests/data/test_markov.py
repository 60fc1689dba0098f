"""Known-answer check of the method on a k-th order Markov source: the source's own structure, and where a
tiny trained GPT sits in the plane relative to it (context beyond k adds nothing beyond the null)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from infoplane.data.markov import MarkovSource
from infoplane.probe.config import ProbeConfig
from infoplane.probe.monitor import InfoPlaneMonitor
from infoplane.train.config import TrainConfig
from infoplane.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def plug_in_conditional_entropy(x: np.ndarray, n: int) -> float:
    """H(X_t | X_{t-n..t-1}) in nats from counts of (n+1)-grams of the stream ``x``."""
    joint = Counter(tuple(x[i:i + n + 1]) for i in range(len(x) - n))
    ctx = Counter()
    for g, c in joint.items():
        ctx[g[:-1]] += c
    total = sum(joint.values())
    return -sum(c / total * math.log(c / ctx[g[:-1]]) for g, c in joint.items())


def test_source_needs_exactly_the_last_k_tokens():
    src = MarkovSource(vocab_size=6, order=2, concentration=0.2, seed=0)
    assert np.allclose(src.transitions.sum(1), 1.0) and src.transitions.shape == (36, 6)
    pi = src.stationary()
    assert pi.sum() == pytest.approx(1.0) and (pi >= 0).all()
    x = src.sample(60_000, seed=1).numpy()
    h = [plug_in_conditional_entropy(x, n) for n in (0, 1, 2, 3)]
    assert h[0] == pytest.approx(src.marginal_entropy(), abs=0.02)
    assert h[2] == pytest.approx(src.entropy_rate(), abs=0.02)  # plug-in bias ~ contexts * V / (2N)
    assert h[1] > h[2] + 0.1  # one token of context is not enough ...
    assert abs(h[3] - h[2]) < 0.02  # ... and a third one adds nothing
    assert torch.equal(src.sample(100, seed=3), src.sample(100, seed=3))
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        MarkovSource(order=0)
    with pytest.raises(ValueError, match="concentration must be a finite number > 0"):
        MarkovSource(concentration=0.0)


def test_trained_gpt_complexity_stops_at_the_source_order(tmp_path):
    src = MarkovSource(vocab_size=6, order=2, concentration=0.2, seed=0)
    splits = src.splits(20_000, 3_000)
    steps = 400
    cfg = TrainConfig(model={"n_layer": 2, "n_head": 2, "d_model": 32, "block_size": 32}, steps=steps,
                      batch_size=16, warmup_steps=5, lr=3e-3, eval_every=0, eval_batches=4,
                      checkpoint_steps="final", progress=False, out_dir=str(tmp_path))
    ids = splits.val.tolist()
    probe_set = [ids[i:i + 32] for i in range(0, len(ids) - 31, 32)]
    mon = InfoPlaneMonitor(probe_set, ProbeConfig(orders=(1, 2, 3), max_tokens=2000, seq_len=32,
                                                  batch_size=16, n_bins=16), every=steps, out_dir=tmp_path)
    tr = Trainer(cfg, splits=splits, vocab_size=6, callbacks=[mon])
    mon.probe(tr.model, 0)
    res = tr.run()
    # known CE limits: below the marginal entropy (context is used), never below the entropy rate
    assert src.entropy_rate() - 0.05 < res.final_val_ce < src.marginal_entropy() - 0.3

    def excess(step: int, n: int) -> float:  # null-corrected complexity I(X_n;Z) - null, layer mean
        r = next(r for r in mon.rows if r["step"] == step and r["layer"] == "mean" and r["n"] == n)
        return r["complexity"] - r["complexity_null"]

    # the k-th token of context is learnt: its null-corrected increment grows with training
    assert excess(steps, 2) - excess(steps, 1) > 0.05
    assert excess(steps, 2) - excess(steps, 1) > 2 * (excess(0, 2) - excess(0, 1))
    # context beyond k adds nothing beyond the null
    assert abs(excess(steps, 3) - excess(steps, 2)) < 0.02
