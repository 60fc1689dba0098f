"""The README's claims table, generated from a committed results folder (never typed by hand).

The README holds the table between two markers; the start marker names the results folder it came from::

    <!-- claims-table:start source=reproduction/full -->
    | claim | ... |
    <!-- claims-table:end -->

:func:`readme_table` renders ``SOURCE/results/claims.json`` (written by
:func:`infoplane.report.build.build_report`) as Markdown; :func:`update_readme` rewrites the block in
place; ``tests/report/test_readme_table.py`` fails when the README's block differs from what the committed
results give.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from infoplane.io import atomic_write_text, read_json

__all__ = ["readme_table", "update_readme", "readme_block", "START", "END"]

START = "<!-- claims-table:start source={source} -->"
END = "<!-- claims-table:end -->"
_BLOCK = re.compile(
    r"<!-- claims-table:start source=(?P<source>\S+) -->\n(?P<body>.*?)<!-- claims-table:end -->", re.S)


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:+.1f}%"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def readme_table(source: str | Path) -> str:
    """Markdown table of every claim in ``source/results/claims.json`` (none omitted), with the rule."""
    path = Path(source) / "results" / "claims.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no claims.json; run `infoplane reproduce --out {source}` first")
    data = read_json(path)
    lines = [f"Tier **{data.get('tier', '?')}**; verdicts by the rule below (exact sign-flip tests, Holm "
             "across the claims), computed from the results folder, never typed in.", "",
             "| claim | paper | ours (treatment vs baseline) | effect [95% CI] | relative [95% CI] | "
             "p raw / Holm | n | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for c in data["claims"]:
        if c["verdict"] == "not run":
            lines.append(f"| {_cell(c['statement'])} | {_cell(c['paper_value'])} | – | – | – | – | 0 "
                         f"| not run ({_cell(c['reason'])}) |")
            continue
        unit = f" {c['unit']}" if c.get("unit") else ""
        ref = c.get("baseline_mean") if c.get("baseline") is not None else c.get("null")
        ours = f"{_f(c.get('treatment_mean'))} vs {_f(ref)}{unit}" if c.get("kind") != "correlation" else \
            f"r across {c.get('n', 0)} models"
        verdict = c["verdict"]
        if c.get("failed"):
            verdict += " (failed: " + ", ".join(c["failed"]) + ")"
        lines.append(
            f"| {_cell(c['statement'])} | {_cell(c['paper_value'])} | {_cell(ours)} | "
            f"{_f(c.get('effect'))} [{_f(c.get('ci_low'))}, {_f(c.get('ci_high'))}] | "
            f"{_pct(c.get('relative'))} [{_pct(c.get('relative_ci_low'))}, "
            f"{_pct(c.get('relative_ci_high'))}] | "
            f"{_f(c.get('p_raw'))} / {_f(c.get('p_holm'))} | {c.get('n', 0)} | {_cell(verdict)} |")
    bound = [c["id"] for c in data["claims"] if "this design cannot reach" in str(c.get("reason", ""))]
    if bound:
        n_tested = sum(1 for c in data["claims"] if c.get("p_raw") is not None)
        lines += ["", f"{len(bound)} of the {n_tested} tested claims could not have held in this family: "
                  "with their replicates even a unanimous effect gives a Holm-adjusted p >= 0.05 (the report "
                  f"states each bound): {', '.join(bound)}."]
    lines += ["", f"Rule: {data.get('rule', '')}", ""] + wall_time_lines(Path(source).parent)
    return "\n".join(lines) + "\n"


def wall_time_lines(root: str | Path) -> list[str]:
    """One line per tier found under ``root`` (``root/TIER/results/run_manifest.json``): its measured wall
    time, the CPUs it ran on and its invocations, from the run manifest (never typed in)."""
    out = []
    for tier in ("quick", "demo", "full"):
        path = Path(root) / tier / "results" / "run_manifest.json"
        if not path.is_file():
            continue
        m = read_json(path)
        runs = [m] + list(m.get("additional_invocations", []))
        mins = [r["total_wall_time_s"] / 60 if isinstance(r.get("total_wall_time_s"), (int, float)) else None
                for r in runs]
        what = ["main invocation"] + [str(r.get("command", "")) for r in runs[1:]]
        parts = [f"{_f(t)} min from {r.get('started_at', '?')}" + (f" ({w})" if w else "")
                 for t, r, w in zip(mins, runs, what)]
        per_exp = [e.get("wall_time_s") for e in m.get("experiments", {}).values()]
        serial = (f" Per-experiment wall times sum to {_f(sum(per_exp) / 60)} min (one worker, one after "
                  "another)." if per_exp and all(isinstance(x, (int, float)) for x in per_exp) else "")
        out.append(f"- Measured wall time, tier **{tier}** (`{Path(root).name}/{tier}`, 2 CPU cores, "
                   f"{m.get('jobs')} worker(s)): " + "; ".join(parts) + "." + serial)
    return out


def readme_block(readme: str | Path) -> tuple[str, str]:
    """``(source, body)`` of the README's claims-table block; ValueError if the markers are missing."""
    text = Path(readme).read_text(encoding="utf-8")
    m = _BLOCK.search(text)
    if m is None:
        raise ValueError(f"{readme}: no '<!-- claims-table:start source=DIR -->' ... '{END}' block")
    return m.group("source"), m.group("body")


def update_readme(readme: str | Path, source: str | Path | None = None) -> bool:
    """Regenerate the README's claims-table block (from ``source`` or the folder its marker names); returns
    True when the file changed."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    old_source, _ = readme_block(readme)
    source = str(source) if source is not None else old_source
    root = readme.parent
    src_path = Path(source) if Path(source).is_absolute() else root / source
    new_block = START.format(source=source) + "\n" + readme_table(src_path) + END
    new = _BLOCK.sub(lambda _: new_block, text, count=1)
    if new != text:
        atomic_write_text(readme, new)
    return new != text
