"""One training step with cached encoder features versus online encoding, same batch.

The offline default LLM (SmolLM2-135M-Instruct + LoRA r8 on q,v, fp32) with a
MERT-95M-shaped encoder (random weights, real shape: 12 layers x 768, 24 kHz in, 75 Hz
out). "online" runs the frozen encoder inside every step; "cached" reads the same hidden
states from a precomputed ``Features`` object, which is what the feature cache serves.
Prints a table and the ratio, and writes benchmarks/results/cached_training_step.json.

    python benchmarks/cached_training_step.py [--batch 4 --seconds 10 --steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from extraction import machine, make_mert_checkpoint  # noqa: E402

from mullm.config import load_model_config  # noqa: E402
from mullm.media import Features  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402


def step(model: MusicLLM, opt: torch.optim.Optimizer, convs: list, media: list) -> float:
    """One optimiser step on a batch built from scratch (as a data loader would)."""
    batch = model.processor(convs, media)
    opt.zero_grad()
    out = model(batch["input_ids"], batch["attention_mask"], batch["labels"], batch["media"])
    out["loss"].backward()
    opt.step()
    return float(out["loss"])


def main(argv: list[str] | None = None) -> int:
    """Run both modes on the same batch and print the ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--llm", default="offline:smollm2-135m-instruct")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_mert_checkpoint(Path(tmp) / "mert95m", "95m")
        cfg = load_model_config({
            "llm": {"name_or_path": args.llm, "policy": "lora"},
            "modalities": {"audio": {
                "encoder": {"name": "mert", "checkpoint": str(ckpt), "layers": "all",
                            "layer_reduce": "weighted", "max_duration_s": 30.0},
                "adapter": {"name": "mlp", "hidden_size": 512, "pool": "mean",
                            "pool_rate_hz": 3.0},
                "injection": {"kind": "splice"}}}})
        model = MusicLLM(cfg)
        enc = model.encoders["audio"]
        n = int(args.seconds * enc.sample_rate)
        waves = [torch.randn(n) * 0.1 for _ in range(args.batch)]
        convs = [[{"role": "user", "content": "<audio> Is this major or minor?"},
                  {"role": "assistant", "content": "minor"}] for _ in waves]
        with torch.no_grad():
            t = time.perf_counter()
            feats = []
            for w in waves:
                out = enc(w[None], torch.tensor([n]))
                feats.append(Features(out.hidden_states[0].float()))
            extract_s = time.perf_counter() - t
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        rows = []
        for mode, media in (("online", [{"audio": [w]} for w in waves]),
                            ("cached", [{"audio": [f]} for f in feats])):
            step(model, opt, convs, media)  # warm-up
            t = time.perf_counter()
            for _ in range(args.steps):
                step(model, opt, convs, media)
            per = (time.perf_counter() - t) / args.steps
            rows.append({"mode": mode, "step_s": round(per, 3),
                         "audio_s_per_s": round(args.batch * args.seconds / per, 2)})
    ratio = rows[0]["step_s"] / rows[1]["step_s"]
    print(f"\nTraining step, batch {args.batch} x {args.seconds:.0f} s, MERT-95M-shaped encoder "
          f"(random weights) + {args.llm} LoRA, fp32, {machine()['cpu_count']} CPU threads")
    print(f"{'mode':8} {'step s':>8} {'audio s/s':>10}")
    for r in rows:
        print(f"{r['mode']:8} {r['step_s']:>8.2f} {r['audio_s_per_s']:>10.2f}")
    print(f"cached is {ratio:.1f}x faster per step (one-off extraction: {extract_s:.1f} s)")
    out = Path(__file__).resolve().parent / "results" / "cached_training_step.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "ratio": ratio, "extract_s": extract_s,
                               "args": vars(args), "machine": machine()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
