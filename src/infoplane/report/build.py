"""Build ``DIR/report.html`` from the results files of ``infoplane reproduce`` (never from live objects).

Inputs: ``DIR/results/<experiment>.json`` summaries (see :mod:`infoplane.experiments.common`), their CSV
tables, and optionally ``DIR/results/run_manifest.json`` (written by the runner: size, wall times, jobs).
Outputs: ``DIR/figures/*.png``, ``DIR/results/claims.csv`` / ``claims.json`` (verdicts computed by
:func:`infoplane.experiments.claims.evaluate_claims`) and the self-contained ``DIR/report.html``.

The report is a generic loop over the experiment registry: one section per registered experiment, whose
sentences and figures come from the experiment's own ``describe`` / ``figures`` hooks
(:class:`infoplane.experiments.registry.ExperimentSpec`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from infoplane.experiments.claims import CLAIMS, RULE_TEXT, evaluate_claims
from infoplane.experiments.registry import EXPERIMENTS, get
from infoplane.io import atomic_write_csv, atomic_write_json, atomic_write_text, read_json, versions
from infoplane.report.html import Section, check_self_contained, esc, figure, fmt, render_document, table

__all__ = ["build_report", "load_summaries", "describe"]

CLAIM_COLUMNS = ["claim", "paper", "paper_value", "measured", "effect_ci", "relative_ci", "p", "n", "tier",
                 "preconditions", "verdict", "reason", "elsewhere"]
CLAIM_HEADERS = {
    "claim": "claim", "paper": "source", "paper_value": "paper's number", "measured": "measured (ours)",
    "effect_ci": "effect [95% CI]", "relative_ci": "relative [95% CI]", "p": "p (raw / Holm)",
    "n": "replicates", "tier": "tier", "preconditions": "preconditions", "verdict": "verdict",
    "reason": "why", "elsewhere": "measured elsewhere at larger scale"}
TIER_OF_SIZE = {"quick": "quick", "tiny": "quick", "demo": "demo", "full": "full"}


def load_summaries(root: str | Path) -> dict[str, dict[str, Any]]:
    """``{experiment name: summary}`` of every experiment with a summary in ``root/results``."""
    res = Path(root) / "results"
    out = {}
    for spec in EXPERIMENTS:
        p = res / f"{spec.name}.json"
        if p.is_file():
            out[spec.name] = read_json(p)
    return out


def _pct(x: Any) -> str:
    return f"{100 * x:+.1f}%" if isinstance(x, float) and math.isfinite(x) else "\u2013"


def _p(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) and math.isfinite(x) else "\u2013"


def _claim_rows(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Display rows of the claims table (numbers formatted; every figure comes from ``claims``)."""
    rows = []
    for c in claims:
        base = {"claim": c["statement"], "paper": c["paper"], "paper_value": c["paper_value"],
                "verdict": c["verdict"], "reason": c["reason"], "elsewhere": c.get("elsewhere", ""),
                "metric": c["metric"], "id": c["id"], "tier": c.get("tier", "")}
        if c["verdict"] == "not run":
            rows.append({**base, "measured": "\u2013", "effect_ci": "\u2013", "relative_ci": "\u2013",
                         "p": "\u2013", "n": 0, "preconditions": "\u2013"})
            continue
        t_lab, b_lab = c.get("treatment_label") or "treatment", c.get("baseline_label") or "baseline"
        unit = f" {c['unit']}" if c.get("unit") else ""
        if c.get("kind") == "correlation":
            measured = f"Pearson r of {t_lab} with {b_lab} across {c.get('n', 0)} models"
        elif c.get("baseline") is None:
            measured = f"{t_lab}: mean {fmt(c['treatment_mean'])}{unit} vs {fmt(c.get('null', 0.0))}"
        else:
            measured = f"{t_lab} {fmt(c['treatment_mean'])} vs {b_lab} {fmt(c['baseline_mean'])}{unit}"
        pre = c.get("preconditions", [])
        failed = [p["name"] for p in pre if not p["passed"]]
        rows.append({**base, "measured": measured,
                     "effect_ci": f"{fmt(c.get('effect'))} [{fmt(c.get('ci_low'))}, {fmt(c.get('ci_high'))}]",
                     "relative_ci": (f"{_pct(c.get('relative'))} [{_pct(c.get('relative_ci_low'))}, "
                                     f"{_pct(c.get('relative_ci_high'))}]"),
                     "p": f"{_p(c.get('p_raw'))} / {_p(c.get('p_holm'))}", "n": c.get("n", 0),
                     "preconditions": ("failed: " + ", ".join(failed)) if failed else
                     f"{len(pre)} checked, all passed"})
    return rows


