"""The ``infoplane`` command line: analyze | sweep | plot | train | reproduce.

Each area registers its own sub-commands (``cli/probe.py``, ``cli/train.py``, ``cli/reproduce.py``);
this module only dispatches. It owns what every command shares:

- a sub-command module that fails to import is an error of the whole command line, never a silently
  missing command;
- help texts print each flag's default through argparse itself (:class:`HelpFormatter`);
- ``--debug`` (before or after the command): errors show their full traceback. Without it, an error the user
  can act on (``ValueError``, a missing or unwritable file) is one line and exit status 2; any other
  exception is one line naming its type plus a hint to rerun with ``--debug``, exit status 1; Ctrl-C is
  exit status 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

__all__ = ["main", "build_parser", "HelpFormatter", "USER_ERRORS"]

# module -> the sub-commands it registers (imported lazily so `infoplane --help` stays fast)
_AREAS = ("infoplane.cli.probe", "infoplane.cli.train", "infoplane.cli.reproduce", "infoplane.cli.report",
          "infoplane.cli.correlate")

# errors a user can act on: a bad value or flag, a missing, unreadable or unwritable path
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
)

_DEBUG_HELP = "show the full traceback of an error"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ``(default: ...)`` after every flag's help, except where there is no value to show
    (a default of None, an on/off switch that is off unless given) or the help already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        switch_off = action.default is False and isinstance(action, argparse._StoreTrueAction)
        if action.default is None or switch_off or "default" in text.lower():
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``infoplane`` parser with every area's sub-commands (an import error in an area propagates)."""
    from infoplane import __version__

    parser = argparse.ArgumentParser(
        prog="infoplane",
        description="Information-theoretic analysis and training of language models "
        "(soft entropy / information plane; matrix-based entropy / GAPT).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"infoplane {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
        if "--debug" not in command._option_string_actions:
            # SUPPRESS: a command that does not see --debug leaves the top-level value in place
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


def _where(args: Any) -> str:
    command = getattr(args, "command", None)
    return f"infoplane {command}" if command else "infoplane"


def _fail(where: str, exc: BaseException, hint: bool) -> None:
    kind = "" if isinstance(exc, USER_ERRORS) else f"{type(exc).__name__}: "
    print(f"{where}: error: {kind}{exc}", file=sys.stderr)
    if hint:
        print(f"{where}: rerun with --debug for the traceback", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args: Any = None
    debug = "--debug" in argv  # known before parsing, so that an error while building the parser obeys it
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = bool(args.debug)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{_where(args)}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if debug:
            raise
        _fail(_where(args), exc, hint=False)
        return 2
    except Exception as exc:
        if debug:
            raise
        _fail(_where(args), exc, hint=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
