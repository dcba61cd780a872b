"""Plain ``generate`` vs a fast path (static KV cache + torch.compile) on a GPU.

    python benchmarks/gpu_generate.py            # GPU: Llama-7B shapes, bf16, random weights
    python benchmarks/gpu_generate.py --smoke    # CPU: tiny shapes, checks the script runs

Workload: a 300-token prompt, 128 new tokens (``min_new_tokens`` = ``max_new_tokens``, so
every run does the same work), greedy, at batch 1 and 16. Modes:

- ``dynamic``: transformers' default DynamicCache, no compilation (what MusicLLM.generate
  uses today);
- ``static+compile``: ``cache_implementation="static"``; on CUDA transformers then compiles
  the decoding step itself (``torch.compile``, mode "reduce-overhead" = CUDA graphs). The
  first calls compile: they are warm-up and not timed.

Random weights are fine for speed (the kernels do not look at the values). Needs no
network. Prints both modes side by side and writes benchmarks/results/gpu_generate.json
(``gpu_generate_smoke.json`` with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                max_position_embeddings=4096)
SMOKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
             max_position_embeddings=1024)


def build(shapes: dict, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A random-weight Llama built directly on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**shapes, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: no fp32 7B copy
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model.eval()
    model.generation_config.pad_token_id = 0
    return model


def sync(device: str) -> None:
    """Wait for queued GPU work so timings are real."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_mode(model: torch.nn.Module, mode: str, ids: torch.Tensor, new_tokens: int,
             warmup: int, repeats: int, compile_on_cpu: bool) -> tuple[list[float], torch.Tensor]:
    """Time ``repeats`` generate calls after ``warmup`` untimed ones."""
    kw: dict = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
              attention_mask=torch.ones_like(ids))
    if mode == "dynamic":
        kw["disable_compile"] = True
    else:
        kw["cache_implementation"] = "static"
        if compile_on_cpu and ids.device.type == "cpu":
            from transformers import CompileConfig

            cc = CompileConfig(fullgraph=False, dynamic=False, mode="default")
            cc._compile_all_devices = True  # transformers compiles only on GPUs by default
            kw["compile_config"] = cc
    device = str(ids.device)
    out = None
    with torch.inference_mode():
        for _ in range(warmup):
            out = model.generate(ids, **kw)
        sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.generate(ids, **kw)
            sync(device)
            times.append(time.perf_counter() - t0)
    return times, out[:, ids.shape[1]:]


def main() -> None:
    """Run both modes at each batch size and print them side by side."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--prompt-tokens", type=int, default=300)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--warmup", type=int, default=None, help="default: 3 on GPU, 1 smoke")
    p.add_argument("--repeats", type=int, default=None, help="default: 5 on GPU, 1 smoke")
    p.add_argument("--compile-on-cpu", action="store_true",
                   help="with --smoke: also torch.compile the static path on the CPU")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    if args.smoke:
        device, dtype, shapes = "cpu", torch.float32, SMOKE
        args.prompt_tokens = min(args.prompt_tokens, 32)
        args.new_tokens = min(args.new_tokens, 8)
        warmup, repeats = args.warmup or 1, args.repeats or 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or use --smoke on a CPU")
        device, dtype, shapes = "cuda", torch.bfloat16, LLAMA_7B
        warmup, repeats = args.warmup or 3, args.repeats or 5
    batches = [int(b) for b in args.batch_sizes.split(",")]
    model = build(shapes, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    rows = []
    for bs in batches:
        ids = torch.randint(3, shapes["vocab_size"], (bs, args.prompt_tokens),
                            generator=gen).to(device)
        per_mode = {}
        for mode in ("dynamic", "static+compile"):
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times, out = run_mode(model, mode, ids, args.new_tokens, warmup, repeats,
                                  args.compile_on_cpu)
            med = statistics.median(times)
            per_mode[mode] = {
                "median_s": round(med, 4), "times_s": [round(t, 4) for t in times],
                "new_tokens_per_s": round(bs * args.new_tokens / med, 1),
                "ms_per_step": round(1000 * med / args.new_tokens, 2),
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                if device == "cuda" else None,
                "tokens": out.cpu(),
            }
        a, b = per_mode["dynamic"], per_mode["static+compile"]
        agree = float((a.pop("tokens") == b.pop("tokens")).float().mean())
        rows.append({"batch_size": bs, "dynamic": a, "static+compile": b,
                     "speedup": round(a["median_s"] / b["median_s"], 2),
                     "greedy_token_agreement": round(agree, 3)})
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"{'smoke: tiny' if args.smoke else 'Llama-7B-shaped'} random LLM, "
          f"{params / 1e9:.2f} B params, {dtype}, {name}; prompt {args.prompt_tokens}, "
          f"{args.new_tokens} new tokens, greedy; median of {repeats} after {warmup} warm-up")
    print(f"{'batch':>5} | {'dynamic tok/s':>13} {'ms/step':>8} | {'static+compile tok/s':>20} "
          f"{'ms/step':>8} | {'speed-up':>8} {'agree':>6}")
    for r in rows:
        a, b = r["dynamic"], r["static+compile"]
        print(f"{r['batch_size']:>5} | {a['new_tokens_per_s']:>13.1f} {a['ms_per_step']:>8.2f} | "
              f"{b['new_tokens_per_s']:>20.1f} {b['ms_per_step']:>8.2f} | "
              f"{r['speedup']:>7.2f}x {r['greedy_token_agreement']:>6.3f}")
    result = {"benchmark": "gpu_generate", "smoke": args.smoke, "device": name,
              "dtype": str(dtype), "params": params, "prompt_tokens": args.prompt_tokens,
              "new_tokens": args.new_tokens, "warmup": warmup, "repeats": repeats,
              "torch": torch.__version__, "rows": rows}
    out = Path(args.out or ("benchmarks/results/gpu_generate_smoke.json" if args.smoke
                            else "benchmarks/results/gpu_generate.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
