"""Where a CPU training step's time goes, and what the issue-14 recipe saves: two ways, one run.

    before  the quickstart recipe as issue 14 found it: the spectral encoder runs inside every
            step, the system prompt "You are a music expert. Answer briefly.", a clip's closed
            questions packed into one conversation (mode apart) mixed 3:1 with short template
            answers and captions, fp32;
    after   the issue-14 recipe (configs/quickstart.yaml): cached features (no encoder in the
            step), no system prompt (a chat template without SmolLM2's default one), closed
            questions packed by clip and attribute captions, at ``--after-precision``.

Both train the same model (SmolLM2-135M-Instruct, LoRA r16 on all linear layers, pooled MLP
adapter) on batches of 8 from the ``offline`` corpus; steps alternate between the two ways so
that load on a shared machine hits both alike. Forward hooks time the encoder, the adapter
(with its output norm) and the LLM forward; backward and the optimiser step are timed
around their calls; "batch" is the processor building the batch from decoded audio or
cached features (a data-loader worker's share). Prints a table with the steps/s ratio and
writes benchmarks/results/step_profile.json.

    python benchmarks/step_profile.py [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OLD_SYSTEM = "You are a music expert. Answer briefly."
PARTS = ("batch", "encoder", "adapter", "llm_forward", "backward", "optimizer")


def before_conversations(rows: list[dict], meta_dir: Path, out_dir: Path) -> list[tuple]:
    """(weight, conversations) of the recipe before issue 14: packed closed questions and
    short template answers (at most 160 characters), weighted 3:1."""
    from mullm.data.templates import pack_by_clip, template_conversations

    convs = template_conversations(rows, meta_dir=meta_dir, out_dir=out_dir, per_clip=2,
                                   seed=0, closed=True)
    closed = [c for c in convs if (c.meta or {}).get("template") == "closed"]
    other = [c for c in convs if (c.meta or {}).get("template") != "closed"
             and len(c.audio) == 1
             and all(len(t["content"]) <= 160 for t in c.turns if t["role"] == "assistant")]
    return [(3.0, pack_by_clip(closed)), (1.0, other)]


def after_conversations(meta: Path, out_dir: Path) -> list[tuple]:
    """(weight, conversations) of the issue-14 quickstart data (``prepare_data``)."""
    from mullm.data.schema import read_conversations
    from mullm.quickstart import prepare_data
    from mullm.train.config import load_train_config

    paths = prepare_data(meta, out_dir)
    cfg = load_train_config("quickstart")
    return [(cfg.data.train["closed"].weight, read_conversations(paths["closed_train"])),
            (cfg.data.train["captions"].weight, read_conversations(paths["captions_train"]))]


class Timer:
    """Accumulates wall time per part; forward hooks time whole module calls."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self._start: dict[str, float] = {}

    def hook(self, module: torch.nn.Module, name: str) -> None:
        """Time every forward call of ``module`` as ``name``."""
        module.register_forward_pre_hook(lambda *_: self._start.__setitem__(
            name, time.perf_counter()))
        module.register_forward_hook(lambda *_: self.t.__setitem__(
            name, self.t[name] + time.perf_counter() - self._start[name]))


def build(way: str, precision: str) -> tuple[Any, Timer, Any, Any]:
    """(model, timer, optimizer, autocast factory) for one way."""
    from mullm.model import MusicLLM
    from mullm.train.config import load_train_config
    from mullm.train.trainer import autocast_for

    ov = [] if way == "after" else [f"model.system_prompt={OLD_SYSTEM}",
                                    "model.llm.chat_template=null"]
    cfg = load_train_config("quickstart", ov)
    model = MusicLLM(cfg.model)
    timer = Timer()
    timer.hook(model.encoders["audio"], "encoder")
    timer.hook(model.adapters["audio"], "adapter")
    timer.hook(model.output_norms["audio"], "adapter")
    # Training runs the LLM's backbone and then its head on the labelled positions only
    # (MusicLLM.forward), never the peft wrapper's forward: time those two.
    base = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
    timer.hook(base.get_decoder(), "llm_forward")
    timer.hook(base.get_output_embeddings(), "llm_forward")
    model.requires_grad_(False)
    params = [p for g in ("adapter.audio", "lora") for p in model.trainable_groups()[g]]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    autocast, _ = autocast_for(precision, torch.device("cpu"))
    return model, timer, opt, autocast


def draw(pools: list[tuple], rng: np.random.Generator, batch: int) -> list:
    """A batch drawn from weighted conversation pools."""
    w = np.array([p[0] for p in pools], dtype=float)
    out = []
    for _ in range(batch):
        pool = pools[int(rng.choice(len(pools), p=w / w.sum()))][1]
        out.append(pool[int(rng.integers(len(pool)))])
    return out


