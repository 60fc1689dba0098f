"""The runner and the registry: dependency order, a new experiment added through the public hook (run after
its dependency, in the report with its section and figure), stale results recomputed, clear errors."""

from __future__ import annotations

import re
import sys
import textwrap

import pytest

import infoplane
from infoplane.experiments import registry
from infoplane.experiments.common import is_done, run_experiment
from infoplane.experiments.registry import ExperimentSpec
from infoplane.experiments.runner import configs, run_experiments
from infoplane.io import read_json

# Two complete experiment modules, as a user would write them: config, run, describe, figures.
FAKE_BASE = textwrap.dedent('''
    """Fake experiment: writes a number."""
    from dataclasses import dataclass


    @dataclass(frozen=True)
    class BaseConfig:
        value: float = 1.5
        fail: bool = False

        @classmethod
        def quick(cls):
            return cls()

        @classmethod
        def full(cls):
            return cls(value=2.5)


    def run(cfg, paths, log):
        if cfg.fail:
            raise RuntimeError("fake_base asked to fail")
        return {"value": cfg.value}
''')

FAKE_SEVEN = textwrap.dedent('''
    """Fake experiment 98: doubles the number of fake_base."""
    from dataclasses import dataclass
    from pathlib import Path

    from infoplane.io import atomic_write_csv, read_json


    @dataclass(frozen=True)
    class SevenConfig:
        factor: float = 2.0

        @classmethod
        def quick(cls):
            return cls()

        @classmethod
        def full(cls):
            return cls()


    def run(cfg, paths, log):
        src = paths.results / "fake_base.json"
        if not src.is_file():
            return {"skipped_reason": "fake_base has not run"}
        base = read_json(src)["value"]
        atomic_write_csv(paths.table("points"), [{"x": i, "y": cfg.factor * base * i} for i in range(4)])
        return {"doubled": cfg.factor * base, "tables": [paths.table("points").name]}


    def describe(summary):
        return [f"Seven says the doubled value is {summary.get('doubled')}."] if "doubled" in summary else []


    def figures(results: Path, figs: Path):
        from infoplane.experiments.presentation import pyplot, read_table, save_png

        rows = read_table(results, "fake_seven_points")
        if not rows:
            return []
        fig, ax = pyplot().subplots(figsize=(2, 2))
        ax.plot([r["x"] for r in rows], [r["y"] for r in rows])
        return [(save_png(fig, figs / "fake_seven.png"), "The fake seventh experiment's line.")]
''')


@pytest.fixture
def fake_experiments(tmp_path, monkeypatch):
    """Register ``fake_base`` (number 70, low priority) and ``fake_seven`` (98, depends on fake_base)."""
    mod_dir = tmp_path / "fake_modules"
    mod_dir.mkdir()
    (mod_dir / "infoplane_fake_base.py").write_text(FAKE_BASE)
    (mod_dir / "infoplane_fake_seven.py").write_text(FAKE_SEVEN)
    monkeypatch.syspath_prepend(str(mod_dir))  # spawned workers inherit sys.path
    base = infoplane.experiments.register(
        ExperimentSpec(70, "fake_base", "infoplane_fake_base", "BaseConfig", "Fake base", priority=-5))
    try:
        seven = infoplane.experiments.register(
            ExperimentSpec(98, "fake_seven", "infoplane_fake_seven", "SevenConfig", "Fake seventh experiment",
                           depends_on=("fake_base",), priority=100))
        try:
            yield base, seven
        finally:
            registry.unregister("fake_seven")
    finally:
        registry.unregister("fake_base")
        sys.modules.pop("infoplane_fake_base", None)
        sys.modules.pop("infoplane_fake_seven", None)


def _status(manifest, name):
    return manifest["experiments"][name]["status"]


def test_builtin_order_from_depends_on_and_priority():
    names = [s.name for s in registry.order(registry.resolve(None))]
    assert [n for n in names if n not in ("gapt_fair", "trajectory", "population")] == [
        "lm_gapt", "arithmetic", "cycles", "pretrained", "forgetting", "plane_over_training"]
    assert sorted(names) == sorted(s.name for s in registry.EXPERIMENTS)
    assert names.index("plane_over_training") > names.index("lm_gapt")
    # a dependency that is not selected imposes no order and is not added
    assert [s.name for s in registry.order(registry.resolve(["5", "4"]))] == ["forgetting",
                                                                              "plane_over_training"]
    assert registry.get(5).depends_on == ("lm_gapt",)


