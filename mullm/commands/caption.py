"""``mullm caption``: caption many audio files into one JSONL record each.

    mullm caption --model runs/quickstart/run/model --input music/ --out captions.jsonl

Inputs are files, folders (recursive), globs, manifests (conversation JSONL,
metadata.jsonl, CSV) or local Hugging Face ``datasets`` folders. Rerunning with the same
``--out`` resumes (done ids are skipped; failed ones too unless ``--retry-failed``); a
resume with another model or other settings is refused. ``--shard i/n`` takes a stable
1/n of the inputs; ``mullm caption-merge`` joins the shard files. Under ``torchrun
--nproc_per_node N -m mullm.cli caption ...`` each process takes shard RANK/N on its own
device and rank 0 merges the shards into ``--out`` (``mullm.caption.distributed``). The
exit status is non-zero only when nothing succeeded. See docs/captioning.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mullm.errors import MullmError, OutputError, one_line
from mullm.utils.files import check_output_path

if TYPE_CHECKING:
    from mullm.caption.distributed import Launch
    from mullm.model import MusicLLM

NAME = "caption"
HELP = "Caption audio files into a resumable JSONL file (batched, shardable)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--model", required=True,
                        help="model directory, or a model/training config YAML")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="audio files, folders, globs, manifests (JSONL/CSV) or HF "
                             "datasets folders")
    parser.add_argument("--out", required=True, help="output JSONL (resumed if it exists)")
    parser.add_argument("--prompt", default=None, help="instruction given with each clip")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="clips (windows of any tracks) per generate call")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="caption only shard I of N (0-based), e.g. 0/4")
    parser.add_argument("--retry-failed", action="store_true",
                        help="redo items whose record in --out has an error")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--num-beams", type=int, default=1, help="beam search width")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for sampling (same inputs + batch size = same output)")
    parser.add_argument("--window-s", type=float, default=None,
                        help="segment length in seconds (default: the encoder's window_s "
                             "or max_duration_s)")
    parser.add_argument("--hop-s", type=float, default=None,
                        help="segment hop in seconds (default: the window)")
    parser.add_argument("--summary", choices=["llm", "concat"], default="llm",
                        help="whole-track caption of long tracks: the LLM summarises the "
                             "segment captions (llm), or they are joined with times (concat)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="dotted model-config override (repeatable)")


def load_model(source: str, overrides: list[str] | None = None, device: str = "auto"
               ) -> MusicLLM:
    """Load a MusicLLM from a model directory or YAML and move it to ``device``."""
    import torch

    from mullm.model import MusicLLM

    model = MusicLLM.load(source, overrides or None)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    return model


def main(args: argparse.Namespace) -> int:
    """Run the job; print the summary table."""
    from mullm.caption import (
        DEFAULT_PROMPT,
        CaptionSettings,
        generation_config,
        parse_shard,
        run_caption_job,
    )
    from mullm.caption.distributed import torchrun_launch

    try:
        settings = CaptionSettings(
            generation_config(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                              num_beams=args.num_beams, temperature=args.temperature,
                              top_p=args.top_p),
            seed=args.seed, window_s=args.window_s, hop_s=args.hop_s, summary=args.summary)
        settings.validate()
        shard = parse_shard(args.shard) if args.shard else None
        # Before the model loads (minutes for a big one): the output can be written.
        check_output_path(args.out, error=OutputError)
        job = dict(prompt=args.prompt or DEFAULT_PROMPT, batch_size=args.batch_size,
                   settings=settings, shard=shard, retry_failed=args.retry_failed,
                   model_name=args.model, progress=False if args.no_progress else None)
        launch = torchrun_launch()
        if launch is not None:
            return _over_processes(args, launch, job)
        model = load_model(args.model, args.overrides, args.device)
        stats = run_caption_job(model, args.input, args.out, **job)
    except (MullmError, ValueError, OSError) as exc:
        print(f"mullm caption: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(stats.table())
    if stats.items and stats.succeeded + stats.previously_succeeded == 0:
        print(f"mullm caption: no item succeeded; see the 'error' fields in {args.out}",
              file=sys.stderr)
        return 1
    return 0


def _over_processes(args: argparse.Namespace, launch: Launch, job: dict) -> int:
    """One process of a torchrun launch: its shard, then (rank 0) the merge."""
    from mullm.caption.distributed import caption_over_processes

    result = caption_over_processes(
        lambda device: load_model(args.model, args.overrides, device), args.input, args.out,
        launch, device=args.device, **job)
    print(f"rank {launch.rank} of {launch.world}: {result.shard_out}\n{result.stats.table()}",
          file=sys.stderr)
    if result.merged is None:
        return 0  # rank 0 judges the merged result
    m = result.merged
    print(f"merged {m['records']} record(s), {m['failed']} failed, from {launch.world} shard "
          f"files into {args.out}")
    if m["records"] and m["records"] == m["failed"]:
        print(f"mullm caption: no item succeeded; see the 'error' fields in {args.out}",
              file=sys.stderr)
        return 1
    return 0
