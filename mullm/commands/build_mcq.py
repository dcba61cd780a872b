"""``mullm build-mcq``: a MuChoMusic-format CSV from a labelled collection.

    mullm build-mcq --metadata runs/quickstart/corpus/metadata.jsonl --out mcq.csv

Questions on key, tempo, time signature, instrument family and style, each with three
seeded distractors (``mullm.eval.build_mcq``); ``mullm eval --task mcq --data mcq.csv``
reads it as it reads MuChoMusic.
"""

from __future__ import annotations

import argparse
import sys

from mullm.errors import MullmError

NAME = "build-mcq"
HELP = "Build a MuChoMusic-format multiple-choice CSV from a metadata.jsonl collection."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--metadata", required=True, help="metadata.jsonl (build-corpus)")
    parser.add_argument("--out", required=True, help="the CSV to write")
    parser.add_argument("--split", default="test", help="clips of this split ('all': every)")
    parser.add_argument("--max-clips", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="distractor draw")


def main(args: argparse.Namespace) -> int:
    """Write the CSV; print how many questions."""
    from mullm.eval.build_mcq import build_mcq_csv

    try:
        n = build_mcq_csv(args.metadata, args.out,
                          split=None if args.split == "all" else args.split,
                          max_clips=args.max_clips, seed=args.seed)
    except (MullmError, ValueError, FileNotFoundError) as exc:
        print(f"mullm build-mcq: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {n} questions")
    return 0
