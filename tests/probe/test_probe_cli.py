"""`infoplane analyze | sweep | plot` end to end on a tiny model directory with its own tokenizer."""

from __future__ import annotations

import json

import pytest
from _probe_helpers import TEXTS, make_tiny_llama

from infoplane.cli import build_parser, main
from infoplane.io import read_csv
from infoplane.probe.config import ProbeConfig
from infoplane.probe.result import ProbeResult


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
    printed = capsys.readouterr().out
    summary = ProbeResult(rows, read_csv(tmp_path / "a" / "probe_plane.csv"), {}).summary()
    for line in summary.splitlines()[1:]:  # the CLI prints ProbeResult.summary(), not a table of its own
        assert line in printed
    assert "complexity" in printed and "sequence label 'genre'" in printed
    meta = json.loads((tmp_path / "a" / "probe.json").read_text())
    assert meta["all_layers_update"] is True and meta["null"] is True and meta["orders"] == [1, 2]

    assert main(["sweep", str(run), *common, "--out", str(tmp_path / "s"), "--no-plots"]) == 0
    assert sorted({r["step"] for r in read_csv(tmp_path / "s" / "sweep.csv")}) == [5, 50]
    assert main(["sweep", str(run), *common, "--out", str(tmp_path / "s"), "--no-plots"]) == 0
    assert "0 computed now" in capsys.readouterr().out

    assert main(["plot", str(tmp_path / "s" / "sweep_plane.csv"), "--out", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "information_plane.svg").is_file()

    # explicit checkpoint paths instead of the run directory; --no-null reaches the ProbeConfig
    assert main(["sweep", str(run / "step_00000050"), str(ckpt), *common, "--no-null", "--no-plots",
                 "--out", str(tmp_path / "s2")]) == 0
    meta = json.loads((tmp_path / "s2" / "sweep.json").read_text())
    assert [c["step"] for c in meta["checkpoints"]] == [5, 50] and meta["settings"]["null"] is False
    # other settings in the same --out are refused with a clear message, not silently mixed
    assert main(["sweep", str(run), *common, "--seed", "3", "--no-plots", "--out", str(tmp_path / "s2")]) == 2
    assert "other settings" in capsys.readouterr().err


def test_flags_mirror_probe_config_and_print_its_defaults(capsys):
    parser = build_parser()
    args = parser.parse_args(["analyze", "m", "--out", "o"])
    defaults = ProbeConfig()
    for name in ProbeConfig.field_names():  # one flag per setting, default taken from the dataclass
        value = getattr(args, name)
        assert (tuple(value) if isinstance(value, list) else value) == getattr(defaults, name), name
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {defaults.max_tokens})" in text and f"(default: {defaults.calibration})" in text
    assert "--quiet" in text and "--no-progress" not in text


def test_cli_errors_are_reported(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--min-count", "0"]) == 2
    assert "ProbeConfig.min_count must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert "complexity" in capsys.readouterr().out
