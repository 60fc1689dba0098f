"""End-to-end: ``infoplane reproduce --quick`` (test-sized via ``--set``) -> report content; then resume."""

from __future__ import annotations

import json
import math
import re

import pytest

from infoplane.cli import main
from infoplane.experiments.claims import CLAIMS, MIN_SEEDS
from infoplane.io import read_json
from infoplane.report.html import check_self_contained
from infoplane.stats import Claim, Precondition, evaluate

pytestmark = pytest.mark.slow

# even smaller than --quick, so the whole test stays around a minute on 2 shared cores
TINY = [
    "cycles.steps=40", "cycles.seeds=[0,1]", "cycles.align_every=5", "cycles.n_surrogates=99",
    "lm_gapt.steps=40", "lm_gapt.seeds=[0,1]", "lm_gapt.eval_every=20", "lm_gapt.eval_batches=2",
    'lm_gapt.checkpoint_steps="log:3"', "arithmetic.steps=40", "arithmetic.seeds=[0,1]",
    "arithmetic.n_train=500", "arithmetic.n_val=100", "arithmetic.n_test=100", "arithmetic.n_test_ood=100",
    "arithmetic.eval_every=20", "arithmetic.d_model=32", "forgetting.seeds=[0,1,2]",
    "forgetting.pretrain_steps=50", "forgetting.finetune_steps=80", "forgetting.n_train=512",
    "forgetting.n_eval=256", "plane_over_training.probe.max_tokens=256",
]
ONLY = ["1", "2", "3", "4", "5"]  # experiment 6 (SmolLM2 load ~40 s) has its own skip test


def _args(out):
    args = ["reproduce", "--quick", "--out", str(out), "--jobs", "2", "--only", *ONLY]
    for s in TINY:
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    rc = main(_args(out))
    return out, rc


def test_reproduce_quick_report_content(quick_run):
    out, rc = quick_run
    assert rc == 0
    manifest = read_json(out / "results" / "run_manifest.json")
    assert manifest["failed"] == {}
    assert set(manifest["experiments"]) == {"cycles", "lm_gapt", "arithmetic", "forgetting",
                                            "plane_over_training"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert check_self_contained(html) == []
    # the claims table is the first table and lists every claim
    first_table = html.index("<table")
    assert html.find('class="claims"') == first_table + len("<table ")
    assert "Claims and verdicts" in html
    data = read_json(out / "results" / "claims.json")
    claims, tier = data["claims"], data["tier"]
    assert len(claims) == len(CLAIMS) and tier == "quick"
    tested = []
    for c in claims:
        assert c["statement"][:40] in html.replace("&#x27;", "'")
        # experiments 6-9 are not selected (--only 1-5); 8 and 9 have their own quick-run tests
        if c["experiment"] in ("pretrained", "gapt_fair", "trajectory", "population"):
            assert c["verdict"] == "not run"
            continue
        assert c["verdict"] in ("holds", "does not hold", "inconclusive", "not testable at this scale"), c
        assert c["n"] >= 2 and len(c["seeds"]) == c["n"]
        assert all(math.isfinite(x) for x in c["treatment"])
        assert c["baseline"] is None or all(math.isfinite(x) for x in c["baseline"])
        assert c["effect"] is not None and math.isfinite(c["effect"])
        assert {p["name"] for p in c["preconditions"]} >= {"min_seeds", "finite_values"}
        assert (c["verdict"] == "not testable at this scale") == bool(c["failed"])
        if c["failed"]:
            assert all(f in c["reason"] for f in c["failed"]) and c["p_holm"] is None
        tested.append(c)
    # the verdicts recomputed from the stored numbers (same engine, same Holm family) match the report
    again = evaluate([Claim(id=c["id"], description=c["statement"], paper_value=c["paper_value"],
                            direction=c["direction"], treatment=c["treatment"], baseline=c["baseline"],
                            null=c["null"], seeds=c["seeds"], tier=tier, min_seeds=MIN_SEEDS[tier],
                            preconditions=[Precondition(p["name"], p["passed"], p["detail"])
                                           for p in c["preconditions"]
                                           if p["name"] not in ("min_seeds", "finite_values")])
                      for c in tested])
    assert [r.verdict for r in again] == [c["verdict"] for c in tested]
    assert [r.to_dict()["p_holm"] for r in again] == [c["p_holm"] for c in tested]
    # the shape claim uses independent baseline runs only; GAPT shares their training prefix
    shape = next(c for c in claims if c["id"] == "plane_compression")
    assert shape["n"] == 2
    assert {p["name"] for p in shape["preconditions"]} >= {"loss_saturated", "mi_above_null"}
    # every run experiment has a section with embedded figures and its tables on disk
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 6
    for name in ("cycles", "lm_gapt", "arithmetic", "forgetting", "plane_over_training"):
        assert f'<section id="{name}">' in html
        summary = read_json(out / "results" / f"{name}.json")
        assert summary["versions"]["torch"] and summary["wall_time_s"] > 0
        for t in summary["tables"]:
            assert (out / "results" / t).is_file()
    assert (out / "results" / "claims.csv").is_file()
    assert list((out / "figures").glob("*.png"))
    # the centered-MBE diagnostic sits beside the paper's uncentered MBE, within [0, log patch_size]
    lm = read_json(out / "results" / "lm_gapt.json")
    for arm, st in lm["stats"].items():
        centered = st["val_mbe_centered"]["mean"]
        assert 0.0 <= centered <= math.log(8) + 1e-6, (arm, centered)
    assert "centered diagnostic" in html


def test_reproduce_resume_skips_finished(quick_run):
    out, _ = quick_run
    before = {p.name: p.read_bytes() for p in (out / "results").glob("*.done.json")}
    assert main(_args(out)) == 0
    manifest = read_json(out / "results" / "run_manifest.json")
    assert sorted(manifest["skipped"]) == sorted(manifest["experiments"])
    assert {p.name: p.read_bytes() for p in (out / "results").glob("*.done.json")} == before
    # a changed config reruns only that experiment
    assert main(_args(out) + ["--set", "forgetting.lr=0.02"]) == 0
    manifest = read_json(out / "results" / "run_manifest.json")
    assert [n for n, r in manifest["experiments"].items() if r["status"] == "done"] == ["forgetting"]
    assert json.loads((out / "results" / "forgetting.json").read_text())["config"]["lr"] == 0.02