def describe(name: str, s: dict[str, Any]) -> list[str]:
    """Neutral sentences generated from an experiment's numbers (its module's ``describe`` hook)."""
    return get(name).describe(s)


def _config_table(cfg: dict[str, Any]) -> str:
    rows = [{"field": k, "value": str(v)} for k, v in cfg.items()]
    return f"<details><summary>configuration</summary>{table(rows, ['field', 'value'])}</details>"


def build_report(root: str | Path, title: str = "infoplane: reproduction report") -> Path:
    """Write figures, claims tables and ``report.html`` under ``root``; returns the HTML path."""
    root = Path(root)
    results, figs = root / "results", root / "figures"
    summaries = load_summaries(root)
    manifest_path = results / "run_manifest.json"
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    tier = TIER_OF_SIZE.get(str(manifest.get("size", "demo")), "demo")
    claims = evaluate_claims(summaries, CLAIMS, tier=tier)
    rows = _claim_rows(claims)
    atomic_write_csv(results / "claims.csv", rows)
    atomic_write_json(results / "claims.json", {"rule": RULE_TEXT, "tier": tier, "claims": claims})

    sections = []
    sec = Section("Claims and verdicts", "claims")
    sec.add(table(rows, CLAIM_COLUMNS, headers=CLAIM_HEADERS, cls="claims", row_class="verdict"))
    sec.para("Verdict rule (computed, never typed in): " + RULE_TEXT, cls="note")
    sec.para("Scale caveat: the papers use GPT-2-size models on billions of tokens; these runs are CPU-sized "
             "(minutes). A verdict here speaks about this scale only.", cls="note")
    sections.append(sec)

    for spec in EXPERIMENTS:
        s = summaries.get(spec.name)
        sec = Section(f"{spec.number}. {spec.title}", spec.name)
        if s is None:
            failed = manifest.get("failed", {}).get(spec.name)
            sec.para(f"Failed: {failed}" if failed else "Not run in this output directory.", cls="note")
            sections.append(sec)
            continue
        if s.get("skipped_reason"):
            sec.para(f"Skipped: {s['skipped_reason']}", cls="note")
        doc = spec.load().__doc__ or ""
        if doc:
            sec.add(f"<details><summary>method</summary><pre>{esc(doc.strip())}</pre></details>")
        if s.get("scale"):
            sec.para(f"Scale: {s['scale']}.")
        for sentence in spec.describe(s):
            sec.para(sentence)
        own = [r for r in rows if r["id"] in s.get("claims", {})]
        if own:
            sec.add(table(own, ["claim", "measured", "effect_ci", "p", "verdict"], headers=CLAIM_HEADERS,
                          row_class="verdict"))
        try:
            for path, caption in spec.figures(results, figs):
                sec.add(figure(path, caption))
        except Exception as exc:  # a broken figure must not hide the numbers
            sec.para(f"Figure generation failed: {type(exc).__name__}: {exc}", cls="note")
        wall = s.get("wall_time_s")
        sec.para(f"Wall time {fmt(wall)} s; seeds {s.get('seeds')}; config hash {s.get('config_hash')}; "
                 f"tables: {', '.join(s.get('tables', []))}.")
        sec.add(_config_table(s.get("config", {})))
        sections.append(sec)

    info = Section("Run information", "run-info")
    exp_rows = [{"experiment": n, "wall_time_s": s.get("wall_time_s"), "cpu_time_s": s.get("cpu_time_s"),
                 "seeds": str(s.get("seeds")),
                 "config_hash": s.get("config_hash"), "resumed in last run":
                 str(n in manifest.get("skipped", [])), "torch threads": s.get("torch_threads")}
                for n, s in summaries.items()]
    info.add(table(exp_rows))
    if manifest:
        info.para(f"Last invocation: size {manifest.get('size')}, jobs {manifest.get('jobs')}, "
                  f"total wall time {fmt(manifest.get('total_wall_time_s'))} s, "
                  f"started {manifest.get('started_at')}.")
    v = versions()
    info.add(table([{"package": k, "version": val} for k, val in v.items()]))
    sections.append(info)

    doc = render_document(title, sections, intro=(
        "Reproduction of claims from Yu 2025 (memorization-compression cycles, GAPT; arXiv:2505.08727) and "
        "Conklin et al. 2026 (soft entropy, the information plane; arXiv:2604.07569) at CPU scale. "
        "Every number below is read from the results files in this directory."))
    problems = check_self_contained(doc)
    if problems:
        raise ValueError(f"report is not self-contained: {problems[:3]}")
    out = root / "report.html"
    atomic_write_text(out, doc)
    for p in [out, *figs.glob("*")]:
        p.chmod(0o644)  # atomic writes create 0600 temporaries; the report is meant to be shared
    return out
