"""A folder of 20 mixed files (mullm.testing_audio.mixed_folder: WAV, M4A, raw AAC, Opus,
WMA, FLAC, VBR MP3s, an extensionless WAV, a Latin-1 name, links, broken files, a FIFO)
captioned by one process (torch's default threads, and one thread) and by two torchrun
processes (each given its share of the cores), same model, same settings.

    python benchmarks/caption_field.py                       # offline-default (SmolLM2-135M)
    python benchmarks/caption_field.py --model path/to/model --max-new-tokens 32

Both runs are the real command in a fresh process (model loading included), so the
wall times compare what a user waits for. Prints a table and writes
``benchmarks/results/caption_field.json``; checks that each run wrote exactly one record
per file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from mullm.testing_audio import mixed_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], out: Path, expect: dict[str, str | None], **extra_env: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **extra_env)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} ... failed ({res.returncode}):\n{res.stderr[-3000:]}")
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    ids = [r["id"] for r in recs]
    ok = len(ids) == len(set(ids)) and sorted(ids) == sorted(expect)
    right = all((r["error"] is None) == (expect[r["id"]] is None) for r in recs)
    return {"wall_s": round(wall, 1), "records": len(recs),
            "succeeded": sum(r["error"] is None for r in recs),
            "failed": sum(r["error"] is not None for r in recs),
            "one_record_per_file": ok, "expected_outcomes": right,
            "audio_s": round(sum(r["duration_s"] or 0 for r in recs if not r["error"]), 1)}


def main() -> None:
    """Run both and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="offline-default")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        expect = mixed_folder(tmp / "in")
        common = ["--model", args.model, "--input", str(tmp / "in"), "--no-progress",
                  "--max-new-tokens", str(args.max_new_tokens), "--batch-size",
                  str(args.batch_size)]
        one = _run([sys.executable, "-m", "mullm.cli", "caption", *common, "--out",
                    str(tmp / "one" / "caps.jsonl")], tmp / "one" / "caps.jsonl", expect)
        one1 = _run([sys.executable, "-m", "mullm.cli", "caption", *common, "--out",
                     str(tmp / "one1" / "caps.jsonl")], tmp / "one1" / "caps.jsonl", expect,
                    OMP_NUM_THREADS="1")
        two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", "-m", "mullm.cli", "caption", *common, "--out",
                    str(tmp / "two" / "caps.jsonl")], tmp / "two" / "caps.jsonl", expect)
    rows = {"1 process": one, "1 process, 1 thread": one1, "torchrun, 2 processes": two}
    cols = ["records", "succeeded", "failed", "audio_s", "wall_s", "one_record_per_file"]
    print(f"{len(expect)} files, model {args.model}, {args.max_new_tokens} new tokens, "
          f"batch {args.batch_size}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'run':<24}" + "".join(f"{c:>21}" for c in cols))
    for name, r in rows.items():
        print(f"{name:<24}" + "".join(f"{r[c]!s:>21}" for c in cols))
    result = {"files": len(expect), "model": args.model, "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size, "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 1),
              "runs": rows}
    dest = REPO / "benchmarks" / "results" / "caption_field.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {dest}")


if __name__ == "__main__":
    main()
