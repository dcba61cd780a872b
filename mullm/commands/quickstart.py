"""``mullm quickstart [--tiny] [--out DIR]``: build data, train, show what the model learned."""

from __future__ import annotations

import argparse
import sys

NAME = "quickstart"
HELP = ("Offline demo: render the offline corpus once (cached), train the default model on "
        "its cached features (~14 min on 2 CPU cores; --tiny: ~1 min), print closed-question "
        "accuracy vs audio-ablation controls and chance, caption held-out clips and score "
        "their attribute words.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the quickstart options."""
    parser.add_argument("--tiny", action="store_true", help="CI-sized: 24 clips, 8 steps")
    parser.add_argument("--out", default="runs/quickstart", help="output folder")
    parser.add_argument("--llm", default=None,
                        help="another base LLM (hub id, folder, .gguf) instead of SmolLM2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="training-config overrides, e.g. stages.joint.steps=300")


def main(args: argparse.Namespace) -> int:
    """Run the quickstart."""
    from mullm.errors import MullmError
    from mullm.quickstart import run_quickstart

    try:
        run_quickstart(args.out, tiny=args.tiny, llm=args.llm, overrides=args.overrides,
                       progress=not args.no_progress)
    except MullmError as exc:
        print(f"mullm quickstart: error: {exc}", file=sys.stderr)
        return 1
    return 0
