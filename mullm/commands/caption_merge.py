"""``mullm caption-merge``: join the shard files of a sharded caption job.

    mullm caption-merge captions.jsonl shards/part-*.jsonl

Every shard must have been made with the same model and settings (their ``.meta.json``
sidecars are compared), no id may appear twice, and every shard i/n must be there unless
``--allow-incomplete``. The result is sorted by id and written atomically.
"""

from __future__ import annotations

import argparse
import sys

from mullm.errors import MullmError

NAME = "caption-merge"
HELP = "Merge the shard files of `mullm caption --shard i/n` into one JSONL."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("out", help="merged output JSONL")
    parser.add_argument("shards", nargs="+", help="shard JSONL files")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="merge even when some shards i/n are missing")


def main(args: argparse.Namespace) -> int:
    """Merge; print what was merged."""
    from mullm.caption import merge_shards

    try:
        info = merge_shards(args.out, args.shards, allow_incomplete=args.allow_incomplete)
    except (MullmError, ValueError) as exc:
        print(f"mullm caption-merge: error: {exc}", file=sys.stderr)
        return 2
    missing = f", missing shards {info['missing']}" if info["missing"] else ""
    print(f"{args.out}: {info['records']} records ({info['failed']} failed) from "
          f"{len(args.shards)} file(s){missing}")
    return 0
