"""The ``infoplane`` command line: analyze | sweep | plot | train | reproduce.

Each area registers its own sub-commands (``cli/probe.py``, ``cli/train.py``, ``cli/reproduce.py``);
this module only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module -> the sub-commands it registers (imported lazily so `infoplane --help` stays fast)
_AREAS = ("infoplane.cli.probe", "infoplane.cli.train", "infoplane.cli.reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infoplane",
        description="Information-theoretic analysis and training of language models "
        "(soft entropy / information plane; matrix-based entropy / GAPT).",
    )
    from infoplane import __version__

    parser.add_argument("--version", action="version", version=f"infoplane {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"infoplane {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
