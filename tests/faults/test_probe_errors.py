"""Issue 14 items 7-8 (probe side): errors that name the flag, file, text or token, raised before the
expensive work (model loading, forward passes); zero hidden states named or skipped and counted."""

from __future__ import annotations

import re
import sys
import warnings

import pytest
import torch

from infoplane.cli import main
from infoplane.probe.analyze import analyze
from infoplane.probe.config import ProbeConfig
from infoplane.probe.sweep import list_checkpoints, sweep

ANALYZE = sys.modules["infoplane.probe.analyze"]  # the package exports the function under the same name

VOCAB = 64
CFG = ProbeConfig(orders=(1,), max_tokens=None, seq_len=32, n_bins=16)
IDS = [[(7 * i + 3 * k) % 50 + 10 for k in range(20)] for i in range(6)]  # ids 10..59, never 0..9


def _tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def _never(*a, **k):
    raise AssertionError("expensive work started before the input was validated")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_token_ids_outside_the_vocabulary_are_named_before_the_forward(monkeypatch):
    ids = [list(row) for row in IDS]
    ids[4][6] = VOCAB + 36
    monkeypatch.setattr(ANALYZE, "run_planned", _never)
    with pytest.raises(ValueError, match=r"token id 100 \(text 4, position 6\) is outside the vocabulary of "
                                         r"model 'LlamaForCausalLM', which has 64 ids \(0\.\.63\); 1 token"):
        analyze(_tiny_llama(), ids, CFG, progress=False)


def test_zero_hidden_state_names_layer_text_and_token_or_is_skipped_and_counted():
    model = _tiny_llama()
    with torch.no_grad():
        model.get_input_embeddings().weight[5].zero_()  # e.g. an unknown character mapped to a zero pad row
    ids = [list(row) for row in IDS]
    ids[2][7] = 5
    ids[2][9] = 5
    named = (r"got 2 zero vector\(s\): hidden state 0 \(layers\.0:input\), text 2, position 7, token id 5; "
             r"hidden state 0 .* text 2, position 9, token id 5\. .*zero_policy='skip'")
    with pytest.raises(ValueError, match=named):
        analyze(model, ids, CFG, progress=False)
    with pytest.warns(UserWarning, match=r"skipped 2 position\(s\) whose hidden state is exactly zero"):
        res = analyze(model, ids, CFG.replace(zero_policy="skip"), progress=False)
    assert res.metadata["n_skipped_zero"] == [2, 0, 0] and res.metadata["zero_policy"] == "skip"
    n = {r["layer"]: r["n_samples"] for r in res.rows}
    assert n[0] == res.metadata["n_samples"] - 2 and n[1] == res.metadata["n_samples"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, nothing said
        clean = analyze(model, IDS, CFG.replace(zero_policy="skip"), progress=False)
    assert clean.metadata["n_skipped_zero"] == [0, 0, 0]
    with pytest.raises(ValueError, match="ProbeConfig.zero_policy must be one of"):
        ProbeConfig(zero_policy="ignore")


def test_zero_hidden_state_with_all_layers_update_is_named_too():
    model = _tiny_llama()
    with torch.no_grad():
        model.get_input_embeddings().weight[5].zero_()
    ids = [list(row) for row in IDS]
    ids[3][4] = 5
    with pytest.raises(ValueError, match=r"got 1 zero vector\(s\): hidden state 0 .*text 3, position 4, "
                                         r"token id 5"):
        analyze(model, ids, CFG.replace(all_layers_update=True), progress=False)


def test_cuda_without_cuda_is_refused_first(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ANALYZE, "load_model", _never)
    with pytest.raises(ValueError, match=r"device='cuda': cuda requested but torch.cuda.is_available\(\) is "
                                         "False"):
        analyze("no-such-model", IDS, CFG, device="cuda")
    with pytest.raises(ValueError, match="device='cuda:0': cuda requested"):
        sweep(tmp_path / "missing", IDS, CFG, device="cuda:0", out=tmp_path / "o")
    with pytest.raises(ValueError, match="'gpu' is not a torch device"):
        analyze("no-such-model", IDS, CFG, device="gpu")
    for cmd in ("analyze", "sweep"):
        assert main([cmd, "no-such-model", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--device='cuda': cuda requested but" in err


def test_out_that_is_a_file_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="out: .* is a file"):
        analyze("no-such-model", IDS, CFG, out=tmp_path / "f")  # the model path is never looked at
    with pytest.raises(NotADirectoryError, match="out: .* cannot be created: .* is a file"):
        sweep(tmp_path / "no-such-run", IDS, CFG, out=tmp_path / "f" / "sub")
    for argv in (["analyze", "no-such-model"], ["sweep", "no-such-run"], ["plot", "no-such.csv"]):
        assert main([*argv, "--out", str(tmp_path / "f")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out: " in err and "is a file" in err

    def no_write(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", no_write)  # root can write anywhere: simulate a denial
    assert main(["analyze", "no-such-model", "--out", str(tmp_path / "new")]) == 2
    assert "--out: " in capsys.readouterr().err


def _fake_checkpoint(d):
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"")


def test_sweep_of_a_training_run_directory_uses_its_checkpoints_folder(tmp_path):
    run = tmp_path / "run"
    for step in (4, 8):
        _fake_checkpoint(run / "checkpoints" / f"step_{step:08d}")
    (run / "config.json").write_text("{}")  # a run directory has a config.json too: not a checkpoint
    (run / "log.jsonl").write_text("")
    with pytest.warns(UserWarning, match=r"is a training run directory, not a checkpoint folder: sweeping "
                                         r"its checkpoints folder '.*run/checkpoints'"):
        ckpts = list_checkpoints(run)
    assert [(c.name, c.step) for c in ckpts] == [("step_00000004", 4), ("step_00000008", 8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list_checkpoints(run / "checkpoints")) == 2  # the folder itself: no warning


@pytest.mark.parametrize("name, content, expected", [
    ("plane.json", '{"rows": [1, 2]}\n', r"is not a results table \(JSON"),
    ("ragged.csv", "layer,label_set,mi\n1,input_1,0.3\n2,input_1,0.4,9\n", r"line 3 has 4 cells but the "
                                                                            r"header has 3 columns"),
    ("short.csv", "layer,n,complexity,expressivity\n1,1\n", r"line 2 has 2 cells"),
    ("binary.csv", b"\x00\xff\xfe\x00", r"is not a UTF-8 text table"),
    ("other.csv", "x,y\n1,2\n", r"unrecognised table"),
])
def test_plot_on_a_json_ragged_or_foreign_file_names_it(tmp_path, capsys, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["plot", str(path), "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and repr(str(path)) in err
    assert re.search(expected, err), err
