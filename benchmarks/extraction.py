"""Feature-extraction throughput: audio seconds encoded per wall-clock second.

Two ways of doing the same work are compared in one run (a ratio is stable on a noisy
machine; an absolute time is not):

CPU (default)
    spectral, tiny_audio and a MERT-95M-shaped model (random weights, real loading path):
    one clip per call ("loop") vs batches ("batched").

GPU (``--gpu``)
    a MERT-330M-shaped model in bfloat16 on CUDA over clips of mixed length (5-30 s):
    a plain loop, one clip per call, vs batched-by-length (clips sorted by length, batches
    padded to 5 s multiples under an attention mask) + torch.compile. Each mode runs two
    passes; pass 2 is the steady state (compilation happens in pass 1).
    ``--gpu --smoke`` runs the same code CPU-sized (tiny 330M-shaped model, a few clips)
    so the path is tested on machines without a GPU.

    python benchmarks/extraction.py
    python benchmarks/extraction.py --gpu            # on a CUDA machine, no network needed
    python benchmarks/extraction.py --gpu --smoke    # the GPU path, CPU-sized

Prints a table and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mullm.audio import synth_clip  # noqa: E402
from mullm.config import EncoderConfig  # noqa: E402
from mullm.encoders import build_encoder  # noqa: E402
from mullm.encoders.base import Encoder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# MERT-v1 geometry (config.json of the hub checkpoints); sizes differ per model.
MERT_SHAPES = {
    "95m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "conv_dim": [512] * 7, "feat_extract_norm": "group",
            "do_stable_layer_norm": False, "conv_bias": False},
    "330m": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
             "intermediate_size": 4096, "conv_dim": [512] * 7, "feat_extract_norm": "layer",
             "do_stable_layer_norm": True, "conv_bias": True},
    # The 330M layout (layer norm, masked batching) at toy size, for --smoke.
    "330m-tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "intermediate_size": 128, "conv_dim": [32] * 7,
                  "feat_extract_norm": "layer", "do_stable_layer_norm": True,
                  "conv_bias": True},
}


def make_mert_checkpoint(folder: Path, shape: str) -> Path:
    """Write a MERT-style checkpoint folder with random weights of the given shape."""
    from safetensors.torch import save_file
    from transformers import HubertConfig, HubertModel

    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model_type": "mert_model", "architectures": ["MERTModel"],
           "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
           "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
           "feature_extractor_cqt": False, "deepnorm": False, "attention_relax": -1.0,
           "sample_rate": 24000, "mask_time_prob": 0.05, **MERT_SHAPES[shape]}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "sampling_rate": 24000,
         "feature_extractor_type": "Wav2Vec2FeatureExtractor"}))
    hub = HubertConfig(**{k: v for k, v in cfg.items()
                          if k not in ("model_type", "architectures")})
    torch.manual_seed(0)
    model = HubertModel(hub)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    return folder


def clips(n: int, seconds: list[float], sr: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic clips cycling through the given durations."""
    return [synth_clip("CDEFGAB"[i % 7], duration_s=seconds[i % len(seconds)],
                       sample_rate=sr, seed=seed + i) for i in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def encode_all(enc: Encoder, waves: list[np.ndarray], batch_size: int, device: torch.device,
               by_length: bool) -> float:
    """Encode every clip; returns wall seconds. ``by_length`` sorts clips so each batch
    holds similar lengths (less padding)."""
    order = sorted(range(len(waves)), key=lambda i: len(waves[i])) if by_length \
        else list(range(len(waves)))
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for k in range(0, len(order), batch_size):
            batch = [waves[i] for i in order[k:k + batch_size]]
            n = torch.tensor([len(w) for w in batch])
            x = torch.zeros(len(batch), int(n.max()))
            for j, w in enumerate(batch):
                x[j, :len(w)] = torch.from_numpy(w)
            out = enc(x.to(device, non_blocking=True), n)
            out.hidden_states.float().sum().item()  # the result must really exist
    _sync(device)
    return time.perf_counter() - t0


def machine() -> dict:
    """Where the numbers came from."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_table(rows: list[dict], title: str) -> None:
    """A fixed-width table of the result rows."""
    cols = ["encoder", "mode", "batch", "clips", "audio_s", "pass", "wall_s", "audio_s_per_s",
            "speedup"]
    width = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in cols}
    print(f"\n{title}")
    print("  ".join(f"{c:>{width[c]}}" for c in cols))
    for r in rows:
        print("  ".join(f"{_fmt(r.get(c, '')):>{width[c]}}" for c in cols))


def _fmt(v: object) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def run_cpu(args: argparse.Namespace) -> list[dict]:
    """spectral / tiny_audio / MERT-95M-shaped on this CPU: loop vs batched."""
    device = torch.device("cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = [("spectral", EncoderConfig(name="spectral"), 16, [10.0]),
                 ("tiny_audio", EncoderConfig(name="tiny_audio"), 16, [10.0])]
        if not args.skip_mert:
            ckpt = make_mert_checkpoint(Path(tmp) / "mert95m", "95m")
            specs.append(("mert-95m-shaped", EncoderConfig(name="mert", checkpoint=str(ckpt)),
                          args.mert_clips, [args.mert_seconds]))
        for name, cfg, n_clips, secs in specs:
            enc = build_encoder(cfg).to(device)
            waves = clips(n_clips, secs, enc.sample_rate)
            audio_s = sum(len(w) for w in waves) / enc.sample_rate
            encode_all(enc, waves[:1], 1, device, False)  # warm-up (allocator, threads)
            base = None
            for mode, bs in (("loop", 1), ("batched", args.batch_size)):
                wall = encode_all(enc, waves, bs, device, by_length=True)
                rate = audio_s / wall
                base = base or rate
                rows.append({"encoder": name, "mode": mode, "batch": bs, "clips": n_clips,
                             "audio_s": audio_s, "pass": 1, "wall_s": wall,
                             "audio_s_per_s": rate, "speedup": rate / base})
            del enc
    return rows


def run_gpu(args: argparse.Namespace) -> list[dict]:
    """MERT-330M-shaped bf16: plain loop vs batched-by-length + torch.compile."""
    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("--gpu needs CUDA; use --gpu --smoke to run the path on a CPU")
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    dtype = "float32" if device.type == "cpu" else "bfloat16"
    shape = "330m-tiny" if smoke else "330m"
    n_clips = args.gpu_clips or (4 if smoke else 64)
    seconds = [1.0, 2.0] if smoke else [5.0, 10.0, 20.0, 30.0, 12.5, 25.0]
    pad_s = 1.0 if smoke else 5.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_mert_checkpoint(Path(tmp) / f"mert-{shape}", shape)
        waves = clips(n_clips, seconds, 24000)
        audio_s = sum(len(w) for w in waves) / 24000
        modes = [
            ("loop", 1, False, None),
            ("batched_by_length", args.batch_size, False, pad_s),
            ("batched_by_length+compile", args.batch_size, True, pad_s),
        ]
        base = None
        for mode, bs, compiled, pad in modes:
            opts = {"pad_multiple_s": pad} if pad else {}
            cfg = EncoderConfig(name="mert", checkpoint=str(ckpt), dtype=dtype, options=opts)
            enc = build_encoder(cfg).to(device)
            if compiled:
                enc.model = torch.compile(enc.model, dynamic=True,
                                          backend=args.compile_backend)
            for pass_no in (1, 2):
                wall = encode_all(enc, waves, bs, device, by_length=bs > 1)
                rate = audio_s / wall
                if pass_no == 2 and base is None:
                    base = rate
                rows.append({"encoder": f"mert-{shape}-shaped/{dtype}", "mode": mode,
                             "batch": bs, "clips": n_clips, "audio_s": audio_s,
                             "pass": pass_no, "wall_s": wall, "audio_s_per_s": rate,
                             "speedup": rate / base if base else 1.0})
            if device.type == "cuda":
                rows[-1]["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
            del enc
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the chosen section, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="MERT-330M-shaped bf16 GPU section")
    p.add_argument("--smoke", action="store_true", help="with --gpu: CPU-sized run")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--mert-clips", type=int, default=4)
    p.add_argument("--mert-seconds", type=float, default=5.0)
    p.add_argument("--gpu-clips", type=int, default=None)
    p.add_argument("--compile-backend", default=None,
                   help="torch.compile backend (default inductor; eager with --smoke)")
    p.add_argument("--skip-mert", action="store_true", help="CPU section without MERT")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    args = p.parse_args(argv)
    if args.compile_backend is None:
        args.compile_backend = "eager" if args.smoke else "inductor"
    torch.manual_seed(0)
    if args.gpu:
        rows = run_gpu(args)
        name = "extraction-gpu-smoke" if args.smoke else "extraction-gpu"
        title = "MERT-330M-shaped extraction: plain loop vs batched-by-length + compile"
    else:
        rows = run_cpu(args)
        name = "extraction-cpu"
        title = "Extraction on this CPU: one clip per call vs batched"
    print_table(rows, title)
    out = Path(args.out) if args.out else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": name, "machine": machine(), "args": vars(args),
                               "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
