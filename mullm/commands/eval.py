"""``mullm eval``: evaluate a model on a benchmark, batched and resumable, with a report.

    mullm eval --model runs/quickstart/run/model --task mcq --data mcq.csv --out eval/

Tasks: ``mcq`` (MuChoMusic CSV, RUListening, MMAU / MMAR JSON, conversation JSONL; the
noise / other-clip / no-audio controls run by default beside the real run; log-probability
and generation scorers side by side), ``caption`` and ``qa`` (conversation JSONL; BLEU,
METEOR, ROUGE-L, CIDEr, BERTScore when local, sentence similarity) and ``mir`` (a
``metadata.jsonl`` collection; key MIREX score, tempo Acc1/Acc2, style and instruments).
The data is checked before the model loads. Rerunning the same command resumes. ``OUT``
gets ``records.jsonl``, ``report.json``, ``report.md`` and plots. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import sys

from mullm.errors import MullmError

NAME = "eval"
HELP = "Evaluate a model (mcq, caption, qa, mir) into a resumable folder with a report."


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("--model", required=True,
                        help="model directory, model/training config YAML, or a shipped name")
    parser.add_argument("--task", required=True, choices=["mcq", "caption", "qa", "mir"])
    parser.add_argument("--data", required=True, help="the benchmark file")
    parser.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    parser.add_argument("--format", dest="fmt", default=None,
                        choices=["muchomusic", "rulistening", "mmau", "mmar", "conversations"],
                        help="multiple-choice format (default: detected from the file)")
    parser.add_argument("--audio-template", default=None,
                        help="how a row names its audio, e.g. '{dataset}/{dataset_identifier}"
                             ".wav' (default: the row's audio field)")
    parser.add_argument("--prompt", default=None,
                        help="pinned prompt: muchomusic, rulistening, mullm or plain "
                             "(default: the benchmark's own, else mullm)")
    parser.add_argument("--conditions", type=_csv, default=None,
                        help="comma list of audio,noise,other,none (default: all four for "
                             "mcq, audio otherwise)")
    parser.add_argument("--scorers", type=_csv, default=("logprob", "generate"),
                        help="comma list of logprob,generate (mcq)")
    parser.add_argument("--seed", type=int, default=0, help="option order, noise, other clip")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="model queries per batch (across items)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--max-items", type=int, default=None, help="evaluate the first N")
    parser.add_argument("--split", default=None, help="caption/qa/mir: only rows of SPLIT")
    parser.add_argument("--folds", type=int, default=None,
                        help="RUListening: distractor folds per question (default 4 for it)")
    parser.add_argument("--legacy", type=_csv, default=(),
                        help="caption/qa: also bleu_char,rouge_l_recall,bertscore_recall "
                             "(the published tables' variants)")
    parser.add_argument("--bertscore-model", default=None,
                        help="local model folder (or cached hub id) for BERTScore")
    parser.add_argument("--retry-failed", action="store_true",
                        help="redo items whose record has an error")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="dotted model-config override (repeatable)")


def main(args: argparse.Namespace) -> int:
    """Check the data, load the model, run (or resume) the job, print the report."""
    from mullm.commands.caption import load_model
    from mullm.eval_job import EvalOptions, load_items, run_eval_job

    opts = EvalOptions(task=args.task, data=args.data, fmt=args.fmt,
                       audio_template=args.audio_template, prompt=args.prompt,
                       conditions=args.conditions, scorers=args.scorers, seed=args.seed,
                       batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                       max_items=args.max_items, split=args.split, folds=args.folds,
                       legacy=args.legacy, bertscore_model=args.bertscore_model,
                       retry_failed=args.retry_failed)
    try:
        items = load_items(opts)  # bad data fails here, before the model loads
        model = load_model(args.model, args.overrides, args.device)
        summary = run_eval_job(model, opts, args.out, items=items, model_name=args.model,
                               progress=False if args.no_progress else None)
    except (MullmError, ValueError, FileNotFoundError) as exc:
        print(f"mullm eval: error: {exc}", file=sys.stderr)
        return 2
    from pathlib import Path

    print((Path(args.out) / "report.md").read_text())
    if summary["items"] and not summary["scored"]:
        print(f"mullm eval: no item could be scored; see the errors in {args.out}/report.md",
              file=sys.stderr)
        return 1
    return 0
