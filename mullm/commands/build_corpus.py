"""``mullm build-corpus``: render an offline corpus with exact labels (metadata.jsonl + WAVs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "build-corpus"
HELP = "Render music21 scores and procedural pieces to WAV with exact key/tempo/metre labels."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--out", required=True, help="output folder (metadata.jsonl, audio/)")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same corpus")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--min-s", type=float, default=10.0, help="shortest clip, seconds")
    parser.add_argument("--max-s", type=float, default=30.0, help="longest clip, seconds")
    parser.add_argument("--soundfont", default=None,
                        help="General MIDI .sf2 (default: FluidR3_GM, else TimGM6mb)")
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--music21-fraction", type=float, default=0.4,
                        help="share of clips drawn from music21 scores")
    parser.add_argument("--single-family-fraction", type=float, default=0.3,
                        help="share of clips played by one instrument family")
    parser.add_argument("--balanced", action="store_true",
                        help="procedural clips with every key, tempo class, metre and "
                             "(single-family) family equally often")
    parser.add_argument("--instrument-set", default="all", choices=["all", "train", "heldout"],
                        help="GM programs to draw from: train and heldout share none")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild into a folder that holds a corpus with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Build the corpus; exit 1 when no clip could be rendered."""
    from mullm.data.corpus import build_corpus
    from mullm.errors import OutputError
    from mullm.utils.files import check_output_path

    check_output_path(args.out, folder=True, error=OutputError)
    meta = build_corpus(args.out, args.n, args.seed, workers=args.workers, min_s=args.min_s,
                        max_s=args.max_s, soundfont=args.soundfont,
                        sample_rate=args.sample_rate, music21_fraction=args.music21_fraction,
                        single_family_fraction=args.single_family_fraction,
                        balanced=args.balanced, instrument_set=args.instrument_set,
                        progress=not args.quiet, overwrite=args.overwrite)
    n_ok = sum(1 for line in Path(meta).read_text().splitlines() if line.strip())
    err = Path(args.out) / "errors.jsonl"
    n_err = sum(1 for line in err.read_text().splitlines() if line.strip()) if err.is_file() \
        else 0
    print(json.dumps({"metadata": str(meta), "clips": n_ok, "errors": n_err}))
    if n_err:
        print(f"{n_err} failure(s) recorded in {err}", file=sys.stderr)
    return 0 if n_ok else 1
