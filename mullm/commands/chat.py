"""``mullm chat``: one answer about an audio file, printed to stdout.

    mullm chat --model runs/quickstart/run/model --audio song.wav --prompt "What key is this in?"

With ``--stream`` the answer is printed as it is generated.
"""

from __future__ import annotations

import argparse
import sys

from mullm.errors import MullmError, one_line

NAME = "chat"
HELP = "Ask a model one question about audio (and/or image) files; prints the answer."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--model", required=True,
                        help="model directory, or a model/training config YAML")
    parser.add_argument("--audio", nargs="*", default=[], metavar="FILE",
                        help="audio file(s); several go in order")
    parser.add_argument("--image", nargs="*", default=[], metavar="FILE", help="image file(s)")
    parser.add_argument("--prompt", required=True, help="the question or instruction")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--do-sample", action="store_true")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stream", action="store_true", help="print tokens as they come")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda ...")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="dotted model-config override (repeatable)")


def main(args: argparse.Namespace) -> int:
    """Load the model, answer once."""
    from mullm.commands.caption import load_model

    gen = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
               num_beams=args.num_beams, temperature=args.temperature, top_p=args.top_p,
               seed=args.seed)
    try:
        model = load_model(args.model, args.overrides, args.device)
        audio = args.audio or None
        image = args.image or None
        if args.stream:
            from mullm.streaming import stream_to

            stream_to(model, args.prompt, audio=audio, image=image, **gen)
            print()
        else:
            print(model.chat(args.prompt, audio=audio, image=image, **gen))
    except (MullmError, ValueError, OSError) as exc:
        print(f"mullm chat: error: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0
