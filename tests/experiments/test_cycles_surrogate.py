"""Experiment 1 (cycles tested against noise): significant sign changes with known answers, the validity
statistic on constructed series, the probe's mean and standard error over K batches, the shared-CE
gradient cosines, and the quick run's claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infoplane.experiments.cycles import CyclesConfig, run
from infoplane.experiments.cycles_analysis import null_counts, series_tests, surrogate_seed, validity
from infoplane.experiments.cycles_probe import probe_batches
from infoplane.train.alignment import family_alignment, gradient_alignment, mean_se, probe_alignment

pytestmark = pytest.mark.usefixtures("one_thread")

# a palindrome with zero sum: its least-squares line is exactly flat, so detrending leaves it unchanged
_HALF = [0.5, -0.05, 0.4, -0.6, -0.25]
_SERIES = np.array(_HALF + _HALF[::-1])


def test_sign_changes_count_only_points_beyond_two_se():
    se = np.full(_SERIES.size, 0.1)
    # |mean| > 0.2: + . + - - - - + . +  -> signed sequence + + - - - - + + : 2 changes (naive count: 6)
    out = series_tests(_SERIES, se, n_surrogates=19, seed=0)
    assert out["sign_changes"] == 2 and out["raw_sign_changes"] == 2
    assert out["frac_significant"] == pytest.approx(0.8)
    naive = int(np.sum(np.sign(_SERIES[1:]) != np.sign(_SERIES[:-1])))
    assert naive == 6
    # tiny SEs: every point is significant and the count is the naive one
    assert series_tests(_SERIES, np.full(_SERIES.size, 1e-3), n_surrogates=19)["sign_changes"] == naive
    # a large SE removes a point whatever its size: with indices 0, 2 and 7 at SE 1 the signed sequence is
    # - - - - + (indices 3, 4, 5, 6, 9): 1 change
    se2 = se.copy()
    se2[[0, 2, 7]] = 1.0
    assert series_tests(_SERIES, se2, n_surrogates=19)["sign_changes"] == 1


def test_excess_is_observed_minus_surrogate_mean_of_the_same_draws():
    rng = np.random.default_rng(3)
    m, s = rng.normal(size=40) * 0.3 + np.linspace(-0.5, 0.5, 40), np.full(40, 0.05)
    out = series_tests(m, s, n_surrogates=199, seed=7)
    null = null_counts(m, s, n_surrogates=199, seed=7)
    assert null.shape == (199,)
    assert out["null_mean"] == pytest.approx(float(null.mean()))
    assert out["excess"] == pytest.approx(out["sign_changes"] - null.mean())
    assert out["sign_p"] == pytest.approx((1 + np.sum(null >= out["sign_changes"])) / 200)
    assert 0 < out["spectral_p"] <= 1 and 0 < out["raw_sign_p"] <= 1


def test_surrogate_seeds_are_distinct_per_series():
    layers = ["mean", 0, 1, 2]
    seeds = {surrogate_seed(r, f, lay) for r in range(8) for f in ("mbe", "frob") for lay in layers}
    assert len(seeds) == 8 * 2 * 4
    with pytest.raises(ValueError, match="family"):
        surrogate_seed(0, "l2", "mean")


def test_validity_known_answers():
    rng = np.random.default_rng(0)
    cos = rng.normal(size=30)
    # MBE falls by cos^3 after each point: a monotone (not linear) dependence -> Spearman exactly 1
    mbe = np.concatenate([[1.0], 1.0 - np.cumsum(cos[:-1] ** 3)])
    v = validity(cos, mbe)
    assert v["spearman"] == pytest.approx(1.0) and 0 < v["pearson"] < 1 and v["n_pairs"] == 29
    assert v["sign_agree"] == 1.0
    # rising MBE after a positive cosine: -1
    rev = validity(cos, 2.0 - mbe)
    assert rev["spearman"] == pytest.approx(-1.0) and rev["sign_agree"] == 0.0
    # the last cosine has no next change: changing it alters nothing
    cos2 = cos.copy()
    cos2[-1] = 100.0
    assert validity(cos2, mbe) == v
    # independent series: near 0
    many = [validity(rng.normal(size=200), rng.normal(size=200).cumsum())["spearman"] for _ in range(50)]
    assert abs(np.mean(many)) < 0.05
    assert math.isnan(validity(cos, np.zeros(30))["spearman"])
    with pytest.raises(ValueError, match="same length"):
        validity(cos, mbe[:-1])


def test_mean_se_equals_numpy():
    a = np.random.default_rng(1).normal(size=(5, 3))
    m, s = mean_se(a)
    assert np.allclose(m, a.mean(0)) and np.allclose(s, a.std(0, ddof=1) / np.sqrt(5))
    m1, s1 = mean_se(a[:, 0])
    assert m1 == pytest.approx(a[:, 0].mean()) and s1 == pytest.approx(np.std(a[:, 0], ddof=1) / math.sqrt(5))
    with pytest.raises(ValueError, match="at least 2"):
        mean_se(a[:1])


def _tiny_gpt():
    from infoplane.train.model import GPT, GPTConfig

    return GPT(GPTConfig(vocab_size=40, n_layer=3, n_head=2, d_model=16, block_size=16, seed=0))


def test_family_alignment_matches_gradient_alignment_and_probe_controls():
    from infoplane.estimators import patch_matrix_entropy

    model = _tiny_gpt()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 40, (4, 16), generator=g), torch.randint(0, 40, (4, 16), generator=g)
    out = model(x, y)
    mbe = {i: patch_matrix_entropy(h, 8) for i, h in enumerate(out.hidden_states)}
    frob = {i: h.pow(2).mean() for i, h in enumerate(out.hidden_states)}
    params = list(model.parameters())
    fam = family_alignment(out.loss, {"mbe": mbe, "frob": frob}, params, retain_graph=True)
    for name, losses in (("mbe", mbe), ("frob", frob)):
        ref = gradient_alignment(out.loss, losses, params, retain_graph=True)
        assert fam[name]["cos"] == pytest.approx(ref["cos"], abs=1e-9)
        for i in losses:
            assert fam[name]["cos_layer"][i] == pytest.approx(ref["cos_layer"][i], abs=1e-9)
    # the probe: per-layer control or only its layer mean gives the same layer-mean cosine
    batches = [(x, y), (y, x)]
    full = probe_alignment(model, batches, 8, control_per_layer=True)
    lean = probe_alignment(model, batches, 8, control_per_layer=False)
    assert "frob_layer" in full and "frob_layer" not in lean
    assert np.allclose(full["frob"], lean["frob"], atol=1e-9) and np.allclose(full["mbe"], lean["mbe"])
    assert full["mbe"][0] == pytest.approx(fam["mbe"]["cos"], abs=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_probe_batches_fixed_seeded_and_disjoint():
    tokens = torch.arange(10_000)
    a = probe_batches(tokens, 4, 3, 16, seed=5)
    b = probe_batches(tokens, 4, 3, 16, seed=5)
    assert len(a) == 4 and all(x.shape == (3, 16) and y.shape == (3, 16) for x, y in a)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][0], probe_batches(tokens, 4, 3, 16, seed=6)[0][0])
    starts = torch.cat([x[:, 0] for x, _ in a])
    assert len(set(starts.tolist())) == 12 and all(int(s) % 16 == 0 for s in starts)
    assert all(torch.equal(y[:, :-1], x[:, 1:]) for x, y in a)  # targets are the next tokens
    with pytest.raises(ValueError, match="windows"):
        probe_batches(torch.arange(100), 4, 3, 16, seed=0)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from infoplane.experiments.common import run_experiment

    out = tmp_path_factory.mktemp("cycles")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = CyclesConfig.quick()
        yield out, cfg, run_experiment("cycles", cfg, out, run, progress=False)
    finally:
        torch.set_num_threads(n)


def test_quick_run_writes_the_claims(quick_run):
    _, cfg, s = quick_run
    claims = s["claims"]
    assert set(claims) == {"cycles", "cycles_vs_control", "cycles_validity"}
    n = len(cfg.seeds)
    for cid, c in claims.items():
        assert c["seeds"] == list(cfg.seeds) and len(c["treatment"]) == n
        assert all(math.isfinite(v) for v in c["treatment"]), cid
        assert c["replicates"] == "independent training seeds"
        names = {p["name"] for p in c["preconditions"]}
        assert {"probe_batches", "points_per_run"} <= names
    assert claims["cycles"]["baseline"] is None and claims["cycles_validity"]["baseline"] is None
    assert len(claims["cycles_vs_control"]["baseline"]) == n
    assert claims["cycles_vs_control"]["treatment"] == claims["cycles"]["treatment"]
    # the quick tier is too short by design: the long-run precondition fails honestly
    pre = {p["name"]: p["passed"] for p in claims["cycles"]["preconditions"]}
    assert pre == {"long_runs": False, "probe_batches": True, "points_per_run": False}
    assert len(s["spectral_p"]["mbe"]) == n and all(0 < p <= 1 for p in s["spectral_p"]["mbe"])


def test_quick_run_tables_se_and_figures(quick_run):
    from infoplane.experiments import cycles
    from infoplane.io import read_csv

    out, cfg, s = quick_run
    res = out / "results"
    series, per_batch = read_csv(res / "cycles_alignment.csv"), read_csv(res / "cycles_probe.csv")
    assert len(series) == len(cfg.seeds) * (cfg.steps // cfg.align_every)
    assert len(per_batch) == len(series) * cfg.probe_batches
    for r in series[:5]:
        same = [b for b in per_batch if b["seed"] == r["seed"] and b["step"] == r["step"]]
        vals = np.array([b["cos_mbe"] for b in same])
        assert vals.size == cfg.probe_batches
        assert r["cos_mbe"] == pytest.approx(vals.mean(), abs=1e-12)
        assert r["cos_mbe_se"] == pytest.approx(vals.std(ddof=1) / math.sqrt(vals.size), abs=1e-12)
        for i in range(cfg.n_layer):
            assert 0.0 <= r[f"mbe_c_{i}"] <= math.log(cfg.patch_size) + 1e-6
            assert 0.0 <= r[f"mbe_{i}"] <= math.log(cfg.patch_size) + 1e-6
    stats = read_csv(res / "cycles_stats.csv")
    top = [r for r in stats if r["layer"] == "mean"]
    assert len(top) == 2 * len(cfg.seeds) and all(0 < r["spectral_p"] <= 1 for r in top)
    assert any("validity" in line.lower() for line in cycles.describe(s))
    figs = cycles.figures(res, out / "figures")
    names = ["cycles_alignment.png", "cycles_surrogates.png", "cycles_validity.png"]
    assert [p.name for p, _ in figs] == names
    assert all(p.stat().st_size > 0 for p, _ in figs)
