"""Training-loop throughput: samples/s and tokens/s, two ways of doing the same work per run.

CPU section (runs anywhere, ``--cpu``; the default without a GPU):
  * labelled-only logits (``MusicLLM.forward`` with labels: the vocabulary matmul only where
    the loss needs it) vs full-vocabulary logits then the loss;
  * length-grouped batches vs random batches (padding waste and samples/s).
  Both on the tiny random LLM and on SmolLM2-135M-sized models.

GPU section (``--gpu``; needs CUDA, no network): a MERT-330M-shaped encoder (random
``tiny_audio`` weights, 24 kHz -> 75 Hz, 25 layers of 1024) + a Llama-2-7B-shaped LLM with
random bf16 weights, LoRA r16 on q,v, batch 8, ~450 tokens per sample; reports tokens/s and
MFU = 4 x LLM params x tokens / time / peak FLOPs (frozen base + LoRA: forward plus
activation gradients), plus a QLoRA (nf4) peak-memory line.

Prints a table and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ANSWERS = ["C major", "a slow waltz for strings in G minor", "fast", "duple",
           "A bright, fast rock groove in E major featuring electric guitar and drums."]


def synthetic_samples(n: int, seed: int, sr: int, min_s: float, max_s: float) -> list[dict]:
    """Conversations with random-length clips and answers (lengths vary, as in real data)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        dur = float(rng.uniform(min_s, max_s))
        wave = (0.1 * rng.standard_normal(int(dur * sr))).astype(np.float32)
        ans = ANSWERS[int(rng.integers(len(ANSWERS)))]
        out.append({"id": f"s{i}", "messages": [
            {"role": "user", "content": "<audio>\nDescribe this music."},
            {"role": "assistant", "content": ans}], "media": {"audio": [torch.from_numpy(wave)]}})
    return out


