"""`infoplane analyze | sweep | plot` end to end on a tiny model directory with its own tokenizer."""

from __future__ import annotations

import json

import pytest
from _probe_helpers import TEXTS, make_tiny_llama

from infoplane.cli import main
from infoplane.io import read_csv


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("cli")
    vocab = {"[UNK]": 0, "[PAD]": 1}
    for ch in sorted(set("".join(TEXTS))):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    run = root / "run"
    for step in (5, 50):
        d = run / f"step_{step:08d}"
        make_tiny_llama(seed=step, n_layers=2).save_pretrained(d)
        fast.save_pretrained(d)
    corpus = root / "texts.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "genre": "law" if i % 2 else "story"}) + "\n"
                              for i, t in enumerate(TEXTS)))
    return run, corpus


def test_analyze_sweep_plot(model_dir, tmp_path, capsys):
    run, corpus = model_dir
    ckpt = run / "step_00000005"
    common = ["--corpus", str(corpus), "--orders", "1", "2", "--max-tokens", "150", "--seq-len", "40",
              "--batch-size", "4", "--quiet", "--sequence-labels", "genre"]
    assert main(["analyze", str(ckpt), *common, "--all-layers-update", "--out", str(tmp_path / "a")]) == 0
    rows = read_csv(tmp_path / "a" / "probe.csv")
    assert {r["label_set"] for r in rows} == {"input_1", "output_1", "input_2", "output_2", "genre"}
    assert (tmp_path / "a" / "information_plane.png").is_file()
    assert "complexity" in capsys.readouterr().out

    assert main(["sweep", str(run), *common, "--out", str(tmp_path / "s"), "--no-plots"]) == 0
    assert sorted({r["step"] for r in read_csv(tmp_path / "s" / "sweep.csv")}) == [5, 50]
    assert main(["sweep", str(run), *common, "--out", str(tmp_path / "s"), "--no-plots"]) == 0
    assert "0 computed now" in capsys.readouterr().out

    assert main(["plot", str(tmp_path / "s" / "sweep_plane.csv"), "--out", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "information_plane.svg").is_file()


def test_cli_errors_are_reported(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert "complexity" in capsys.readouterr().out
