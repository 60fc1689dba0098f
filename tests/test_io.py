import json
import os

import pytest

from infoplane import io


def test_atomic_write_json_roundtrip(tmp_path):
    path = tmp_path / "sub" / "r.json"
    io.atomic_write_json(path, {"a": 1, "b": [1.5, 2.0]})
    assert io.read_json(path) == {"a": 1, "b": [1.5, 2.0]}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp files left behind


def test_interrupted_write_keeps_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    io.atomic_write_json(path, {"version": 1})

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        io.atomic_write_json(path, {"version": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_exception_inside_atomic_open_leaves_target_untouched(tmp_path):
    path = tmp_path / "f.bin"
    io.atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), io.atomic_open(path) as fh:
        fh.write(b"partial")
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"old"


def test_csv_roundtrip_converts_numbers(tmp_path):
    rows = [{"layer": 0, "mi": 0.25, "name": "input_1"}, {"layer": 1, "mi": 0.5, "name": "x", "extra": 3}]
    io.atomic_write_csv(tmp_path / "t.csv", rows)
    back = io.read_csv(tmp_path / "t.csv")
    assert back[0] == {"layer": 0, "mi": 0.25, "name": "input_1", "extra": None}
    assert back[1]["extra"] == 3


def test_atomic_open_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"), io.atomic_open(tmp_path / "x", "a"):
        pass


def test_versions_report_the_installed_stack():
    import platform

    import numpy
    import scipy
    import tokenizers
    import torch
    import transformers

    import infoplane

    v = io.versions()
    assert v["python"] == platform.python_version()
    assert v["platform"] == platform.platform()
    expected = {"infoplane": infoplane.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                "scipy": scipy.__version__, "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__}
    assert {k: v[k] for k in expected} == expected


def test_versions_marks_a_missing_package_absent(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy` now raises ImportError
    v = io.versions()
    assert v["scipy"] == "absent"
    assert v["numpy"] != "absent"
