"""The ``mullm`` command: one subcommand per module in ``mullm/commands``.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``; adding a file adds a subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import mullm.commands


def _command_modules() -> list:
    mods = []
    for info in sorted(pkgutil.iter_modules(mullm.commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"mullm.commands.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="mullm", description="Music language models.")
    from mullm._version import __version__

    parser.add_argument("--version", action="version", version=f"mullm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    return int(args._main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
