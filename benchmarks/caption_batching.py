"""Batched vs one-at-a-time captioning on this machine: same clips, same model, one run.

    python benchmarks/caption_batching.py                    # real SmolLM2-135M-Instruct
    python benchmarks/caption_batching.py --llm random-llama # a mid-size random Llama

Both modes go through ``mullm.caption.caption_files`` (spectral encoder -> pooled MLP
adapter -> LLM, greedy, KV cache); only ``batch_size`` differs. ``min_new_tokens`` is set
to ``max_new_tokens`` so both modes generate exactly the same number of tokens (an
untrained adapter would otherwise stop at random lengths). Prints a table and writes
``benchmarks/results/caption_batching.json``. The two modes run interleaved, round by
round, so a shared machine's background load affects both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

from mullm.audio import synth_clip, write_wav  # noqa: E402
from mullm.caption import caption_files  # noqa: E402
from mullm.config import ModelConfig, from_dict  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402


def build_model(llm: str, workdir: Path) -> tuple[MusicLLM, str]:
    """The captioning model and a description of its LLM."""
    if llm == "random-llama":
        from transformers import AutoConfig, AutoModelForCausalLM

        from mullm.testing import make_tiny_llm

        # A ~110M-parameter random Llama with the tiny tokenizer: SmolLM2-135M-like shapes.
        path = make_tiny_llm(workdir / "llm", hidden_size=576, num_layers=24, num_heads=9,
                             num_kv_heads=3)
        cfg = AutoConfig.from_pretrained(path)
        cfg.max_position_embeddings = 2048
        AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
        name, desc = str(path), "random Llama (576 wide, 24 layers, 3 KV heads)"
    else:
        name, desc = llm, llm
    cfg = from_dict(ModelConfig, {
        "llm": {"name_or_path": name},
        "modalities": {"audio": {
            "encoder": {"name": "spectral", "max_duration_s": 10.0},
            "adapter": {"name": "mlp", "hidden_size": 512, "pool": "mean", "pool_frames": 8},
            "injection": {"kind": "splice"}}}})
    return MusicLLM(cfg), desc


def main() -> None:
    """Run both modes and report the ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llm", default="offline:smollm2-135m-instruct",
                   help="an llm.name_or_path, or 'random-llama'")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--clip-s", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--out", default="benchmarks/results/caption_batching.json")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, desc = build_model(args.llm, work)
        files = [str(write_wav(work / "clips" / f"clip{i:03d}.wav",
                               synth_clip(duration_s=args.clip_s, seed=i,
                                          tempo_bpm=70 + 7 * i), 16000))
                 for i in range(args.clips)]
        gen = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
        caption_files(model, files[:2], batch_size=2, **gen)  # warm-up (allocator, kernels)
        # Interleave the two modes round by round (AB, BA, ...) so that load from other
        # processes on a shared machine falls on both alike; sum the times per mode.
        bs_list = (1, args.batch_size)
        wall = {bs: 0.0 for bs in bs_list}
        outputs: dict[int, list[str]] = {bs: [] for bs in bs_list}
        rounds = [files[i:i + args.batch_size] for i in range(0, len(files), args.batch_size)]
        for k, chunk in enumerate(rounds):
            for bs in (bs_list if k % 2 == 0 else bs_list[::-1]):
                t0 = time.perf_counter()
                recs = caption_files(model, chunk, batch_size=bs, **gen)
                wall[bs] += time.perf_counter() - t0
                assert all(r["error"] is None for r in recs), [r["error"] for r in recs]
                outputs[bs] += [r["caption"] for r in recs]
        rows = []
        tokens = args.clips * args.max_new_tokens
        for bs in bs_list:
            rows.append({"batch_size": bs, "wall_s": round(wall[bs], 2),
                         "new_tokens_per_s": round(tokens / wall[bs], 1),
                         "clips_per_s": round(args.clips / wall[bs], 3),
                         "audio_s_per_s": round(args.clips * args.clip_s / wall[bs], 1)})
    speedup = rows[0]["wall_s"] / rows[1]["wall_s"]
    same = sum(a == b for a, b in zip(outputs[1], outputs[args.batch_size]))
    result = {
        "benchmark": "caption_batching", "llm": desc, "clips": args.clips,
        "clip_s": args.clip_s, "max_new_tokens": args.max_new_tokens, "rows": rows,
        "speedup": round(speedup, 2), "identical_captions": f"{same}/{args.clips}",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "device": "cpu"},
    }
    print(f"LLM: {desc}; {args.clips} clips of {args.clip_s} s, {args.max_new_tokens} new "
          f"tokens each, greedy, CPU ({os.cpu_count()} cores)")
    print(f"{'batch':>5}  {'wall s':>8}  {'new tok/s':>9}  {'clips/s':>7}  {'audio s/s':>9}")
    for r in rows:
        print(f"{r['batch_size']:>5}  {r['wall_s']:>8.2f}  {r['new_tokens_per_s']:>9.1f}  "
              f"{r['clips_per_s']:>7.3f}  {r['audio_s_per_s']:>9.1f}")
    print(f"speed-up batch {args.batch_size} vs 1: {speedup:.2f}x "
          f"(identical greedy captions: {same}/{args.clips})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
