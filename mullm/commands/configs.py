"""``mullm configs [NAME]``: list the shipped configs by name, or show one composed.

    mullm configs                            # every preset and project, with its description
    mullm configs projects/salmonn-style/train  # that project with its presets expanded

Names work wherever a config is read (``mullm train --config quickstart``,
``mullm.load("offline-default")``), from a checkout and from an installed package alike.
"""

from __future__ import annotations

import argparse
import sys

NAME = "configs"
HELP = ("List the shipped presets and projects by name, or print one with its presets "
        "expanded.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options."""
    parser.add_argument("name", nargs="?", default=None,
                        help="a config name or YAML path to print composed")


def main(args: argparse.Namespace) -> int:
    """List the names, or print one config composed; 1 on an unknown name."""
    import yaml

    from mullm.config_files import compose, config_names, describe, read_config, short_names
    from mullm.errors import MullmError

    try:
        if args.name is None:
            names = config_names()
            width = max(len(n) for n in names)
            for name, path in names.items():
                print(f"{name:<{width}}  {describe(path)}")
            print(f"\nA preset's file name alone works too where it is unique: "
                  f"{', '.join(sorted(short_names(names)))}.")
            return 0
        data, path = read_config(args.name)
        print(f"# {path}, presets expanded")
        print(yaml.safe_dump(compose(data, path), sort_keys=False), end="")
    except MullmError as exc:
        print(f"mullm configs: error: {exc}", file=sys.stderr)
        return 1
    return 0
