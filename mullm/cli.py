"""The ``mullm`` command: one subcommand per module in ``mullm/commands``.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``; adding a file adds a subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

import mullm.commands
from mullm.errors import one_line


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
    """Entry point of the console script.

    A command's error is one line, ``mullm COMMAND: error: ...``, with exit status 2: the
    commands catch what they expect; anything that escapes them is caught here too, so a
    user never sees a traceback (``MULLM_DEBUG=1`` prints it, for a bug report).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        print(f"mullm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last guard; see the docstring
        if os.environ.get("MULLM_DEBUG"):
            traceback.print_exc()
        print(f"mullm {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
