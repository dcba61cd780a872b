"""``mullm generate-music``: music for many requests, one WAV and one JSON record each.

    mullm generate-music --model runs/m2ugen/model --prompt "a calm piano piece" --out gen/
    mullm generate-music --model M --requests requests.jsonl --out gen/ --mode text

``--mode projector`` (default: the model's ``music_output.mode``) lets the LLM answer and
conditions the decoder on the output projector; ``--mode text`` prompts the decoder with the
request text (the baseline). Rerunning with the same ``--out`` resumes; a bad request becomes
an error record. Exit status: 0 when something was generated (or everything was already
done), 1 when nothing succeeded, 2 on a usage or setup error. See docs/music-output.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mullm.errors import MullmError

if TYPE_CHECKING:
    from mullm.model import MusicLLM
    from mullm.outputs.job import MusicRequest

NAME = "generate-music"
HELP = "Generate music for text requests (resumable: WAV files plus one JSON record each)."


def add_request_options(parser: argparse.ArgumentParser, model_help: str,
                        requests_help: str) -> None:
    """The first options of both music commands (generate-music, eval-music), in this order:
    ``--model``, the requests (``--prompt``, ``--requests``) and ``--out``."""
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                        help="a request (repeatable)")
    parser.add_argument("--requests", default=None, metavar="FILE", help=requests_help)
    parser.add_argument("--out", required=True, help="output folder (resumed if it exists)")


def requests_and_model(args: argparse.Namespace) -> tuple[list[MusicRequest], MusicLLM]:
    """The requests of ``--prompt`` / ``--requests`` (read first, so that a bad file fails
    before the model loads) and the model of ``--model``, ``--set``, ``--device``.

    Raises:
        ValueError: no request at all.
        MullmError, FileNotFoundError: as ``read_requests`` and ``load_model``.
    """
    from mullm.commands.caption import load_model
    from mullm.outputs.job import read_requests

    requests = read_requests(args.prompt, args.requests)
    if not requests:
        raise ValueError("no request: give --prompt or --requests")
    return requests, load_model(args.model, args.overrides, args.device)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    add_request_options(
        parser,
        model_help="model directory, a model/training config YAML, or a config name; its "
                   "config needs a music_output section",
        requests_help="JSONL of {\"id\"?, \"prompt\", \"audio\"?: clip to edit} or a text file "
                      "with one prompt per line")
    parser.add_argument("--mode", choices=["projector", "text"], default=None,
                        help="projector: the LLM's output tokens through the projector; "
                             "text: the decoder prompted with the request (default: the "
                             "model's music_output.mode)")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="clip length (default: music_output.decoder.duration_s)")
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="longest LLM reply (projector mode)")
    parser.add_argument("--require-tokens", action="store_true",
                        help="a reply without the output tokens is an error (default: they "
                             "are appended and the record says tokens_emitted=false)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="redo requests whose record has an error")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda ...")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="dotted model-config override (repeatable), "
                        "e.g. music_output.decoder.guidance_scale=1")


def main(args: argparse.Namespace) -> int:
    """Run the job; print the summary."""
    from mullm.outputs.job import run_music_job

    try:
        requests, model = requests_and_model(args)
        stats = run_music_job(model, requests, args.out, mode=args.mode,
                              duration_s=args.duration_s, seed=args.seed,
                              max_new_tokens=args.max_new_tokens,
                              require_tokens=args.require_tokens,
                              retry_failed=args.retry_failed, model_name=args.model)
    except (MullmError, ValueError, FileNotFoundError) as exc:
        print(f"mullm generate-music: error: {exc}", file=sys.stderr)
        return 2
    print(stats.table())
    for line in stats.errors[:10]:
        print(f"  failed {line}", file=sys.stderr)
    if stats.failed and stats.succeeded == 0 and stats.skipped == 0:
        return 1
    return 0