def batches(samples: list[dict], batch: int, grouped: bool, seed: int) -> list[list[int]]:
    """Random batches, or length-grouped ones (sorted by audio length, batch order shuffled)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(samples))
    if grouped:
        lengths = np.array([s["media"]["audio"][0].shape[0] for s in samples])
        idx = idx[np.argsort(-lengths[idx], kind="stable")]
    out = [list(idx[i:i + batch]) for i in range(0, len(idx) - batch + 1, batch)]
    return [out[i] for i in rng.permutation(len(out))]


def time_steps(model, samples, order, full_logits: bool, warmup: int = 1) -> dict:  # noqa: ANN001
    """Train steps over ``order``; returns samples/s, tokens/s, padding fraction."""
    from mullm.model import causal_loss

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    n_samples = n_tokens = n_slots = 0
    t = 0.0
    for k, b in enumerate(order):
        batch = model.processor([samples[i]["messages"] for i in b],
                                [samples[i]["media"] for i in b])
        t0 = time.perf_counter()
        args = {x: batch[x] for x in ("input_ids", "attention_mask", "labels", "media")}
        if full_logits:
            out = model(**args, return_logits=True)
            loss = causal_loss(out["logits"], batch["labels"].to(model.device))
        else:
            loss = model(**args)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if k >= warmup:
            t += time.perf_counter() - t0
            n_samples += len(b)
            n_tokens += int(batch["attention_mask"].sum())
            n_slots += batch["attention_mask"].numel()
    return {"samples_per_s": n_samples / t, "tokens_per_s": n_tokens / t,
            "padding_fraction": 1 - n_tokens / max(1, n_slots), "seconds": t}


def cpu_section(steps: int, which: list[str]) -> list[dict]:
    """Both comparisons on the tiny LLM and on SmolLM2-135M."""
    from mullm.config import load_model_config
    from mullm.model import MusicLLM
    from mullm.testing import make_tiny_llm

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="mullm-bench-"))
    llms = {"tiny": str(make_tiny_llm(tmp / "tiny")),
            "smollm2-135m": "offline:smollm2-135m-instruct"}
    for name in which:
        cfg = load_model_config({"llm": {"name_or_path": llms[name], "policy": "lora"},
                                 "modalities": {"audio": {
                                     "encoder": {"name": "spectral"},
                                     "adapter": {"name": "mlp", "hidden_size": 256,
                                                 "pool": "mean", "pool_rate_hz": 4.0}}}})
        model = MusicLLM(cfg)
        batch = 8
        samples = synthetic_samples(batch * (steps + 1), 0, 16000, 2.0, 8.0)
        grouped = batches(samples, batch, True, 0)[: steps + 1]
        rand = batches(samples, batch, False, 0)[: steps + 1]
        # Alternate the two ways so that machine noise hits both alike.
        for label, order, full in (("labelled-only logits", rand, False),
                                   ("full-vocab logits", rand, True),
                                   ("length-grouped batches", grouped, False),
                                   ("random batches", rand, False)):
            r = time_steps(model, samples, order, full)
            rows.append({"section": "cpu", "llm": name, "way": label, **r})
            print(f"  {name:<13} {label:<24} {r['samples_per_s']:7.2f} samples/s "
                  f"{r['tokens_per_s']:8.1f} tok/s  padding {r['padding_fraction']:.2f}",
                  flush=True)
    return rows


PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def gpu_section(steps: int, peak_tflops: float | None) -> list[dict]:
    """MERT-330M-shaped encoder + Llama-7B-shaped LLM, LoRA r16 q,v, bf16, batch 8."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from mullm.config import load_model_config
    from mullm.model import MusicLLM
    from mullm.testing import make_tiny_llm

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    tmp = Path(tempfile.mkdtemp(prefix="mullm-bench-"))
    tok_dir = make_tiny_llm(tmp / "tok")  # only its tokenizer is used
    from transformers import AutoTokenizer

    llama = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                        max_position_embeddings=4096)
    rows = []
    for quant in ("none", "4bit"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        llm = AutoModelForCausalLM.from_config(llama, dtype=torch.bfloat16).to(dev)
        if quant == "4bit":
            llm = _quantize_4bit(llm)
        n_params = sum(p.numel() for p in llm.parameters()) if quant == "none" else \
            7_000_000_000
        tok = AutoTokenizer.from_pretrained(tok_dir)
        cfg = load_model_config({
            "llm": {"name_or_path": str(tok_dir), "policy": "lora", "dtype": "bfloat16",
                    "quantization": quant, "gradient_checkpointing": True,
                    "lora": {"r": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"]}},
            "modalities": {"audio": {
                "encoder": {"name": "tiny_audio", "sample_rate": 24000, "frame_rate": 75.0,
                            "hidden_size": 1024, "num_layers": 25,
                            "options": {"num_heads": 16}},
                "adapter": {"name": "mlp", "hidden_size": 4096, "pool": "mean",
                            "pool_rate_hz": 12.5}}}})
        model = MusicLLM(cfg, llm=llm, tokenizer=tok, base_fingerprint="bench")
        model.encoders.to(dev, torch.bfloat16)
        model.adapters.to(dev)
        model.layer_selectors.to(dev)
        # 30 s at 12.5 Hz = 375 audio tokens + ~75 text tokens ~ 450 tokens per sample
        samples = synthetic_samples(8 * (steps + 1), 0, 24000, 29.0, 30.0)
        order = batches(samples, 8, True, 0)[: steps + 1]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            r = time_steps(model, samples, order, full_logits=False)
        peak_mem = torch.cuda.max_memory_allocated() / 2**30
        tflops = 4 * n_params * r["tokens_per_s"] / 1e12
        row = {"section": "gpu", "device": name, "llm": "llama-7b-shaped", "quantization": quant,
               "way": "LoRA r16 q,v bf16 batch 8" + (" (QLoRA nf4)" if quant == "4bit" else ""),
               **r, "peak_memory_gib": peak_mem, "model_tflops": tflops,
               "mfu": tflops / peak if peak else None}
        rows.append(row)
        print(f"  {row['way']:<36} {r['tokens_per_s']:9.0f} tok/s  "
              f"{r['samples_per_s']:6.2f} samples/s  MFU {row['mfu'] or float('nan'):.3f}  "
              f"peak {peak_mem:.1f} GiB", flush=True)
        del model, llm
    return rows


def _quantize_4bit(llm: torch.nn.Module) -> torch.nn.Module:
    """Swap the decoder's Linear layers for bitsandbytes nf4 ones (random weights, no file)."""
    import bitsandbytes as bnb

    for module in list(llm.model.layers.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False,
                                      compute_dtype=torch.bfloat16, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False,
                                             quant_type="nf4")
                setattr(module, child_name, q.cuda())
    torch.cuda.empty_cache()
    return llm


def main() -> int:
    """Run the sections asked for; print a table; write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="run the CPU section")
    ap.add_argument("--gpu", action="store_true", help="run the GPU section (needs CUDA)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per way")
    ap.add_argument("--llms", default="tiny,smollm2-135m")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "train_throughput.json"))
    args = ap.parse_args()
    run_cpu = args.cpu or not args.gpu
    rows: list[dict] = []
    if run_cpu:
        print(f"CPU ({torch.get_num_threads()} threads), batch 8, {args.steps} timed steps:")
        rows += cpu_section(args.steps, args.llms.split(","))
    if args.gpu:
        if not torch.cuda.is_available():
            print("--gpu: no CUDA device here", file=sys.stderr)
            return 2
        rows += gpu_section(args.steps, args.peak_tflops)
    ratios = {}
    for llm in sorted({r["llm"] for r in rows if r["section"] == "cpu"}):
        by = {r["way"]: r for r in rows if r["llm"] == llm and r["section"] == "cpu"}
        ratios[llm] = {
            "labelled_only_vs_full_vocab": by["labelled-only logits"]["samples_per_s"]
            / by["full-vocab logits"]["samples_per_s"],
            "grouped_vs_random": by["length-grouped batches"]["samples_per_s"]
            / by["random batches"]["samples_per_s"]}
        print(f"  {llm}: labelled-only / full-vocab = "
              f"{ratios[llm]['labelled_only_vs_full_vocab']:.2f}x, grouped / random = "
              f"{ratios[llm]['grouped_vs_random']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": platform.machine(), "rows": rows,
                                          "ratios": ratios}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
