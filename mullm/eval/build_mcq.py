"""A MuChoMusic-format multiple-choice CSV from a labelled collection (``metadata.jsonl``).

Per clip, up to five questions whose right answer is exact (the corpus knows how each clip
was made), each with three distractors drawn with a seed, in MuChoMusic's columns plus
``audio`` (``mcq_items.write_muchomusic_csv``), so ``mullm eval --task mcq`` reads it as it
reads the real benchmark:

| question | dimension (MuChoMusic's names) | distractors |
|---|---|---|
| key | knowledge: harmony | the parallel key, the relative key, one other key |
| tempo (BPM) | knowledge: rhythm | the tempo x 0.6, x 1.45, x 2.1 (no octave errors) |
| time signature | knowledge: rhythm | three other common signatures |
| instrument family (single-family clips) | knowledge: instrumentation | three other families |
| style | reasoning: genre and style | three other styles of the collection |
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mullm.eval.mcq_items import write_muchomusic_csv

SIGNATURES = ["2/4", "3/4", "4/4", "6/8", "9/8", "12/8", "5/4"]
FAMILIES = ["piano", "chromatic percussion", "organ", "guitar", "strings", "ensemble",
            "brass", "reed", "pipe", "synth lead", "synth pad"]
TEMPO_RATIOS = (0.6, 1.45, 2.1)


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(
        hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big"))


def _pick(rng: np.random.Generator, pool: list[str], exclude: set[str], k: int) -> list[str]:
    options = [p for p in pool if p not in exclude]
    return [options[i] for i in rng.choice(len(options), size=k, replace=False)]


def clip_questions(row: dict[str, Any], styles: list[str], seed: int = 0
                   ) -> list[dict[str, Any]]:
    """The questions of one ``metadata.jsonl`` row (rows for ``write_muchomusic_csv``
    without ``audio``)."""
    from mullm.eval.mir_metrics import key_label
    from mullm.utils.music import PITCH_NAMES, pitch_class

    rng = _rng(seed, row["id"])
    out = []
    base = {"dataset": "mullm-offline-corpus", "genre": row.get("style", "")}
    if row.get("key") and row.get("mode") in ("major", "minor"):
        pc = pitch_class(row["key"])
        minor = row["mode"] == "minor"
        truth = key_label(row["key"], row["mode"])
        parallel = f"{PITCH_NAMES[pc]} {'major' if minor else 'minor'}"
        relative = (f"{PITCH_NAMES[(pc + 3) % 12]} major" if minor
                    else f"{PITCH_NAMES[(pc + 9) % 12]} minor")
        keys = [f"{p} {m}" for m in ("major", "minor") for p in PITCH_NAMES]
        other = _pick(rng, keys, {truth, parallel, relative}, 1)
        out.append({**base, "attr": "key", "question": "What is the key of this piece?",
                    "correct_answer": truth, "distractors": [parallel, relative, *other],
                    "music_knowledge": ["harmony"], "music_reasoning": []})
    if row.get("tempo_bpm"):
        bpm = float(row["tempo_bpm"])
        out.append({**base, "attr": "tempo", "question": "What is the tempo of this piece?",
                    "correct_answer": f"about {round(bpm)} BPM",
                    "distractors": [f"about {round(bpm * r)} BPM" for r in TEMPO_RATIOS],
                    "music_knowledge": ["rhythm"], "music_reasoning": []})
    if row.get("time_signature"):
        ts = row["time_signature"]
        pool = SIGNATURES if ts in SIGNATURES else [*SIGNATURES, ts]
        out.append({**base, "attr": "metre", "question": "What is the time signature of this "
                    "piece?", "correct_answer": ts, "distractors": _pick(rng, pool, {ts}, 3),
                    "music_knowledge": ["rhythm"], "music_reasoning": []})
    fams = row.get("families") or []
    if len(fams) == 1 and fams[0] in FAMILIES:
        out.append({**base, "attr": "family", "question": "Which instrument family plays "
                    "this piece?", "correct_answer": fams[0],
                    "distractors": _pick(rng, FAMILIES, {fams[0]}, 3),
                    "music_knowledge": ["instrumentation"], "music_reasoning": []})
    style = row.get("style")
    if style and len(set(styles) - {style}) >= 3:
        out.append({**base, "attr": "style", "question": "Which style best describes this "
                    "piece?", "correct_answer": style,
                    "distractors": _pick(rng, sorted(set(styles)), {style}, 3),
                    "music_knowledge": [], "music_reasoning": ["genre and style"]})
    for q in out:
        q["dataset_identifier"] = f"{row['id']}-{q.pop('attr')}"
    return out


def build_mcq_csv(metadata: str | os.PathLike, out: str | os.PathLike, *,
                  split: str | None = "test", max_clips: int | None = None,
                  seed: int = 0) -> int:
    """Write the MuChoMusic-format CSV of the clips of ``metadata`` in ``split`` (None: all)
    to ``out`` (audio paths relative to ``out``'s folder); returns the number of questions.

    Raises:
        DataError: a malformed ``metadata.jsonl`` (file:line).
        ValueError: no clip in ``split``.
    """
    from mullm.data.corpus import read_metadata

    metadata, out = Path(metadata), Path(out)
    rows = [r for r in read_metadata(metadata, check_audio=False)
            if split is None or r.get("split") == split]
    if max_clips is not None:
        rows = rows[:max_clips]
    if not rows:
        raise ValueError(f"{metadata}: no clip in split {split!r}")
    styles = sorted({r["style"] for r in read_metadata(metadata, check_audio=False)
                     if r.get("style")})
    out.parent.mkdir(parents=True, exist_ok=True)
    qs = []
    for r in rows:
        audio = Path(r["audio"]) if os.path.isabs(r["audio"]) else metadata.parent / r["audio"]
        rel = os.path.relpath(audio.resolve(), out.parent.resolve())
        qs += [{**q, "audio": rel} for q in clip_questions(r, styles, seed)]
    write_muchomusic_csv(qs, out)
    return len(qs)


__all__ = ["build_mcq_csv", "clip_questions"]
