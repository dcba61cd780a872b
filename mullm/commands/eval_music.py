"""``mullm eval-music``: projector conditioning against text prompting on the same requests.

    mullm eval-music --model runs/m2ugen/model --requests requests.jsonl --out eval/ \\
        --clap laion/larger_clap_music [--reference refs/ --fad-model-dir ckpts/]

Generates every request in both modes (``OUT/projector``, ``OUT/text``; resumable), scores
each clip's CLAP similarity to its request and, with ``--reference``, each mode's FAD against
the reference clips; writes ``OUT/comparison.json`` and prints the table. Where FAD cannot be
computed (package or embedding checkpoint missing) the report says what is missing.
"""

from __future__ import annotations

import argparse
import sys

from mullm.commands.generate_music import add_request_options, requests_and_model
from mullm.errors import MullmError

NAME = "eval-music"
HELP = "Compare projector-conditioned and text-prompted music on the same requests (CLAP, FAD)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    add_request_options(parser, model_help="model with a music_output section",
                        requests_help="requests as for generate-music (JSONL or one prompt "
                                      "per line)")
    parser.add_argument("--clap", required=True, metavar="CHECKPOINT",
                        help="transformers CLAP checkpoint (folder or hub id), text and audio "
                             "towers, e.g. laion/larger_clap_music")
    parser.add_argument("--reference", default=None, metavar="DIR",
                        help="folder of reference clips for FAD")
    parser.add_argument("--fad-model-dir", default=None, metavar="DIR",
                        help="folder holding FAD's embedding checkpoint "
                             "(music_audioset_epoch_15_esc_90.14.pt)")
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="dotted model-config override (repeatable)")


def main(args: argparse.Namespace) -> int:
    """Run both modes, score, print the table."""
    from mullm.eval.music_output import compare_conditioning, format_report

    try:
        requests, model = requests_and_model(args)
        report = compare_conditioning(model, requests, args.out, args.clap,
                                      reference_dir=args.reference,
                                      fad_model_dir=args.fad_model_dir,
                                      duration_s=args.duration_s, seed=args.seed,
                                      max_new_tokens=args.max_new_tokens)
    except (MullmError, ValueError, FileNotFoundError) as exc:
        print(f"mullm eval-music: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if any(m["generated"] for m in report["modes"].values()) else 1
