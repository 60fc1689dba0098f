import sys

import pytest

import infoplane


def test_every_public_name_resolves():
    # an ImportError inside the package surfaces here as a failure (the layer rules live in test_layers.py)
    assert len(set(infoplane.__all__)) == len(infoplane.__all__)
    for name in infoplane.__all__:
        assert getattr(infoplane, name) is not None, name


def test_quickstart_from_readme_runs():
    import torch

    torch.manual_seed(0)
    z = torch.randn(512, 32)
    labels = torch.randint(0, 5, (512,))
    h = infoplane.soft_entropy(z)
    mi = infoplane.soft_mutual_information(z, labels)
    assert 0.9 < float(h) <= 1.0
    assert 0.0 <= float(mi) < float(h)
    acc = infoplane.SoftEntropyAccumulator(dim=32, n_bins=100, seed=0)
    acc.update(z, labels={"token": labels})
    res = acc.compute()
    assert abs(float(res.entropy[0]) - float(h)) < 1e-5
    assert abs(float(res.mi["token"][0]) - float(mi)) < 1e-5
    assert 0.0 <= float(infoplane.matrix_entropy(z[:64])) <= float(torch.log(torch.tensor(64.0)))


# ---------------------------------------------------------------- the command line


@pytest.fixture
def fake_area(tmp_path, monkeypatch):
    """Point the CLI at one throw-away area module whose ``boom`` command raises what the test asks."""
    from infoplane import cli

    def make(body: str) -> None:
        (tmp_path / "fake_cli_area.py").write_text(body, encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "fake_cli_area", raising=False)
        monkeypatch.setattr(cli, "_AREAS", ("infoplane.cli.train", "fake_cli_area"))

    return make


_BOOM = """
def register(sub):
    p = sub.add_parser("boom")
    p.add_argument("--exc", default="RuntimeError")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(__builtins__[args.exc]("it broke")))
"""


def test_cli_subcommand_module_that_fails_to_import_is_an_error(fake_area, capsys):
    from infoplane.cli import main

    fake_area("import a_module_that_does_not_exist_anywhere\n")
    assert main(["train", "--dry-run"]) == 1  # every command fails, not only the broken area's
    err = capsys.readouterr().err
    assert "ModuleNotFoundError" in err and "a_module_that_does_not_exist_anywhere" in err
    assert "--debug" in err
    with pytest.raises(ModuleNotFoundError):
        main(["--debug", "train", "--dry-run"])


def test_cli_missing_subcommand_module_is_an_error(monkeypatch, capsys):
    from infoplane import cli

    monkeypatch.setattr(cli, "_AREAS", ("infoplane.cli.train", "infoplane.cli.no_such_area"))
    assert cli.main(["train", "--dry-run"]) == 1
    assert "infoplane.cli.no_such_area" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--debug", "boom"], ["boom", "--debug"]])
def test_cli_debug_shows_the_traceback(fake_area, argv):
    from infoplane.cli import main

    fake_area(_BOOM)
    with pytest.raises(RuntimeError, match="it broke"):
        main(argv)


def test_cli_unexpected_error_is_one_line_with_a_hint(fake_area, capsys):
    from infoplane.cli import main

    fake_area(_BOOM)
    assert main(["boom"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["infoplane boom: error: RuntimeError: it broke",
                   "infoplane boom: rerun with --debug for the traceback"]


@pytest.mark.parametrize("exc", ["ValueError", "FileNotFoundError"])
def test_cli_user_error_is_one_line_exit_2(fake_area, capsys, exc):
    from infoplane.cli import main

    fake_area(_BOOM)
    assert main(["boom", "--exc", exc]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["infoplane boom: error: it broke"]


def test_cli_train_help_prints_the_config_defaults(capsys):
    from infoplane.cli import main
    from infoplane.train.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    cfg = TrainConfig()
    for flag, value in [("--steps STEPS", cfg.steps), ("--lr LR", cfg.lr), ("--out OUT", cfg.out_dir),
                        ("--checkpoint-steps SPEC", cfg.checkpoint_steps)]:
        start = text.rindex(flag)  # the help line, not the usage line
        assert f"(default: {value})" in text[start: text.index("--", start + len(flag))], flag
    assert "--quiet" in text and "--no-progress" not in text


def test_cli_train_flags_override_the_config_file_only_when_given(tmp_path, capsys):
    import json

    from infoplane.cli import main
    from infoplane.train.config import TrainConfig

    default = TrainConfig()
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": default.steps + 7, "lr": default.lr / 2,
                               "checkpoint_steps": "every:5"}))

    def dry(*flags: str) -> dict:
        assert main(["train", "--config", str(cfg), "--dry-run", *flags]) == 0
        return json.loads(capsys.readouterr().out)

    d = dry()  # flags left at their defaults do not override the file
    assert (d["steps"], d["lr"], d["checkpoint_steps"], d["progress"]) == (default.steps + 7, default.lr / 2,
                                                                          "every:5", True)
    d = dry("--steps", str(default.steps), "--checkpoint-steps", "2,4", "--quiet")  # given flags do, even =
    assert (d["steps"], d["lr"], d["checkpoint_steps"], d["progress"]) == (default.steps, default.lr / 2,
                                                                          [2, 4], False)
    d = dry("--checkpoints", "3", "--no-progress")  # the old spellings still work
    assert (d["checkpoint_steps"], d["progress"]) == ([3], False)
