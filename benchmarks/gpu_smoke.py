"""Device smoke check: every encoder family x every injection kind, on one device.

    python benchmarks/gpu_smoke.py --device cuda          # first section of gpu_all.sh
    python benchmarks/gpu_smoke.py --device cpu --families spectral,clip --injections splice

For each combination it builds a MusicLLM from tiny random configs (the encoder as
``mullm.testing.tiny_encoder_config`` builds it, an MLP adapter, a tiny Llama with LoRA),
moves it to ``--device`` and runs a training forward with labels, the backward pass and
batched generation, checking that every parameter, buffer, loss and gradient is on that
device. It prints one line per combination (``ok`` or the error; the traceback goes to
stderr) and exits 1 if any failed, so a lent GPU shows device bugs in seconds. Families run
cheapest first (laion_clap, whose HTSAT-tiny reads real 10 s windows, last), so a time cap
cuts the slow end. Writes ``benchmarks/results/gpu_smoke_<device>.json``. Needs no network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mullm

import torch  # noqa: E402

from mullm.config import load_model_config  # noqa: E402
from mullm.media import MARKERS  # noqa: E402
from mullm.model import MusicLLM  # noqa: E402
from mullm.testing import (  # noqa: E402
    TINY_ENCODER_MODALITY,
    make_tiny_llm,
    tiny_encoder_config,
    tiny_media_item,
)

# Cheapest first: a time cap then cuts only the slow end.
FAMILIES = ["tiny_audio", "spectral", "tiny_image", "clip", "vit", "open_clip", "vivit",
            "clap", "mert", "jukebox", "laion_clap"]
INJECTIONS = ["splice", "xattn", "prefix"]
RESULTS = Path(__file__).resolve().parent / "results"


def generate_texts(model: MusicLLM, conversations: list[list[dict]], media: list[dict],
                   max_new_tokens: int) -> list[str]:
    """The one call to the model's generation API: reply texts for ``conversations``."""
    return model.generate_text(conversations, media, max_new_tokens=max_new_tokens)


def model_config(llm_dir: Path, family: str, injection: str, work_dir: Path) -> dict:
    """A tiny model config: encoder ``family`` on its modality, an MLP adapter (globally
    pooled for prefix injection, which takes a fixed token count) and LoRA on q, v."""
    encoder = dict(tiny_encoder_config(family, work_dir), layers="all", layer_reduce="weighted")
    adapter = {"name": "mlp", "hidden_size": 32}
    inj: dict = {"kind": injection}
    if injection == "xattn":
        inj.update(every_n_layers=2, num_heads=4)
    elif injection == "prefix":
        inj.update(top_k_layers=2, prefix_len=4)
        adapter["pool"] = "global"
    return {
        "llm": {"name_or_path": str(llm_dir), "policy": "lora",
                "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "modalities": {TINY_ENCODER_MODALITY[family]: {
            "encoder": encoder, "adapter": adapter, "injection": inj}},
    }


def _check_on(device: torch.device, what: str, tensors: dict[str, torch.Tensor]) -> None:
    """Raise naming the first tensor that is not on ``device``."""
    for name, t in tensors.items():
        if t.device.type != device.type:
            raise RuntimeError(f"{what} {name} is on {t.device}, expected {device}")


def run_one(llm_dir: Path, family: str, injection: str, device: torch.device,
            work_dir: Path) -> dict:
    """Build, move, forward + backward, generate; returns the timings (s) and replies."""
    t0 = time.perf_counter()
    model = MusicLLM(load_model_config(model_config(llm_dir, family, injection, work_dir)))
    model.to(device)
    _check_on(device, "parameter", dict(model.named_parameters()))
    _check_on(device, "buffer", dict(model.named_buffers()))
    t_build = time.perf_counter() - t0

    modality = TINY_ENCODER_MODALITY[family]
    enc = model.encoders[modality]
    marker = MARKERS[modality]
    media = [{modality: [tiny_media_item(enc, 1.0, seed=0)]},
             {modality: [tiny_media_item(enc, 0.5, seed=1)]}]
    prompts = [[{"role": "user", "content": f"{marker} Describe it."}],
               [{"role": "user", "content": f"What plays in {marker}?"}]]
    answers = ["slow piano in minor", "a fast guitar"]
    convs = [p + [{"role": "assistant", "content": a}] for p, a in zip(prompts, answers)]

    t0 = time.perf_counter()
    model.train()
    batch = model.processor(convs, media)
    out = model(batch["input_ids"], batch["attention_mask"], batch["labels"], batch["media"])
    loss = out["loss"]
    _check_on(device, "output", {"loss": loss})
    if not torch.isfinite(loss):
        raise RuntimeError(f"loss is {float(loss)}")
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(n for n, p in trainable.items() if p.grad is None)
    if missing:
        raise RuntimeError(f"no gradient reached {len(missing)} trainable tensors, e.g. "
                           f"{missing[:3]}")
    _check_on(device, "gradient of", {n: p.grad for n, p in trainable.items()})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_train = time.perf_counter() - t0

    t0 = time.perf_counter()
    replies = generate_texts(model, prompts, media, max_new_tokens=4)
    if len(replies) != len(prompts) or not all(isinstance(r, str) for r in replies):
        raise RuntimeError(f"generation returned {replies!r}, expected {len(prompts)} texts")
    t_gen = time.perf_counter() - t0
    return {"build_s": round(t_build, 3), "train_step_s": round(t_train, 3),
            "generate_s": round(t_gen, 3), "loss": float(loss), "replies": replies}


def _split(value: str, known: list[str], what: str) -> list[str]:
    names = [v for v in value.split(",") if v]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"--{what}: unknown {unknown}; known: {known}")
    return [k for k in known if k in names]  # keep the cheapest-first order


def main(argv: list[str] | None = None) -> int:
    """Run every requested combination; returns 0 when all passed, else 1."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu ... (default cuda)")
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help=f"comma-separated encoder families (default all: {FAMILIES})")
    ap.add_argument("--injections", default=",".join(INJECTIONS),
                    help=f"comma-separated injection kinds (default all: {INJECTIONS})")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON results (default benchmarks/results/gpu_smoke_<device>.json)")
    args = ap.parse_args(argv)
    families = _split(args.families, FAMILIES, "families")
    injections = _split(args.injections, INJECTIONS, "injections")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available on this machine", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device smoke on {device} ({name}), torch {torch.__version__}")
    results = []
    with tempfile.TemporaryDirectory(prefix="mullm-smoke-") as tmp:
        work = Path(tmp)
        llm_dir = make_tiny_llm(work / "tiny-llama")
        for family in families:
            for injection in injections:
                row = {"family": family, "injection": injection}
                try:
                    row.update(run_one(llm_dir, family, injection, device, work))
                    row["status"] = "ok"
                    line = (f"ok    build {row['build_s']:.1f}s, forward+backward "
                            f"{row['train_step_s']:.2f}s, generate {row['generate_s']:.2f}s")
                except Exception as exc:  # noqa: BLE001 - every failure is reported, then exit 1
                    row.update(status="error", error=f"{type(exc).__name__}: {exc}")
                    line = f"FAIL  {row['error']}"
                    traceback.print_exc(file=sys.stderr)
                print(f"{family:<11} {injection:<7} {line}", flush=True)
                results.append(row)
    failed = [r for r in results if r["status"] != "ok"]
    print(f"{len(results) - len(failed)}/{len(results)} combinations passed on {device}")
    out = args.out or RESULTS / f"gpu_smoke_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "device_name": name,
                               "torch": torch.__version__, "results": results}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