def test_dependency_runs_first_even_with_lower_priority():
    a = ExperimentSpec(90, "zz_a", "m", "C", "a", priority=-10)
    b = ExperimentSpec(91, "zz_b", "m", "C", "b", depends_on=("zz_a",), priority=10)
    c = ExperimentSpec(92, "zz_c", "m", "C", "c", priority=0)
    assert [s.name for s in registry.order([b, c, a])] == ["zz_c", "zz_a", "zz_b"]


def test_unknown_dependency_and_cycle_are_clear_errors():
    ghost = ExperimentSpec(90, "zz_ghost", "m", "C", "t", depends_on=("nope",))
    with pytest.raises(ValueError, match=r"zz_ghost.*unknown experiment.*nope"):
        registry.order([ghost])
    with pytest.raises(ValueError, match="unknown experiment"):
        registry.register(ghost)
    x = ExperimentSpec(90, "zz_x", "m", "C", "t", depends_on=("zz_y",))
    y = ExperimentSpec(91, "zz_y", "m", "C", "t", depends_on=("zz_x",))
    with pytest.raises(ValueError, match=r"dependency cycle among experiments: zz_x -> zz_y -> zz_x"):
        registry.order([x, y])
    with pytest.raises(ValueError, match="itself"):
        ExperimentSpec(90, "zz_self", "m", "C", "t", depends_on=("zz_self",))
    with pytest.raises(ValueError, match="tuple of names"):
        ExperimentSpec(90, "zz_s", "m", "C", "t", depends_on="lm_gapt")
    assert "zz_ghost" not in {s.name for s in registry.EXPERIMENTS}


def test_register_refuses_clashes_and_unregister_refuses_used_dependency():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ExperimentSpec(99, "cycles", "m", "C", "t"))
    with pytest.raises(ValueError, match="number 2 is taken by 'lm_gapt'"):
        registry.register(ExperimentSpec(2, "zz_two", "m", "C", "t"))
    with pytest.raises(ValueError, match=r"plane_over_training.*depend on it"):
        registry.unregister("lm_gapt")
    with pytest.raises(ValueError, match="expects an ExperimentSpec"):
        registry.register("cycles")  # type: ignore[arg-type]
    assert [s.number for s in registry.EXPERIMENTS] == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_configs_validate_every_override():
    specs = registry.resolve(["4"])
    cfgs = configs(specs, "quick", {"4": {"lr": 0.02}, "lm_gapt": {"steps": 7}})
    assert cfgs["forgetting"].lr == 0.02 and set(cfgs) == {"forgetting"}
    with pytest.raises(ValueError, match="unknown experiment 'lmgapt'"):
        configs(specs, "quick", {"lmgapt": {"steps": 7}})
    with pytest.raises(ValueError, match=r"lm_gapt: unknown config field\(s\) \['stepz'\]"):
        configs(specs, "quick", {"lm_gapt": {"stepz": 7}})  # not selected, still checked


