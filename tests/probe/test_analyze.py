"""analyze(): sample size, determinism, padding invariance, input forms, sequence labels, files, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _probe_helpers import TEXTS, VOCAB, CharTokenizer, make_tiny_llama

from infoplane.data.corpus import Document
from infoplane.io import file_sha256, read_csv
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.models import load_model
from infoplane.probe.plan import prepare_plan

CFG = ProbeConfig(orders=(1, 2), max_tokens=240, seq_len=48, batch_size=3, seed=1)


def _values(res, cols=("entropy", "mi", "mi_null", "capacity")):
    return {(r["layer"], r["label_set"], c): r[c] for r in res.rows for c in cols}


def test_rows_sample_size_metadata_and_files(tiny_llama, char_tok, tmp_path):
    res = analyze(tiny_llama, TEXTS, CFG, tokenizer=char_tok, out=tmp_path, progress=False)
    assert res.metadata["n_samples"] == 240  # exactly max_tokens positions
    assert len(res.rows) == 4 * 4  # 4 hidden states x {input,output} x {1,2}
    assert {r["label_set"] for r in res.rows} == {"input_1", "output_1", "input_2", "output_2"}
    for r in res.rows:
        assert r["n_samples"] == 240 and r["model"] == "LlamaForCausalLM"
        assert 0 <= r["mi"] <= r["capacity"] + 1e-9 <= r["entropy"] + 1e-9
    # chain rule / refinement: a bigram never carries less information than its last token
    for layer in range(4):
        i1 = [r["mi"] for r in res.rows if r["layer"] == layer and r["label_set"] == "input_1"][0]
        i2 = [r["mi"] for r in res.rows if r["layer"] == layer and r["label_set"] == "input_2"][0]
        assert i2 >= i1 - 1e-8  # float32 per-sample entropies of singletons: ~1e-9 rounding
    md = res.metadata
    for key in ("weights_sha256", "corpus_fingerprint", "reference_hash", "temperature", "n_bins", "seed",
                "tokens_forwarded", "versions", "label_stats"):
        assert key in md
    assert md["n_hidden_states"] == 4 and md["hidden_sites"][-1] == "norm"
    for r in res.rows:  # pre-pass counts (singletons = -1) agree with the accumulator's label statistics
        assert md["label_stats"][r["label_set"]]["n_labels"] == r["n_labels"]
        assert md["label_stats"][r["label_set"]]["singleton_fraction"] == pytest.approx(r["singleton_mass"])
    rows = read_csv(tmp_path / "probe.csv")
    assert len(rows) == 16 and rows[0]["label_set"] == res.rows[0]["label_set"]
    assert len(read_csv(tmp_path / "probe_plane.csv")) == len(res.plane)
    assert json.loads((tmp_path / "probe.json").read_text())["n_samples"] == 240


def test_deterministic_and_seed_dependent(tiny_llama, char_tok):
    a = analyze(tiny_llama, TEXTS, CFG, tokenizer=char_tok, progress=False)
    b = analyze(tiny_llama, TEXTS, CFG, tokenizer=char_tok, progress=False)
    assert _values(a) == _values(b)
    c = analyze(tiny_llama, TEXTS, CFG.replace(seed=2), tokenizer=char_tok, progress=False)
    assert c.metadata["reference_hash"] != a.metadata["reference_hash"]


def test_left_and_right_padding_give_the_same_statistics(tiny_llama, char_tok):
    right = analyze(tiny_llama, TEXTS, CFG.replace(padding_side="right"), tokenizer=char_tok, progress=False)
    left = analyze(tiny_llama, TEXTS, CFG.replace(padding_side="left"), tokenizer=char_tok, progress=False)
    vr, vl = _values(right), _values(left)
    assert vr.keys() == vl.keys()
    np.testing.assert_allclose([vl[k] for k in vr], [vr[k] for k in vr], rtol=0, atol=1e-6)


def test_token_ids_equal_texts(tiny_llama, char_tok):
    by_text = analyze(tiny_llama, TEXTS, CFG, tokenizer=char_tok, progress=False)
    ids = [char_tok.encode(t) for t in TEXTS]
    by_ids = analyze(tiny_llama, ids, CFG, progress=False)
    assert _values(by_ids) == _values(by_text)
    by_tensor_rows = analyze(tiny_llama, [torch.tensor(s) for s in ids], CFG, progress=False)
    assert _values(by_tensor_rows) == _values(by_text)


def test_packed_rows_with_document_ids(tiny_llama):
    # two documents packed in one row: no n-gram may straddle the boundary
    ids = torch.arange(20).unsqueeze(0) % 100
    docs = torch.tensor([[0] * 12 + [1] * 8])
    res = analyze(tiny_llama, {"input_ids": ids, "document_ids": docs},
                  ProbeConfig(orders=(1, 2), max_tokens=None), progress=False)
    assert res.metadata["n_samples"] == (12 - 3) + (8 - 3)


def test_sequence_labels_known_answers(tiny_llama, char_tok):
    same = [Document(t, {"genre": "law", "unique": i}) for i, t in enumerate(TEXTS)]
    res = analyze(tiny_llama, same, CFG.replace(sequence_labels=("genre", "unique")), tokenizer=char_tok,
                  progress=False)
    for r in res.rows:
        if r["label_set"] == "genre":  # one value for every text: I = 0 exactly
            assert abs(r["mi"]) < 1e-12 and r["kind"] == "sequence"
        if r["label_set"] == "unique":
            assert r["mi"] > 0
            # a per-text label's null permutes labels across texts: "one label per text" stays one label per
            # text, so its null equals the MI (a position shuffle would put the null far below it)
            assert r["mi_null"] == pytest.approx(r["mi"], abs=1e-9)
    plane_means = [r for r in res.plane if r["layer"] == "mean"]
    assert all("seq_mi_genre" in r for r in plane_means)
    with pytest.raises(ValueError, match="missing"):
        analyze(tiny_llama, same, CFG.replace(sequence_labels=("book",)), tokenizer=char_tok, progress=False)
    with pytest.raises(ValueError, match="clashes"):
        CFG.replace(sequence_labels=("input_1",))


def test_token_ids_with_sequence_values_equal_documents_with_labels(tiny_llama, char_tok):
    genres = ["law" if i % 3 else "story" for i in range(len(TEXTS))]
    docs = [Document(t, {"genre": g}) for t, g in zip(TEXTS, genres, strict=True)]
    by_docs = analyze(tiny_llama, docs, CFG.replace(sequence_labels=("genre",)), tokenizer=char_tok,
                      progress=False)
    ids = [char_tok.encode(t) for t in TEXTS]
    by_ids = analyze(tiny_llama, ids, CFG, sequence_values={"genre": genres}, progress=False)
    assert _values(by_ids) == _values(by_docs) and "genre" in {r["label_set"] for r in by_ids.rows}
    with pytest.raises(ValueError, match="sequence_values"):  # names without values for token ids
        analyze(tiny_llama, ids, CFG.replace(sequence_labels=("genre",)), progress=False)
    with pytest.raises(ValueError, match="token-id input"):  # documents carry their own labels
        analyze(tiny_llama, docs, CFG, tokenizer=char_tok, sequence_values={"genre": genres}, progress=False)
    with pytest.raises(ValueError, match="one per sequence"):
        analyze(tiny_llama, ids, CFG, sequence_values={"genre": genres[:-1]}, progress=False)


def test_hf_directory_and_errors(tiny_llama, char_tok, tmp_path):
    d = tmp_path / "tiny"
    tiny_llama.save_pretrained(d)
    loaded = load_model(d)
    assert loaded.kind == "hf" and loaded.tokenizer is None
    assert loaded.weights_sha256 == file_sha256(d / "model.safetensors")
    ids = [char_tok.encode(t) for t in TEXTS]
    from_dir = analyze(d, ids, CFG, progress=False)
    assert _values(from_dir) == _values(analyze(tiny_llama, ids, CFG, progress=False))
    assert from_dir.metadata["model"] == "tiny"
    with pytest.raises(ValueError, match="tokenizer"):
        analyze(d, TEXTS, CFG, progress=False)  # texts but no tokenizer anywhere
    with pytest.raises(FileNotFoundError, match="not found"):
        analyze(tmp_path / "nope", ids, CFG, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="gguf"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="no text"):
        analyze(tiny_llama, [[1, 2]], CFG, progress=False)
    with pytest.raises(FileNotFoundError, match="corpus"):
        prepare_plan("/no/such/corpus.txt", tokenizer=CharTokenizer())
    with pytest.raises(ValueError, match="ProbeConfig"):
        analyze(tiny_llama, ids, {"orders": (1,)}, progress=False)  # settings are a ProbeConfig, not a dict
    with pytest.raises(TypeError):
        analyze(tiny_llama, ids, CFG, None)  # everything after the config is keyword-only


def test_native_checkpoint(tmp_path):
    from infoplane.data.tokenizer import ByteTokenizer
    from infoplane.train import checkpoint as ckpt
    from infoplane.train.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, d_model=16, block_size=64))
    path = ckpt.save_checkpoint(tmp_path / "checkpoints", 7, model, tokenizer=ByteTokenizer())
    loaded = load_model(path)
    assert loaded.kind == "native" and loaded.step == 7 and loaded.tokenizer is not None
    res = analyze(path, TEXTS, CFG.replace(max_tokens=100), progress=False)
    assert res.metadata["n_hidden_states"] == 3 and res.metadata["step"] == 7
    assert {r["step"] for r in res.rows} == {7}


def test_all_layers_update_equals_per_layer_updates(tiny_llama, char_tok):
    per_layer = analyze(tiny_llama, TEXTS, CFG, tokenizer=char_tok, progress=False)
    buffered = analyze(tiny_llama, TEXTS, CFG.replace(all_layers_update=True), tokenizer=char_tok,
                       progress=False)
    a, b = _values(per_layer), _values(buffered)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=0, atol=1e-12)


def test_seq_len_is_capped_at_the_model_context():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=24)
    model = LlamaForCausalLM(cfg).eval()
    with pytest.warns(UserWarning, match="exceeds the model's context length 24"):
        cfg = ProbeConfig(orders=(1,), max_tokens=64, seq_len=128, batch_size=4, null=False)
        res = analyze(model, TEXTS, cfg, tokenizer=CharTokenizer(), progress=False)
    assert res.metadata["seq_len"] == 24
    assert res.metadata["n_samples"] == 64


def test_min_count_pools_rare_labels_and_never_raises_mi():
    cfg = CFG.replace(orders=(1, 2, 3), null=False)
    model = make_tiny_llama(seed=2)
    exact = analyze(model, TEXTS, cfg, tokenizer=CharTokenizer(), progress=False)
    pooled = analyze(model, TEXTS, cfg.replace(min_count=3), tokenizer=CharTokenizer(), progress=False)
    assert pooled.metadata["min_count"] == 3
    stats = pooled.metadata["label_stats"]["input_3"]
    assert 0 < stats["pooled_fraction"] <= 1 and stats["pooled_fraction"] >= stats["singleton_fraction"]
    want = {(r["layer"], r["label_set"]): r for r in exact.rows}
    for r in pooled.rows:
        w = want[(r["layer"], r["label_set"])]
        assert r["entropy"] == pytest.approx(w["entropy"], abs=1e-12)  # labels do not touch H(Z)
        assert r["mi"] <= w["mi"] + 1e-9  # merging labels never adds information
    tri = [r for r in pooled.rows if r["label_set"] == "input_3"]
    assert any(r["mi"] < want[(r["layer"], "input_3")]["mi"] - 1e-6 for r in tri)
    with pytest.raises(ValueError, match="min_count"):
        cfg.replace(min_count=0)

