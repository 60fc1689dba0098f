"""``infoplane report``: rebuild a reproduction's report from its results, and the README's claims table.

    infoplane report DIR                          # DIR/report.html and claims tables from DIR/results
    infoplane report DIR --readme-table           # print the Markdown claims table
    infoplane report DIR --update-readme README.md  # rewrite the README's claims-table block from DIR
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _cmd(args: argparse.Namespace) -> int:
    from infoplane.report.build import build_report
    from infoplane.report.readme import readme_table, update_readme

    if not args.no_build:
        print(f"report: {build_report(args.dir)}")
    if args.readme_table:
        print(readme_table(args.dir), end="")
    if args.update_readme:
        changed = update_readme(args.update_readme, args.dir)
        print(f"{args.update_readme}: {'updated' if changed else 'already up to date'}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``report`` sub-command."""
    p = subparsers.add_parser(
        "report", help="rebuild DIR/report.html from DIR/results; print or write the README claims table",
        description="Rebuild a reproduction's report and claims tables from its results files (verdicts are "
                    "recomputed by the verdict engine), and generate the README's claims table from them.")
    p.add_argument("dir", metavar="DIR", help="a reproduction output directory (with results/)")
    p.add_argument("--readme-table", action="store_true", help="print the Markdown claims table")
    p.add_argument("--update-readme", metavar="README", help="rewrite the claims-table block of this file")
    p.add_argument("--no-build", action="store_true", help="do not rebuild report.html (tables only)")
    p.set_defaults(func=_cmd)
