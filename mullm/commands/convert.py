"""``mullm convert``: public music-text data sets -> the conversation JSONL schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "convert"
HELP = "Convert MusicCaps, MusicQA, MusicInstruct, LP-MusicCaps, Song Describer, LLark, " \
       "MuChoMusic or M2UGen's MUCaps / MUEdit / MUImage files to conversation JSONL."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    from mullm.data.converters import FORMATS

    parser.add_argument("--from", dest="fmt", required=True, choices=sorted(FORMATS),
                        help="input format")
    parser.add_argument("input", help="the data set's file (CSV, JSON or JSONL)")
    parser.add_argument("--out", required=True, help="output conversation JSONL")
    parser.add_argument("--audio-root", default=None,
                        help="folder the audio paths are relative to (default: input's folder)")
    parser.add_argument("--audio-template", default=None,
                        help="audio path from row fields, e.g. '{ytid}.wav' or "
                             "'[{ytid}]-[{start_s}-{end_s}].wav'")
    parser.add_argument("--no-check-audio", action="store_true",
                        help="do not require the audio files to exist yet")
    parser.add_argument("--skip-bad", action="store_true",
                        help="record bad rows in errors.jsonl beside --out and go on")
    parser.add_argument("--encoding", default="utf-8",
                        help="the input's text encoding (default utf-8; a byte-order mark "
                             "always wins), e.g. cp1252 or latin-1")
    parser.add_argument("--output-tokens", type=int, default=8,
                        help="mucaps / muedit / muimage: [AUDi] tokens per reply (the model's "
                             "music_output.num_tokens; M2UGen: 8)")


def main(args: argparse.Namespace) -> int:
    """Convert; exit 1 when nothing was written, 2 on an error (one line)."""
    from mullm.data.converters import convert
    from mullm.errors import MullmError, one_line

    try:
        written, bad = convert(args.fmt, args.input, args.out, audio_root=args.audio_root,
                               audio_template=args.audio_template,
                               check_audio=not args.no_check_audio, skip_bad=args.skip_bad,
                               encoding=args.encoding, output_tokens=args.output_tokens)
    except (MullmError, ValueError, OSError) as exc:
        print(f"mullm convert: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, "written": written, "bad": bad}))
    if bad:
        print(f"{bad} bad row(s) recorded in {Path(args.out).parent / 'errors.jsonl'}",
              file=sys.stderr)
    return 0 if written else 1
