"""sweep(): one trajectory table over checkpoints, resumable without recomputation."""

from __future__ import annotations

import pytest
from _probe_helpers import TEXTS, CharTokenizer, make_tiny_llama

from infoplane.data.corpus import Corpus, Document
from infoplane.io import read_csv
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.sweep import list_checkpoints, sweep

CFG = ProbeConfig(orders=(1, 2), max_tokens=120, seq_len=40, batch_size=4, seed=0)
IDS = [CharTokenizer().encode(t) for t in TEXTS]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    for i, step in enumerate((100, 20, 3)):  # names sort differently from steps on purpose
        make_tiny_llama(seed=i, n_layers=2).save_pretrained(root / f"step_{step}")
    return root


def test_list_checkpoints_orders_by_step(run_dir):
    ckpts = list_checkpoints(run_dir)
    assert [c.step for c in ckpts] == [3, 20, 100]
    assert [c.name for c in ckpts] == ["step_3", "step_20", "step_100"]
    with pytest.raises(FileNotFoundError):
        list_checkpoints(run_dir / "missing")
    with pytest.raises(ValueError, match="no checkpoints"):
        list_checkpoints(_empty(run_dir))


def _empty(root):
    d = root.parent / "empty_run"
    d.mkdir(exist_ok=True)
    return d


def test_interrupted_sweep_resumes_without_recomputing(run_dir, tmp_path):
    calls = []

    def crashing(path, corpus, config, **kw):
        if len(calls) == 1:
            raise KeyboardInterrupt("simulated crash after the first checkpoint")
        calls.append(path)
        return analyze(path, corpus, config, **kw)

    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        sweep(run_dir, IDS, CFG, out=out, progress=False, analyze_fn=crashing)
    assert len(calls) == 1 and (out / "checkpoints" / "step_3.csv").is_file()
    assert not (out / "checkpoints" / "step_20.csv").exists()

    resumed_calls = []

    def counting(path, corpus, config, **kw):
        resumed_calls.append(path)
        return analyze(path, corpus, config, **kw)

    res = sweep(run_dir, IDS, CFG, out=out, progress=False, analyze_fn=counting)
    assert [p.split("/")[-1] for p in resumed_calls] == ["step_20", "step_100"]  # step_3 not recomputed
    assert res.computed == ["step_20", "step_100"]
    table = read_csv(out / "sweep.csv")
    assert sorted({r["step"] for r in table}) == [3, 20, 100]
    assert len(table) == 3 * 3 * 4  # checkpoints x hidden states x label sets
    # the resumed rows equal a fresh computation of that checkpoint (same sample and reference points)
    fresh = analyze(str(run_dir / "step_3"), IDS, CFG, progress=False, model_name="step_3", step=3)
    old = {(r["layer"], r["label_set"]): r["mi"] for r in table if r["step"] == 3}
    for r in fresh.rows:
        assert old[(r["layer"], r["label_set"])] == pytest.approx(r["mi"], abs=1e-12)
    means = [r for r in res.plane if r["layer"] == "mean" and r["n"] == 1]
    assert sorted(r["step"] for r in means) == [3, 20, 100]
    # a third run recomputes nothing; other settings are refused
    again = []
    sweep(run_dir, IDS, CFG, out=out, progress=False, analyze_fn=lambda *a, **k: again.append(1))
    assert again == []
    with pytest.raises(ValueError, match="other settings.*config"):
        sweep(run_dir, IDS, CFG.replace(seed=1), out=out, progress=False)


def test_resume_guard_tells_in_memory_corpora_apart(run_dir, tmp_path):
    """Two different lists of texts (or token ids, or Corpus objects) must never resume into each other;
    the same content in another container resumes."""
    tok = CharTokenizer()
    texts_a, texts_b = TEXTS[:6], TEXTS[2:]
    never = []

    def must_not_run(*a, **k):
        never.append(a[0])
        raise AssertionError("resumed sweep recomputed a checkpoint")

    cases = [
        ("texts", texts_a, texts_b, list(reversed(texts_a))),
        ("token_ids", [tok.encode(t) for t in texts_a], [tok.encode(t) for t in texts_b], None),
        ("corpus", Corpus([Document(t) for t in texts_a], "iterable"),
         Corpus([Document(t) for t in texts_b], "iterable"), None),
    ]
    for name, a, b, reordered in cases:
        out = tmp_path / name
        sweep(run_dir, a, CFG, out=out, tokenizer=tok, progress=False)
        # same content again (a fresh container with equal items): resumes, computes nothing
        same = Corpus(list(a.documents), "other name") if isinstance(a, Corpus) else [x for x in a]
        res = sweep(run_dir, same, CFG, out=out, tokenizer=tok, progress=False, analyze_fn=must_not_run)
        assert res.computed == [] and never == []
        with pytest.raises(ValueError, match="corpus_sha256"):  # same type, same length, other texts
            sweep(run_dir, b, CFG, out=out, tokenizer=tok, progress=False, analyze_fn=must_not_run)
        if reordered is not None:  # the order of the texts is content too (it fixes the seeded sample)
            with pytest.raises(ValueError, match="corpus_sha256"):
                sweep(run_dir, reordered, CFG, out=out, tokenizer=tok, progress=False,
                      analyze_fn=must_not_run)
    with pytest.raises(ValueError, match="corpus_sha256"):  # per-sequence labels are content as well
        sweep(run_dir, cases[1][1], CFG, out=tmp_path / "token_ids", sequence_values={"g": [0] * 6},
              progress=False, analyze_fn=must_not_run)
    assert never == []


def test_sweep_over_native_checkpoints(tmp_path):
    from infoplane.data.tokenizer import ByteTokenizer
    from infoplane.train import checkpoint as ckpt
    from infoplane.train.model import GPT, GPTConfig

    for step in (10, 1000):
        model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, d_model=16, block_size=64, seed=step))
        ckpt.save_checkpoint(tmp_path / "checkpoints", step, model, tokenizer=ByteTokenizer())
    res = sweep(tmp_path / "checkpoints", TEXTS, CFG, out=tmp_path / "out", progress=False)
    assert [c["step"] for c in res.metadata["checkpoints"]] == [10, 1000]
    assert sorted({r["step"] for r in res.rows}) == [10, 1000]
    hashes = {m["weights_sha256"] for m in res.metadata["per_checkpoint"].values()}
    refs = {m["reference_hash"] for m in res.metadata["per_checkpoint"].values()}
    assert len(hashes) == 2 and len(refs) == 1  # different weights, same reference points