def test_run_experiments_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="jobs must be an int >= 1, got 0"):
        run_experiments(tmp_path, "quick", only=["4"], jobs=0)
    with pytest.raises(ValueError, match="size must be one of"):
        run_experiments(tmp_path, "huge", only=["4"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file; expected a directory"):
        run_experiments(tmp_path / "file", "quick", only=["4"])
    assert not (tmp_path / "results").exists()  # nothing started


def test_new_experiment_runs_after_its_dependency_and_is_in_the_report(fake_experiments, tmp_path):
    out = tmp_path / "out"
    manifest = infoplane.reproduce(out, "quick", only=["fake_seven", "fake_base"], jobs=1)
    assert manifest["selected"] == ["fake_base", "fake_seven"]  # priority alone would put 98 first
    assert list(manifest["experiments"]) == ["fake_base", "fake_seven"]
    assert manifest["failed"] == {}
    seven = read_json(out / "results" / "fake_seven.json")
    assert seven["doubled"] == 3.0 and "skipped_reason" not in seven
    html = (out / "report.html").read_text(encoding="utf-8")
    section = re.search(r'<section id="fake_seven">(.*?)</section>', html, re.S)
    assert section, "the registered experiment has no report section"
    body = section.group(1)
    assert "<h2>98. Fake seventh experiment</h2>" in html
    assert "Seven says the doubled value is 3.0." in body
    assert re.search(r'<figure id="fig-fake_seven"><img [^>]*src="data:image/png;base64,', body)
    assert "The fake seventh experiment&#x27;s line." in body
    assert '<section id="fake_base">' in html and '<section id="cycles">' in html  # not run: still listed


def test_worker_processes_run_a_registered_experiment_after_its_dependency(fake_experiments, tmp_path):
    manifest = run_experiments(tmp_path, "quick", only=["fake_seven", "fake_base"], jobs=2)
    assert manifest["failed"] == {}
    assert list(manifest["experiments"]) == ["fake_base", "fake_seven"]
    assert read_json(tmp_path / "results" / "fake_seven.json")["doubled"] == 3.0


def test_failed_dependency_fails_its_users_without_running_them(fake_experiments, tmp_path, capfd):
    manifest = run_experiments(tmp_path, "quick", only=["fake_seven", "fake_base"],
                               overrides={"fake_base": {"fail": True}}, quiet=True)
    err = capfd.readouterr().err
    assert "RuntimeError: fake_base asked to fail" in err  # the traceback of a failure is always shown
    assert "[reproduce" not in err and "starting" not in err  # quiet: no progress lines
    assert "fake_base asked to fail" in manifest["failed"]["fake_base"]
    assert manifest["failed"]["fake_seven"] == "depends on fake_base, which failed"
    assert not (tmp_path / "results" / "fake_seven.json").exists()


def test_result_skipped_for_missing_dependency_is_recomputed_once_it_exists(fake_experiments, tmp_path):
    # --only 8 before its dependency: the result says why it did not run, and is not marked done
    m = run_experiments(tmp_path, "quick", only=["fake_seven"])
    assert m["experiments"]["fake_seven"]["skipped_reason"] == "fake_base has not run"
    assert not (tmp_path / "results" / "fake_seven.done.json").exists()
    # --only 8 again: tried again (still not possible), not reported as a finished result
    m = run_experiments(tmp_path, "quick", only=["fake_seven"])
    assert _status(m, "fake_seven") == "done" and m["experiments"]["fake_seven"]["skipped_reason"]
    # the dependency alone, then 7 alone: 7 is computed from it
    run_experiments(tmp_path, "quick", only=["fake_base"])
    m = run_experiments(tmp_path, "quick", only=["fake_seven"])
    assert _status(m, "fake_seven") == "done" and m["experiments"]["fake_seven"]["skipped_reason"] is None
    assert read_json(tmp_path / "results" / "fake_seven.json")["doubled"] == 3.0
    # nothing changed: both reused
    m = run_experiments(tmp_path, "quick", only=["fake_base", "fake_seven"])
    assert _status(m, "fake_base") == "skipped" and _status(m, "fake_seven") == "skipped"
    # the dependency's result changes: 7 is stale and recomputed, even when run on its own later
    run_experiments(tmp_path, "quick", only=["fake_base"], overrides={"fake_base": {"value": 4.0}})
    m = run_experiments(tmp_path, "quick", only=["fake_seven"])
    assert _status(m, "fake_seven") == "done"
    assert read_json(tmp_path / "results" / "fake_seven.json")["doubled"] == 8.0


def test_plane_over_training_skipped_without_experiment_2_is_not_done(tmp_path):
    from infoplane.experiments import plane_over_training as pot

    cfg = pot.PlaneConfig.quick()
    s = run_experiment("plane_over_training", cfg, tmp_path, pot.run, progress=False, depends_on=("lm_gapt",))
    assert "lm_gapt" in s["skipped_reason"]
    assert (tmp_path / "results" / "plane_over_training.json").is_file()
    assert not is_done(tmp_path, "plane_over_training", cfg, ("lm_gapt",))


def test_overrides_reach_nested_configs():
    spec = registry.get("plane_over_training")
    quick = registry.make_config(spec, "quick")
    dotted = registry.make_config(spec, "quick", {"probe.max_tokens": 256, "arms": ("gapt",)})
    as_dict = registry.make_config(spec, "quick", {"probe": {"max_tokens": 256}})
    assert dotted.probe.max_tokens == 256 == as_dict.probe.max_tokens and dotted.arms == ("gapt",)
    assert dotted.probe.n_bins == quick.probe.n_bins and quick.probe.max_tokens != 256  # the rest kept
    with pytest.raises(ValueError, match=r"plane_over_training\.probe: unknown config field.*max_tokenz"):
        registry.make_config(spec, "quick", {"probe.max_tokenz": 1})
    with pytest.raises(ValueError, match=r"plane_over_training\.arms is not a nested config"):
        registry.make_config(spec, "quick", {"arms.x": 1})
