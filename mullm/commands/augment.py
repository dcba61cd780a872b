"""``mullm augment``: labels -> conversations (templates or an LLM), or augmented audio."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "augment"
HELP = "Turn metadata.jsonl labels into conversations (templates | llm | generation), " \
       "augment audio (audio), or label a folder of unlabelled audio first (--mir)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--metadata", help="metadata.jsonl written by build-corpus")
    src.add_argument("--mir", metavar="AUDIO_DIR",
                     help="unlabelled audio folder: estimate key/mode/tempo with librosa first")
    parser.add_argument("--out", required=True,
                        help="conversation JSONL (audio mode: the new metadata.jsonl)")
    parser.add_argument("--mode", choices=["templates", "llm", "audio", "generation"],
                        default="templates",
                        help="generation: music-generation and editing requests (task "
                             "generate, with targets) for a music-output model; edits pair "
                             "clips with their --mode audio copies")
    parser.add_argument("--output-tokens", type=int, default=8,
                        help="generation: [AUDi] tokens per reply (music_output.num_tokens)")
    parser.add_argument("--per-clip", type=int, default=4, help="template items per clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-closed", action="store_true",
                        help="templates: leave out the fixed closed questions")
    parser.add_argument("--llm-base-url", help="llm: OpenAI-compatible endpoint, e.g. "
                        "http://127.0.0.1:8000/v1")
    parser.add_argument("--llm-model", help="llm: model name (endpoint) or local folder")
    parser.add_argument("--llm-api-key-env", default="OPENAI_API_KEY",
                        help="llm: environment variable holding the API key")
    parser.add_argument("--max-retries", type=int, default=2, help="llm: retries per clip")
    parser.add_argument("--ops", default="pitch:-2,pitch:+2,stretch:0.9,stretch:1.1",
                        help="audio: comma-separated pitch:N, stretch:R, gain:DB, noise:SNR")


def _rows(args: argparse.Namespace, out: Path) -> tuple[list[dict], Path]:
    from mullm.data.corpus import read_metadata

    if args.metadata:
        return read_metadata(args.metadata), Path(args.metadata).parent
    from mullm.data.mir import label_folder

    rows = label_folder(args.mir, out.parent, errors_path=out.parent / "errors.jsonl")
    labels = out.with_name(out.stem + ".labels.jsonl")
    labels.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "mir"}) + "\n"
                              for r in rows))
    print(f"augment: estimated labels for {len(rows)} file(s) -> {labels}", file=sys.stderr)
    return rows, out.parent


def main(args: argparse.Namespace) -> int:
    """Run one augmentation mode; exit 1 when nothing was produced."""
    from mullm.data.schema import write_conversations
    from mullm.errors import OutputError
    from mullm.utils.files import check_output_path

    out = check_output_path(args.out, error=OutputError)  # before an LLM loads
    out.parent.mkdir(parents=True, exist_ok=True)
    errors = out.parent / "errors.jsonl"
    if args.mode == "audio":
        if not args.metadata:
            raise SystemExit("augment --mode audio needs --metadata")
        from mullm.data.audio_augment import augment_metadata

        path, n, bad = augment_metadata(args.metadata, out, args.ops.split(","), seed=args.seed)
        print(json.dumps({"metadata": str(path), "clips": n, "errors": bad}))
        return 0 if n else 1
    rows, meta_dir = _rows(args, out)
    if args.mode == "generation":
        from mullm.data.generation import generation_conversations

        convs = generation_conversations(rows, meta_dir=meta_dir, out_dir=out.parent,
                                         output_tokens=args.output_tokens, seed=args.seed)
        bad = 0
    elif args.mode == "templates":
        from mullm.data.templates import template_conversations

        convs = template_conversations(rows, meta_dir=meta_dir, out_dir=out.parent,
                                       per_clip=args.per_clip, seed=args.seed,
                                       closed=not args.no_closed)
        bad = 0
    else:
        from mullm.data.llm_augment import (
            llm_conversations,
            openai_generator,
            transformers_generator,
        )

        if not args.llm_model:
            raise SystemExit("augment --mode llm needs --llm-model (and --llm-base-url for an "
                             "HTTP endpoint)")
        if args.llm_base_url:
            gen = openai_generator(args.llm_base_url, args.llm_model,
                                   api_key_env=args.llm_api_key_env)
        else:
            gen = transformers_generator(args.llm_model)
        convs, stats = llm_conversations(rows, gen, model_name=args.llm_model,
                                         meta_dir=meta_dir, out_dir=out.parent,
                                         max_retries=args.max_retries, errors_path=errors)
        bad = stats.failed
        print(f"augment: {stats.ok}/{stats.items} clips ok, {stats.invalid_replies} invalid "
              f"replies {stats.reasons}", file=sys.stderr)
    n = write_conversations(out, convs)
    print(json.dumps({"out": str(out), "conversations": n, "clips": len(rows), "errors": bad}))
    return 0 if n else 1
