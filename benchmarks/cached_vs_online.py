"""Cached vs online features: time to get encoder outputs for a training epoch's clips.

For each encoder, the same clips are (a) decoded and encoded online, batch by batch, as a
training step would without a cache, and (b) served by ``CachedEncoder`` from a feature
cache written once by ``extract_features`` (the waveform is still decoded, as the data
loader does, then matched by hash). The extraction time is reported too, so the break-even
number of epochs can be read off. Outputs are checked to agree.

    python benchmarks/cached_vs_online.py [--clips 32] [--seconds 10] [--mert]

Prints a table and writes benchmarks/results/cached_vs_online.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.extraction import machine, make_mert_checkpoint  # noqa: E402
from mullm.audio import load_audio, pad_batch, synth_clip, write_wav  # noqa: E402
from mullm.config import EncoderConfig  # noqa: E402
from mullm.encoders import build_encoder  # noqa: E402
from mullm.features import CachedEncoder, extract_features  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def epoch(enc: torch.nn.Module, paths: list[Path], sr: int, batch: int) -> tuple[float, list]:
    """Decode + encode every file in batches; (seconds, outputs)."""
    outs = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for k in range(0, len(paths), batch):
            waves = [load_audio(p, sr) for p in paths[k:k + batch]]
            x, n = pad_batch(waves)
            out = enc(torch.from_numpy(x), torch.from_numpy(n))
            outs.append(out.hidden_states.float())
    return time.perf_counter() - t0, outs


def main(argv: list[str] | None = None) -> int:
    """Run both ways per encoder; print and save the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--mert", action="store_true", help="add a MERT-95M-shaped encoder (slow)")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        specs = [("spectral", EncoderConfig(name="spectral")),
                 ("tiny_audio", EncoderConfig(name="tiny_audio"))]
        if args.mert:
            ckpt = make_mert_checkpoint(tmp / "mert95m", "95m")
            specs.append(("mert-95m-shaped", EncoderConfig(name="mert", checkpoint=str(ckpt))))
        for name, cfg in specs:
            enc = build_encoder(cfg)
            sr = enc.sample_rate
            folder = tmp / f"audio-{name}"
            paths = [write_wav(folder / f"{i:03d}.wav",
                               synth_clip("CDEFGAB"[i % 7], duration_s=args.seconds,
                                          sample_rate=sr, seed=i), sr, subtype="FLOAT")
                     for i in range(args.clips)]
            summary = extract_features(enc, [str(q) for q in paths], tmp / f"cache-{name}",
                                       batch_size=args.batch_size, progress=False)
            online_s, online = epoch(enc, paths, sr, args.batch_size)
            cached = CachedEncoder(enc, tmp / f"cache-{name}", fallback=False)
            cached_s, served = epoch(cached, paths, sr, args.batch_size)
            diff = max(float((a - b).abs().max()) for a, b in zip(online, served, strict=True))
            audio_s = args.clips * args.seconds
            rows.append({"encoder": name, "clips": args.clips, "audio_s": audio_s,
                         "extract_s": summary.seconds, "online_epoch_s": online_s,
                         "cached_epoch_s": cached_s, "speedup": online_s / cached_s,
                         "max_abs_diff": diff, "hits": cached.hits})
    cols = list(rows[0])
    print("\nCached vs online encoder outputs (one epoch over the clips)")
    print("  ".join(f"{c:>15}" for c in cols))
    for r in rows:
        print("  ".join(f"{v:>15.4g}" if isinstance(v, float) else f"{v!s:>15}"
                        for v in r.values()))
    out = RESULTS / "cached_vs_online.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "cached_vs_online", "machine": machine(),
                               "args": vars(args), "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
