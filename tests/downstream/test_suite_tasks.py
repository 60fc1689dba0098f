"""The task-suite builder: deterministic bytes, disjoint sources, documented YAMLs, the shipped suite."""

from __future__ import annotations

import json

import pytest
from _helpers import sentences

from infoplane.downstream.brown import detokenize
from infoplane.downstream.evaluate import DEFAULT_SUITE
from infoplane.downstream.tasks import PREFERENCE_FILE, TASKS, SuiteConfig, build_suite

SMALL = SuiteConfig(n_ppl=3, ppl_chars=200, n_cloze=6, n_pairs=6, n_preference=4, n_arith=5)


def _bytes(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_seed_same_bytes_other_seed_other_items(tmp_path):
    a = build_suite(sentences(), tmp_path / "a", seed=3, config=SMALL)
    build_suite(sentences(), tmp_path / "b", seed=3, config=SMALL)
    build_suite(sentences(), tmp_path / "c", seed=4, config=SMALL)
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    ca, cc = _bytes(tmp_path / "a"), _bytes(tmp_path / "c")
    assert ca["infoplane_brown_cloze.jsonl"] != cc["infoplane_brown_cloze.jsonl"]
    assert set(a) == {*(f"{t}.jsonl" for t in TASKS), *(f"{t}.yaml" for t in TASKS), PREFERENCE_FILE,
                      "README.md"}


def test_items_are_well_formed_and_sources_disjoint(tmp_path):
    build_suite(sentences(), tmp_path, seed=0, config=SMALL)

    def load(name):
        return [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]

    cloze = load("infoplane_brown_cloze.jsonl")
    assert len(cloze) == 6
    for it in cloze:
        assert len(set(it["choices"])) == 4 and 0 <= it["label"] < 4
    pairs = load("infoplane_brown_pairs.jsonl")
    for it in pairs:  # a swap: same words, other order
        assert it["good"] != it["bad"] and sorted(it["good"]) == sorted(it["bad"])  # same characters
    pref = load(PREFERENCE_FILE)
    assert [r["label"] for r in pref] == [1, 0] * 4
    arith = load("infoplane_arith_exact.jsonl")
    assert all(int(it["answer"]) == eval(it["question"].replace("x", "*").rstrip(" =")) for it in arith)
    sources = {name: {s for it in load(f"{name}.jsonl") for s in str(it.get("source", "")).split("+")}
               for name in ("infoplane_brown_ppl", "infoplane_brown_cloze", "infoplane_brown_pairs",
                            "preference")}
    names = list(sources)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sources[a] & sources[b], (a, b)
    for t in TASKS:
        text = (tmp_path / f"{t}.yaml").read_text()
        assert "Licence" in text and "dataset_path: json" in text and f"test: {t}.jsonl" in text


def test_validation_and_detokenizer():
    with pytest.raises(ValueError, match="n_cloze"):
        SuiteConfig(n_cloze=0)
    with pytest.raises(ValueError, match="seed"):
        build_suite(sentences(), "unused", seed=-1)
    assert detokenize(["He", "said", "``", "no", "''", ";", ";", "Jr.", "."]) == 'He said "no"; Jr.'


def test_the_shipped_suite_matches_its_readme():
    import hashlib

    readme = (DEFAULT_SUITE / "README.md").read_text()
    for name in [f"{t}.jsonl" for t in TASKS] + [PREFERENCE_FILE]:
        data = (DEFAULT_SUITE / name).read_bytes()
        n_lines = data.count(b"\n")
        assert f"| {name} | {n_lines} | {hashlib.sha256(data).hexdigest()} |" in readme
