import importlib

import infoplane


def test_every_public_name_resolves():
    for name in infoplane.__all__:
        assert getattr(infoplane, name) is not None, name


def test_estimators_import_nothing_else_from_infoplane():
    # architecture: estimators are pure math; they must not import probe/train/experiments/report/cli
    import pathlib
    import re

    root = pathlib.Path(importlib.import_module("infoplane.estimators").__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        bad = re.findall(r"^\s*(?:from|import)\s+infoplane\.(?!estimators)(\w+)", text, flags=re.M)
        assert not bad, f"{path.name} imports infoplane.{bad}"
        parent = re.search(r"^\s*from\s+\.\.", text, flags=re.M)
        assert not parent, f"{path.name} imports from the parent package"


def test_quickstart_from_readme_runs():
    import torch

    torch.manual_seed(0)
    z = torch.randn(512, 32)
    labels = torch.randint(0, 5, (512,))
    h = infoplane.soft_entropy(z)
    mi = infoplane.soft_mutual_information(z, labels)
    assert 0.9 < float(h) <= 1.0
    assert 0.0 <= float(mi) < float(h)
    acc = infoplane.SoftEntropyAccumulator(dim=32, n_bins=100, seed=0)
    acc.update(z, labels={"token": labels})
    res = acc.compute()
    assert abs(float(res.entropy[0]) - float(h)) < 1e-5
    assert abs(float(res.mi["token"][0]) - float(mi)) < 1e-5
    assert 0.0 <= float(infoplane.matrix_entropy(z[:64])) <= float(torch.log(torch.tensor(64.0)))
