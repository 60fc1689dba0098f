"""The shape of the source tree, enforced: import layers, no import cycles, file sizes, no machine paths.

The layers (lowest first). A module may import its own area and the areas listed for it, nothing else::

    estimators                       pure math on tensors: imports nothing from the package
    io, stats, data, plane           sit on estimators (data may use io, plane may use stats)
    plots                            information-plane figures: sits on plane and io
    train                            GAPT: sits on the areas above, never imports probe
    probe                            model -> statistics: may use train (native checkpoints, GPT adapter,
                                     the trainer's callback protocol for the monitor)
    downstream                       lm-eval adapter and correlations: sits on probe and train
    experiments                      one module per reproduction, registry, runner
    report                           reads results files; a generic loop over the experiments registry (with
                                     the claims and the shared presentation helpers); experiments never
                                     import the report
    cli                              parsing only; may call anything

Every import counts: module level and function level, ``import infoplane.x``, ``from infoplane import x``,
``from infoplane.x import y`` and relative imports. ``from infoplane import NAME`` is resolved through the
flat public API (``infoplane/__init__.py``) to the module that defines NAME, so the facade cannot launder
an upward import. The facade itself (``infoplane/__init__.py``) is exempt: it re-exports every layer.
A new top-level area must be added to ``ALLOWED`` below (with its place in the order) before it passes.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from functools import cache
from pathlib import Path

import pytest

import infoplane

SRC = Path(infoplane.__file__).resolve().parent
ROOT = "infoplane"

_BASE = {"estimators"}
_CORE = _BASE | {"io", "stats", "data", "plane", "plots"}
# area -> areas it may import (its own area is always allowed)
ALLOWED: dict[str, set[str]] = {
    "estimators": set(),
    "io": _BASE,
    "stats": _BASE,
    "data": _BASE | {"io"},
    "plane": _BASE | {"stats"},
    "plots": _BASE | {"io", "stats", "plane"},
    "train": _CORE,
    "probe": _CORE | {"train"},
    "downstream": _CORE | {"train", "probe"},
    "experiments": _CORE | {"train", "probe", "downstream"},
    "report": _CORE | {"experiments"},
    "cli": _CORE | {"train", "probe", "downstream", "experiments", "report", ROOT},
}
# single modules allowed beyond the areas above: (importing area, imported module)
ALLOWED_MODULES: set[tuple[str, str]] = {
}

MAX_LINES = 500
LONG_FILE_REASON = "Over 500 lines because"
# internal notes and machine paths have no place in the package's text (docstrings, comments, strings): cite
# the paper and section, or the reference implementation by name and file; a Markdown note (other than the
# README) is an internal note
FORBIDDEN_TEXT = re.compile(
    r"reference doc|shared/reference|internal note|/work/|/tmp/|/home/|/root/|/Users/"
    r"|\b(?!README\b)[\w-]+\.md\b", re.IGNORECASE)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_module(name: str) -> bool:
    return name in _modules()


@cache
def _facade_exports() -> dict[str, str]:
    """NAME -> defining module for every name the flat API (``infoplane/__init__.py``) re-exports."""
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                out[alias.asname or alias.name] = f"{ROOT}.{node.module}"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant) \
                        and isinstance(value.value, str) and value.value.startswith(f"{ROOT}."):
                    out.setdefault(key.value, value.value)
    return out


def _resolve_from(base: str, names: list[str]) -> list[str]:
    """Targets of ``from base import names``: a submodule where one exists, else ``base`` itself (or, for the
    package root, the module that the facade re-exports the name from)."""
    out = []
    for name in names:
        if _is_module(f"{base}.{name}"):
            out.append(f"{base}.{name}")
        elif base == ROOT:
            out.append(_facade_exports().get(name, ROOT))
        else:
            out.append(base)
    return out


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported package module) for every import in ``path``, at any depth (functions included)."""
    mod = _module_name(path)
    package = mod if _is_package(path) else mod.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != ROOT:
                continue
            out += [(node.lineno, t) for t in _resolve_from(base, [a.name for a in node.names])]
    return sorted(set(out))


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _rel(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


def layer_violations() -> list[str]:
    bad = []
    for mod, path in _modules().items():
        area = _area(mod)
        if area == ROOT:
            continue  # the flat public API re-exports every layer
        if area not in ALLOWED:
            bad.append(f"{_rel(path)}: area {area!r} has no place in the layer order (add it to ALLOWED)")
            continue
        for line, target in imports_of(path):
            t_area = _area(target)
            if t_area == area or t_area in ALLOWED[area] or (area, target) in ALLOWED_MODULES:
                continue
            what = "the package root 'infoplane'" if target == ROOT else target
            bad.append(f"{_rel(path)}:{line}: {area} imports {what}")
    return list(dict.fromkeys(bad))  # one line per offending import, even for several names


def import_cycles() -> list[str]:
    """Cycles among the package's modules (every import, function-level included; packages' own
    ``__init__`` re-exports of their submodules excluded, since those are how a package is assembled)."""
    graph: dict[str, set[str]] = {}
    for mod, path in _modules().items():
        edges = {t for _, t in imports_of(path) if t != mod and _is_module(t)}
        if _is_package(path):
            edges = {t for t in edges if not t.startswith(mod + ".")}
        graph[mod] = edges
    cycles, state, stack = set(), {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cyc = stack[stack.index(nxt):]
                i = cyc.index(min(cyc))
                cycles.add(" -> ".join(cyc[i:] + cyc[:i] + [cyc[i]]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)
    return sorted(cycles)


def long_files() -> list[str]:
    bad = []
    for path in _modules().values():
        text = path.read_text(encoding="utf-8")
        n = text.count("\n") + (not text.endswith("\n") and bool(text))
        if n > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if LONG_FILE_REASON not in doc:
                bad.append(f"{_rel(path)}: {n} lines and no '{LONG_FILE_REASON} ...' in its module docstring")
    return bad


def forbidden_text() -> list[str]:
    bad = []
    for path in _modules().values():
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        for tok in tokens:
            if tok.type in (tokenize.COMMENT, tokenize.STRING):
                for m in FORBIDDEN_TEXT.finditer(tok.string):
                    line = tok.start[0] + tok.string.count("\n", 0, m.start())
                    bad.append(f"{_rel(path)}:{line}: {m.group(0)!r}")
    return bad


def _declared_imports() -> set[str]:
    """Import names of the dependencies and the dev extra in pyproject.toml: never optional in tests."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
        import tomli as tomllib

    project = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"].get("dev", [])]
    dists = {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower().replace("-", "_") for spec in specs}
    return {{"pyyaml": "yaml"}.get(d, d) for d in dists}


def hidden_failures_in_tests() -> list[str]:
    """``pytest.importorskip`` of the package itself or of a declared dependency: an ImportError there is a
    failure to report, not a reason to skip."""
    tests = SRC.parents[1] / "tests"
    required = _declared_imports() | {ROOT}
    bad = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                name = str(node.args[0].value)
                if name.split(".")[0] in required:
                    bad.append(f"{path.relative_to(tests.parent)}:{node.lineno}: importorskip({name!r}); "
                               f"import it")
    return bad


# ---------------------------------------------------------------- the checks


def test_import_layers():
    bad = layer_violations()
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_estimators_import_nothing_from_the_package():
    bad = [f"{_rel(p)}:{line}: {t}" for m, p in _modules().items() if _area(m) == "estimators"
           for line, t in imports_of(p) if _area(t) != "estimators"]
    assert not bad, "\n".join(bad)


def test_no_file_over_500_lines_without_a_stated_reason():
    bad = long_files()
    assert not bad, "\n".join(bad)


def test_tests_do_not_skip_on_the_package_or_its_declared_dependencies():
    bad = hidden_failures_in_tests()
    assert not bad, "skips that would hide an ImportError:\n" + "\n".join(bad)


def test_no_internal_notes_or_machine_paths_in_the_source():
    bad = forbidden_text()
    assert not bad, "internal-note citations or machine paths in src/:\n" + "\n".join(bad)


# ---------------------------------------------------------------- the checker itself


def _write(tmp: Path, rel: str, text: str) -> Path:
    p = tmp / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def fake_tree(tmp_path, monkeypatch):
    """A throw-away ``infoplane`` tree the checker is pointed at."""
    root = tmp_path / ROOT
    _write(root, "__init__.py", 'from .estimators import soft_entropy\n_LAZY = {"Trainer": '
                                '"infoplane.train.trainer", "analyze": "infoplane.probe.run"}\n')
    _write(root, "estimators/__init__.py", "from .soft import soft_entropy\n")
    _write(root, "estimators/soft.py", "def soft_entropy(z):\n    return z\n")
    _write(root, "io.py", "")
    _write(root, "train/__init__.py", "")
    _write(root, "train/trainer.py", "from infoplane.io import x\nfrom ..estimators import soft\n")
    _write(root, "probe/__init__.py", "from .run import analyze\n")
    _write(root, "probe/run.py", "from infoplane.train import trainer\n")
    _write(root, "experiments/__init__.py", "")
    _write(root, "experiments/registry.py", "")
    _write(root, "experiments/arith.py", "")
    _write(root, "report/__init__.py", "")
    _write(root, "report/build.py", "from infoplane.experiments.registry import EXPERIMENTS\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", root)
    for fn in (_modules, _facade_exports):
        fn.cache_clear()
    yield root
    for fn in (_modules, _facade_exports):
        fn.cache_clear()


def test_checker_accepts_a_clean_tree(fake_tree):
    assert layer_violations() == [] and import_cycles() == []
    assert long_files() == [] and forbidden_text() == []


@pytest.mark.parametrize("rel, text, expected", [
    # every spelling of an upward import is caught, at any depth
    ("train/trainer.py", "def f():\n    from infoplane.probe.run import x\n",
     "train/trainer.py:2: train imports infoplane.probe.run"),
    ("train/trainer.py", "import infoplane.probe.run\n", "train imports infoplane.probe.run"),
    ("train/trainer.py", "from infoplane import probe\n", "train imports infoplane.probe"),
    ("train/trainer.py", "from ..probe import run\n", "train imports infoplane.probe.run"),
    ("train/trainer.py", "from .. import analyze\n", "train imports infoplane.probe.run"),  # via the facade
    ("estimators/soft.py", "from infoplane import Trainer\n", "estimators imports infoplane.train.trainer"),
    ("estimators/soft.py", "import infoplane\n", "estimators imports the package root"),
    ("estimators/soft.py", "from infoplane import __version__\n", "estimators imports the package root"),
    ("estimators/soft.py", "from infoplane.io import x\n", "estimators imports infoplane.io"),
    # experiments never import the report (the report loops over the experiments)
    ("experiments/arith.py", "from infoplane.report.build import x\n",
     "experiments imports infoplane.report.build"),
    ("newarea/__init__.py", "", "area 'newarea' has no place in the layer order"),
])
def test_checker_catches_upward_imports(fake_tree, rel, text, expected):
    _write(fake_tree, rel, text)
    _modules.cache_clear()
    assert any(expected in v for v in layer_violations()), layer_violations()


def test_checker_catches_cycles_long_files_and_machine_paths(fake_tree):
    _write(fake_tree, "probe/plan.py", "def f():\n    from infoplane.probe.run import g\n")
    _write(fake_tree, "probe/run.py", "from .plan import f\n")
    _write(fake_tree, "train/big.py", '"""Big."""\n' + "x = 1\n" * 500)
    _write(fake_tree, "train/big_ok.py", '"""Big.\n\nOver 500 lines because it must."""\n' + "x = 1\n" * 500)
    _write(fake_tree, "io.py", '"""See reference doc 1, step 3."""\nP = "/work/x"  # from /tmp/y\n'
                               '# see notes.md, sec. 2 (README.md is fine)\n')
    _modules.cache_clear()
    assert import_cycles() == ["infoplane.probe.plan -> infoplane.probe.run -> infoplane.probe.plan"]
    assert [v.split(":")[0] for v in long_files()] == ["infoplane/train/big.py"]
    assert forbidden_text() == ["infoplane/io.py:1: 'reference doc'", "infoplane/io.py:2: '/work/'",
                                "infoplane/io.py:2: '/tmp/'", "infoplane/io.py:3: 'notes.md'"]


def test_test_modules_have_unique_basenames():
    """Test folders have no ``__init__.py``, so pytest imports test modules by basename: two modules with one
    name make collection fail (an 'import file mismatch' error) and hide every test of the second."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, Path] = {}
    dup = []
    for p in sorted(tests.rglob("test_*.py")):
        if p.name in seen:
            dup.append(f"{seen[p.name].relative_to(tests)} and {p.relative_to(tests)}")
        seen.setdefault(p.name, p)
    assert not dup, "test modules sharing a basename: " + "; ".join(dup)
