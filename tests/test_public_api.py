import infoplane


def test_every_public_name_resolves():
    # an ImportError inside the package surfaces here as a failure (the layer rules live in test_layers.py)
    assert len(set(infoplane.__all__)) == len(infoplane.__all__)
    for name in infoplane.__all__:
        assert getattr(infoplane, name) is not None, name


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
