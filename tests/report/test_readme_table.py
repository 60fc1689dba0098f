"""The README's claims table is generated from the committed results folder, and a difference fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infoplane.io import atomic_write_json
from infoplane.report.readme import END, START, readme_block, readme_table, update_readme

REPO = Path(__file__).resolve().parents[2]


def test_readme_table_matches_the_committed_results():
    source, body = readme_block(REPO / "README.md")
    assert (REPO / source / "results" / "claims.json").is_file(), f"{source}: results folder not committed"
    assert body == readme_table(REPO / source), (
        "README claims table differs from the committed results: run "
        f"`infoplane report {source} --no-build --update-readme README.md`")
    claims = json.loads((REPO / source / "results" / "claims.json").read_text())["claims"]
    for c in claims:  # every claim appears (none omitted)
        assert c["statement"].replace("|", "\\|") in body


def _claims(tmp_path: Path, claims: list[dict]) -> Path:
    atomic_write_json(tmp_path / "src" / "results" / "claims.json",
                      {"rule": "RULE", "tier": "full", "claims": claims})
    return tmp_path / "src"


def test_table_lists_every_claim_with_its_verdict_and_failed_preconditions(tmp_path):
    src = _claims(tmp_path, [
        {"statement": "A | B", "paper_value": "-5%", "verdict": "holds", "unit": "nats",
         "treatment_mean": 1.0, "baseline_mean": 2.0, "baseline": [2.0], "effect": -1.0, "ci_low": -1.5,
         "ci_high": -0.5,
         "relative": -0.5, "relative_ci_low": -0.6, "relative_ci_high": -0.4, "p_raw": 0.0039,
         "p_holm": 0.0078, "n": 8, "failed": []},
        {"statement": "C", "paper_value": "?", "verdict": "not testable at this scale", "treatment_mean": 0.1,
         "baseline": None, "null": 0.0, "effect": 0.1, "ci_low": None, "ci_high": None, "relative": None,
         "relative_ci_low": None, "relative_ci_high": None, "p_raw": None, "p_holm": None, "n": 8,
         "failed": ["loss_saturated"]},
        {"statement": "D", "paper_value": "x", "verdict": "not run", "reason": "package absent"}])
    table = readme_table(src)
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| claim")]
    assert len(rows) == 3
    assert "A \\| B" in rows[0] and "-1 [-1.5, -0.5]" in rows[0] and "0.0039 / 0.0078" in rows[0]
    assert "holds" in rows[0] and "-50.0%" in rows[0]
    assert "not testable at this scale (failed: loss_saturated)" in rows[1]
    assert "not run (package absent)" in rows[2]
    assert "Rule: RULE" in table and "Tier **full**" in table


def test_update_readme_rewrites_only_the_block(tmp_path):
    src = _claims(tmp_path, [{"statement": "D", "paper_value": "x", "verdict": "not run", "reason": "r"}])
    readme = tmp_path / "README.md"
    readme.write_text("# t\n\n" + START.format(source="src") + "\nstale\n" + END + "\n\nafter\n")
    assert update_readme(readme) is True
    text = readme.read_text()
    assert "stale" not in text and text.startswith("# t\n") and text.endswith("\n\nafter\n")
    assert readme_block(readme) == ("src", readme_table(src))
    assert update_readme(readme) is False  # idempotent
    (tmp_path / "bare.md").write_text("no block")
    with pytest.raises(ValueError, match="claims-table"):
        readme_block(tmp_path / "bare.md")
