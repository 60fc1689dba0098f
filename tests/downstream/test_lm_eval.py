"""A tiny local task evaluates a tiny native checkpoint and a tiny HF model through lm-eval, offline."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _helpers import sentences

from infoplane.downstream.tasks import SuiteConfig, build_suite

pytest.importorskip("lm_eval", reason="lm-eval is the optional 'downstream' extra (make setup installs it)")

from infoplane.downstream.evaluate import aggregate_score, evaluate, native_lm, read_results, write_results  # noqa: E402

SMALL = SuiteConfig(n_ppl=2, ppl_chars=150, n_cloze=4, n_pairs=4, n_preference=2, n_arith=3)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("suite")
    build_suite(sentences(), d, seed=0, config=SMALL)
    return d


def _native_checkpoint(tmp_path):
    from infoplane.data.tokenizer import ByteTokenizer
    from infoplane.train.checkpoint import load_causal_lm
    from infoplane.train.model import GPT, GPTConfig

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, d_model=32, block_size=48))
    return gpt, ByteTokenizer(), load_causal_lm


def _manual_loglik(gpt, ids_ctx, ids_cont, block):
    whole = (ids_ctx + ids_cont)[-(block + 1):]  # the context is cut from the left to fit the window
    with torch.no_grad():
        lp = torch.log_softmax(gpt(torch.tensor([whole[:-1]])).logits.double(), -1)[0]
    start = len(whole) - 1 - len(ids_cont)
    return float(sum(lp[start + i, t] for i, t in enumerate(ids_cont)))


def test_native_model_through_lm_eval(suite, tmp_path):
    gpt, tok, _ = _native_checkpoint(tmp_path)
    lm = native_lm(gpt, tok, batch_size=3)
    out = evaluate(lm, suite=suite, tasks=["infoplane_brown_cloze", "infoplane_brown_pairs",
                                           "infoplane_brown_ppl"], log_samples=True)
    res = out["results"]
    assert 0.0 <= res["infoplane_brown_cloze"]["acc,none"] <= 1.0
    assert res["infoplane_brown_ppl"]["bits_per_byte,none"] > 0
    # lm-eval's per-choice log-likelihoods are the model's own: recompute one by hand
    doc = out["samples"]["infoplane_brown_cloze"][0]
    ctx, cont = doc["arguments"][0]
    ll = doc["resps"][0][0][0]
    want = _manual_loglik(gpt, list(tok.encode(ctx).ids), list(tok.encode(cont).ids), 48)
    assert ll == pytest.approx(want, rel=1e-9, abs=1e-9)
    # rolling log-likelihood: every byte predicted once; the window (48) is shorter than the passage
    text = json.loads((suite / "infoplane_brown_ppl.jsonl").read_text().splitlines()[0])["text"]
    assert len(text) > 48
    (rolling,) = lm.loglikelihood_rolling([type("R", (), {"args": (text,)})()])
    assert math.isfinite(rolling) and rolling < 0
    # lm-eval's own output format round-trips through the reader
    path = write_results(out, tmp_path / "native", model_name="tiny-native")
    rows = read_results([tmp_path / "native"])
    assert {r["model"] for r in rows} == {"tiny-native"} and path.name.startswith("results_")
    agg = aggregate_score(rows)["tiny-native"]
    assert agg["aggregate"] == pytest.approx((res["infoplane_brown_cloze"]["acc,none"]
                                              + res["infoplane_brown_pairs"]["acc,none"]) / 2)


def test_native_arithmetic_exact_match_greedy(suite):
    from infoplane.data.tasks import CharTokenizer
    from infoplane.train.model import GPT, GPTConfig

    gpt = GPT(GPTConfig(vocab_size=15, n_layer=1, n_head=2, d_model=16, block_size=32))
    out = evaluate(native_lm(gpt, CharTokenizer()), suite=suite, tasks=["infoplane_arith_exact"],
                   log_samples=True)
    samples = out["samples"]["infoplane_arith_exact"]
    em = [float(s["exact_match"]) for s in samples]
    assert out["results"]["infoplane_arith_exact"]["exact_match,none"] == pytest.approx(sum(em) / len(em))
    for s in samples:  # the greedy output is what the adapter decodes, cut at the stop strings
        assert set(s["filtered_resps"][0]) <= set("0123456789x= ")


def test_hf_model_through_lm_eval(suite, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from infoplane.data.tokenizer import train_bpe_tokenizer
    from infoplane.downstream.evaluate import hf_lm

    texts = [s.text for s in sentences()]
    bpe = train_bpe_tokenizer(texts, 300, seed=0)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2,
                                       n_head=2)).eval()
    out = evaluate(hf_lm(model, tok, batch_size=2), suite=suite, tasks=["infoplane_brown_pairs"])
    acc = out["results"]["infoplane_brown_pairs"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    path = write_results(out, tmp_path / "hf", model_name="tiny-hf")
    assert json.loads(path.read_text())["results"]["infoplane_brown_pairs"]["acc,none"] == acc


def test_errors_are_named(suite):
    from infoplane.data.tokenizer import ByteTokenizer
    from infoplane.train.model import GPT, GPTConfig

    gpt = GPT(GPTConfig(vocab_size=256, n_layer=1, n_head=2, d_model=16, block_size=16))
    with pytest.raises(ValueError, match="not in suite"):
        evaluate(native_lm(gpt, ByteTokenizer()), suite=suite, tasks=["nope"])
    with pytest.raises(ValueError, match="lm_eval LM"):
        evaluate(gpt, suite=suite)
    with pytest.raises(ValueError, match="HFLM"):
        native_lm(torch.nn.Linear(2, 2), ByteTokenizer())
    with pytest.raises(ValueError, match="batch_size"):
        native_lm(gpt, ByteTokenizer(), batch_size=0)
