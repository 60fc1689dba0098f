"""``infoplane train --monitor-every``: the information-plane monitor from the command line, resumed with the
run (rows continue without duplicates or gaps)."""

from __future__ import annotations

import pytest

from infoplane.cli import main
from infoplane.io import read_csv

TINY = ["--tokenizer", "byte", "--n-layer", "2", "--n-head", "2", "--d-model", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-every", "0", "--threads", "1", "--quiet", "--lr", "0.003"]


def _steps(path) -> list[int]:
    return sorted({int(r["step"]) for r in read_csv(path)})


def test_monitor_flag_writes_rows_and_resumes_without_duplicates(tmp_path, one_thread):
    out = tmp_path / "run"
    flags = ["--monitor-every", "4", "--monitor-tokens", "256", "--checkpoint-steps", "every:4"]
    assert main(["train", *TINY, *flags, "--steps", "8", "--out", str(out)]) == 0
    table = out / "plane_monitor.csv"
    assert _steps(table) == [4, 8]
    rows = read_csv(table)
    assert {"complexity", "expressivity", "layer", "n"} <= set(rows[0])
    with pytest.warns(RuntimeWarning, match="resuming with steps=16"):  # the longer run is announced
        assert main(["train", *TINY, *flags, "--steps", "16", "--resume", "--out", str(out)]) == 0
    steps = [int(r["step"]) for r in read_csv(table)]
    assert sorted(set(steps)) == [4, 8, 12, 16]
    per_step = {s: steps.count(s) for s in set(steps)}
    assert len(set(per_step.values())) == 1  # the same number of rows at every probed step: no duplicates


def test_monitor_flag_errors_name_the_flag(tmp_path, capsys):
    assert main(["train", *TINY, "--steps", "2", "--monitor-every", "-1", "--out", str(tmp_path / "a")]) == 2
    assert "--monitor-every" in capsys.readouterr().err
    assert main(["train", *TINY, "--steps", "2", "--monitor-every", "1", "--monitor-orders", "1,x",
                 "--out", str(tmp_path / "b")]) == 2
    assert "--monitor-orders" in capsys.readouterr().err
