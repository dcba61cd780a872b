"""Wall time of generating music with the tiny stand-ins: classifier-free guidance (two
branches) versus the conditional branch alone, same conditioning, same length.

The tiny random MusicGen (``mullm.testing.make_tiny_musicgen``: real 32 kHz rate, 50 frames
per second, 4 codebooks, so a 10 s clip is 503 decoder steps like the real model's; a 2-layer
decoder of width 32) conditioned on a projector output, on the CPU unless ``--device`` says
otherwise; plus one ``render_music`` through a tiny LLM (LLM forward + projector + decoder).
Prints a table and writes benchmarks/results/music_generation.json.

    python benchmarks/music_generation.py [--seconds 10 --repeats 2 --device cpu]
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

from extraction import machine  # noqa: E402

from mullm.config import load_model_config  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402
from mullm.outputs.config import MusicDecoderConfig  # noqa: E402
from mullm.outputs.decoders import build_decoder  # noqa: E402
from mullm.testing import make_tiny_llm, make_tiny_musicgen  # noqa: E402


def timed(fn: object, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    """Time both guidance settings and one full render; print and save the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mullm-music-bench-"))
    mg = make_tiny_musicgen(work / "musicgen")
    rows = []
    for scale in (1.0, 3.0):
        cfg = MusicDecoderConfig(checkpoint=str(mg), condition_tokens=32, do_sample=True,
                                 guidance_scale=scale, duration_s=args.seconds, seed=0)
        dec = build_decoder(cfg).to(args.device)
        cond = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(0))
        wall = timed(lambda d=dec, c=cond: d.generate_from_condition(c), args.repeats)
        rows.append({"what": f"decoder, guidance {scale:g}", "audio_s": args.seconds,
                     "wall_s": round(wall, 2), "realtime_factor": round(args.seconds / wall, 2)})
    llm = make_tiny_llm(work / "llm")
    model_cfg = {"llm": {"name_or_path": str(llm)},
                 "modalities": {"audio": {"encoder": {"name": "tiny_audio"},
                                          "adapter": {"name": "mlp", "hidden_size": 32}}},
                 "music_output": {"projector": {"name": "transformer", "hidden_size": 128},
                                  "decoder": {"checkpoint": str(mg), "condition_tokens": 32,
                                              "duration_s": args.seconds, "seed": 0}}}
    model = MusicLLM(load_model_config(model_cfg)).to(args.device).eval()
    conv = [{"role": "user", "content": "Compose a calm piano piece."},
            {"role": "assistant", "content": "Here it is. " + "".join(
                f"[AUD{i}]" for i in range(8))}]
    wall = timed(lambda: model.render_music(conv), args.repeats)
    rows.append({"what": "render_music (LLM + projector + decoder, guidance 3)",
                 "audio_s": args.seconds, "wall_s": round(wall, 2),
                 "realtime_factor": round(args.seconds / wall, 2)})
    ratio = rows[1]["wall_s"] / rows[0]["wall_s"]
    print(f"\nTiny MusicGen stand-in, {args.seconds:g} s of 32 kHz audio on {args.device} "
          f"(best of {args.repeats})")
    for r in rows:
        print(f"  {r['what']:<55} {r['wall_s']:>7.2f} s   x{r['realtime_factor']} real time")
    print(f"  guidance 3 / guidance 1 wall time: {ratio:.2f}")
    out = Path(__file__).resolve().parent / "results" / "music_generation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows,
                               "guidance_ratio": round(ratio, 3)}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