def step(model: Any, timer: Timer, opt: Any, autocast: Any, convs: list, media: list) -> dict:
    """One optimiser step; returns its part times and token counts."""
    t0 = time.perf_counter()
    batch = model.processor([[dict(t) for t in c.turns] for c in convs], media)
    timer.t["batch"] += time.perf_counter() - t0
    with autocast():
        out = model(**batch)
    t1 = time.perf_counter()
    out["loss"].backward()
    t2 = time.perf_counter()
    opt.step()
    opt.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    timer.t["backward"] += t2 - t1
    timer.t["optimizer"] += t3 - t2
    return {"total": time.perf_counter() - t0, "tokens": int(batch["attention_mask"].sum()),
            "labelled": int((batch["labels"][:, 1:] != -100).sum())}


def main() -> int:
    """Alternate steps of both ways on their own batches; print the breakdown and the ratio."""
    from mullm.audio import load_audio
    from mullm.commands.extract import encoder_config_from_file
    from mullm.data.corpora import ensure_corpus
    from mullm.data.corpus_features import ensure_features
    from mullm.features.cache import FeatureCache
    from mullm.media import Features

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="timed steps per way (after 1 warm-up)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--after-precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "step_profile"))
    args = ap.parse_args()
    torch.manual_seed(0)
    meta = ensure_corpus("offline", progress=False)
    enc_cfg = encoder_config_from_file("encoders/spectral")
    cache = FeatureCache(ensure_features(meta, enc_cfg, progress=False))
    rows = [json.loads(x) for x in meta.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["split"] == "train"]
    out = Path(args.out)
    # Conversation paths are relative to these folders, and "../" only resolves through a
    # folder that exists.
    for way in ("before", "after"):
        (out / way).mkdir(parents=True, exist_ok=True)
    pools = {"before": before_conversations(rows, meta.parent, out / "before"),
             "after": after_conversations(meta, out / "after")}
    precision = {"before": "fp32", "after": args.after_precision}
    ways = {w: build(w, precision[w]) for w in pools}

    def media(way: str, convs: list) -> list:
        paths = [c.audio_paths()[0] for c in convs]
        if way == "before":  # decoded audio, encoded inside the step
            return [{"audio": [torch.from_numpy(load_audio(p, enc_cfg.sample_rate))]}
                    for p in paths]
        return [{"audio": [Features(cache.get(p)[0].float())]} for p in paths]

    rng = {w: np.random.default_rng(1) for w in pools}
    stats: dict[str, list] = {w: [] for w in pools}
    for i in range(args.steps + 1):
        for way, (model, timer, opt, autocast) in ways.items():
            convs = draw(pools[way], rng[way], args.batch)
            if i == 0:  # warm-up: not timed
                step(model, timer, opt, autocast, convs, media(way, convs))
                timer.t.clear()
                continue
            stats[way].append(step(model, timer, opt, autocast, convs, media(way, convs)))
    result: dict = {"threads": torch.get_num_threads(), "batch": args.batch,
                    "steps": args.steps, "ways": {}}
    print(f"\n{'per step (s)':<14} " + " ".join(f"{p:>11}" for p in PARTS)
          + f" {'total':>8} {'steps/s':>8} {'tokens':>7} {'labelled':>9}")
    for way, (_, timer, _, _) in ways.items():
        n = len(stats[way])
        total = sum(s["total"] for s in stats[way]) / n
        entry = {p: timer.t[p] / n for p in PARTS}
        entry.update(total_s=total, steps_per_s=1 / total,
                     tokens=float(np.mean([s["tokens"] for s in stats[way]])),
                     labelled=float(np.mean([s["labelled"] for s in stats[way]])),
                     precision=precision[way])
        result["ways"][way] = entry
        print(f"{way + ' (' + precision[way] + ')':<14} "
              + " ".join(f"{entry[p]:>11.3f}" for p in PARTS)
              + f" {total:>8.2f} {entry['steps_per_s']:>8.3f} {entry['tokens']:>7.0f} "
              f"{entry['labelled']:>9.1f}")
    b, a = result["ways"]["before"], result["ways"]["after"]
    result["speedup_steps_per_s"] = a["steps_per_s"] / b["steps_per_s"]
    result["speedup_labelled_per_s"] = (a["labelled"] * a["steps_per_s"]) / (
        b["labelled"] * b["steps_per_s"])
    print(f"\nafter / before: {result['speedup_steps_per_s']:.2f}x steps/s, "
          f"{result['speedup_labelled_per_s']:.2f}x labelled answer tokens/s")
    path = ROOT / "benchmarks" / "results" / "step_profile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
