"""``mullm train --config C [--resume DIR] [a.b=value ...]``: run a training recipe."""

from __future__ import annotations

import argparse
import sys

NAME = "train"
HELP = "Train a music LLM from a YAML config (stages, data mix, checkpoints, resume)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train options."""
    parser.add_argument("--config", required=True,
                        help="training YAML (model, data, stages): a path or a shipped config's "
                             "name, e.g. quickstart or projects/mu-llama/train (mullm configs)")
    parser.add_argument("--resume", default=None,
                        help="a checkpoint folder, or a run folder (its latest checkpoint)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an earlier run in output_dir instead of refusing to start")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="dotted overrides, e.g. stages.main.steps=10 train.batch_size=4")


def main(args: argparse.Namespace) -> int:
    """Train; print the final model directory."""
    from mullm.errors import MullmError
    from mullm.train.trainer import train

    try:
        out = train(args.config, args.overrides, resume=args.resume, overwrite=args.overwrite)
    except MullmError as exc:
        print(f"mullm train: error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
