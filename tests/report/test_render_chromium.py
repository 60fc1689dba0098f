"""Headless Chromium renders a built report: exit 0, DOM holds the claims table, no console errors."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (/usr/bin/chromium "
                                                          "absent; apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from infoplane.experiments import forgetting
    from infoplane.experiments.common import run_experiment
    from infoplane.report.build import build_report

    out = tmp_path_factory.mktemp("chromium_report")
    cfg = dataclasses.replace(forgetting.ForgettingConfig.quick(), seeds=(0, 1), pretrain_steps=30,
                              finetune_steps=40, n_train=256, n_eval=128)
    run_experiment("forgetting", cfg, out, forgetting.run, progress=False)
    return build_report(out)


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)


def test_dump_dom_contains_claims_table(report, tmp_path):
    proc = _chromium(["--dump-dom", report.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "Claims and verdicts" in dom
    m = re.search(r'<table class="claims">(.*?)</table>', dom, re.S)
    assert m, "claims table missing from the rendered DOM"
    from infoplane.experiments.claims import CLAIMS

    assert m.group(1).count("<tr") == len(CLAIMS) + 1  # header + every claim
    from infoplane.stats import VERDICTS

    # forgetting ran 2 seeds, below the demo tier's minimum: its claims are "not testable at this scale"
    assert any(v in m.group(1) for v in VERDICTS) and "not testable at this scale" in m.group(1)
    # console messages are logged as CONSOLE lines; the report has no scripts, so there must be no errors
    console_errors = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln and "rror" in ln]
    assert console_errors == []


def test_screenshot(report, tmp_path):
    shot = tmp_path / "shot.png"
    proc = _chromium([f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
