"""MIR tasks as LLark evaluated them: free answers mapped to labels, scored with mir_eval.

LLark (Gardner et al., 2024) asked its model free questions and scored the answers as MIR
estimates: key with the MIREX weighted score (``mir_eval.key.weighted_score``), tempo with
Acc1 / Acc2 (``mir_eval.tempo`` tolerance, ``mullm.eval.mir_metrics``), and genre and
instruments by mapping the free answer to a label set. On a ``metadata.jsonl`` collection
(``mullm build-corpus``) every answer has exact ground truth.

The questions (``MIR_QUESTIONS``) are mullm's, pinned (LLark's exact phrasings are not
published with its code); the label mappings (``STYLE_WORDS``, ``FAMILY_WORDS``) are data
and go into every report. An answer that names no label is "unmapped": it scores 0 and is
counted.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from mullm.eval.mir_metrics import key_label, key_relation, mirex_key_score, tempo_accuracy

MIR_QUESTIONS = {
    "key": "What key is this music in? Answer with the tonic and the mode, for example "
           "'C major' or 'F# minor'.",
    "tempo": "What is the tempo of this music in beats per minute? Answer with a number.",
    "style": "What is the genre or style of this music?",
    "instruments": "Which instruments play in this music?",
}
# Free-answer words -> the corpus's style labels (lower case, whole words; first label whose
# word occurs wins, in this order, so "slip jig" is tried before "jig").
STYLE_WORDS: dict[str, list[str]] = {
    "slip jig": ["slip jig"],
    "jig": ["jig", "reel", "celtic", "irish"],
    "waltz": ["waltz"],
    "hymn": ["hymn", "chorale", "choral", "church", "sacred"],
    "chorale": ["chorale", "bach"],
    "march": ["march", "military", "parade"],
    "rock groove": ["rock"],
    "shuffle": ["shuffle", "blues", "swing"],
    "bossa": ["bossa", "samba", "latin"],
    "ballad": ["ballad"],
    "folk": ["folk"],
}
# Free-answer words -> General MIDI families (the corpus's ``families``).
FAMILY_WORDS: dict[str, list[str]] = {
    "piano": ["piano", "keyboard", "harpsichord", "clavinet", "clavichord"],
    "chromatic percussion": ["celesta", "glockenspiel", "music box", "vibraphone", "marimba",
                             "xylophone", "tubular bells", "dulcimer", "bells"],
    "organ": ["organ", "accordion", "harmonica", "bandoneon"],
    "guitar": ["guitar"],
    "bass": ["bass guitar", "electric bass", "double bass", "acoustic bass", "slap bass",
             "fretless", "synth bass", "bass"],
    "strings": ["violin", "viola", "cello", "contrabass", "strings", "string", "harp",
                "pizzicato", "timpani", "fiddle"],
    "ensemble": ["ensemble", "choir", "orchestra", "voices", "voice", "string section"],
    "brass": ["trumpet", "trombone", "tuba", "horn", "brass"],
    "reed": ["saxophone", "sax", "oboe", "bassoon", "clarinet", "english horn", "reed"],
    "pipe": ["flute", "piccolo", "recorder", "pan flute", "whistle", "ocarina", "pipe"],
    "synth lead": ["lead", "synth lead", "square wave", "sawtooth"],
    "synth pad": ["pad", "synth pad", "synthesizer pad"],
    "drums": ["drum", "drums", "percussion", "kit"],
}
_PITCH = r"([A-G])\s*(#|b|♯|♭|-?sharp|-?flat)?"
_KEY_RE = re.compile(_PITCH + r"\s*-?\s*(major|minor|maj|min|m)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def parse_key(text: str) -> str | None:
    """The first "<tonic> <mode>" named in ``text``, in mir_eval's spelling ("Eb minor"), or
    None. The tonic must be a capital letter; "F# minor", "Bb major", "C sharp minor",
    "Am" (minor) and "D maj" are read."""
    for m in _KEY_RE.finditer(text):
        tonic = m.group(1)
        if not tonic.isupper():
            continue
        acc = (m.group(2) or "").lower().lstrip("-")
        tonic += {"#": "#", "♯": "#", "sharp": "#", "b": "b", "♭": "b", "flat": "b"}.get(acc, "")
        mode_word = m.group(3)
        mode = "minor" if mode_word.lower().startswith("min") or mode_word == "m" else "major"
        if mode_word == "M":
            mode = "major"
        try:
            return key_label(tonic, mode)
        except ValueError:
            continue
    return None


def parse_tempo(text: str) -> float | None:
    """The first number in ``text`` between 20 and 400 (a tempo in BPM), or None."""
    for m in _NUMBER.finditer(text):
        v = float(m.group(1))
        if 20 <= v <= 400:
            return v
    return None


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9#]+", " ", text.lower()).strip() + " "


def map_labels(text: str, table: dict[str, list[str]], first_only: bool) -> list[str]:
    """Labels of ``table`` whose words occur in ``text`` as whole words (the first one only
    when ``first_only``, by the table's order)."""
    norm = _words(text)
    out = [label for label, words in table.items()
           if any(f" {w} " in norm for w in words)]
    return out[:1] if first_only else out


def mir_items(rows: list[dict[str, Any]], tasks: tuple[str, ...] = tuple(MIR_QUESTIONS)
              ) -> list[dict[str, Any]]:
    """One question per clip and MIR task with an exact answer: ``{"id", "clip", "audio",
    "task", "question", "truth"}`` (``audio`` as in the row; resolve it before use).

    Raises:
        ValueError: an unknown task name.
    """
    bad = [t for t in tasks if t not in MIR_QUESTIONS]
    if bad:
        raise ValueError(f"unknown MIR task(s) {bad}; choose from {list(MIR_QUESTIONS)}")
    out = []
    for r in rows:
        truths = {
            "key": key_label(r["key"], r["mode"]) if r.get("key") and r.get("mode") in
            ("major", "minor") else None,
            "tempo": r.get("tempo_bpm"),
            "style": r.get("style"),
            "instruments": sorted(r.get("families") or []) or None,
        }
        for t in tasks:
            if truths[t] is not None:
                out.append({"id": f"{r['id']}/{t}", "clip": r["id"], "audio": r["audio"],
                            "task": t, "question": MIR_QUESTIONS[t], "truth": truths[t]})
    return out


def score_answer(task: str, truth: Any, reply: str) -> dict[str, Any]:
    """One reply read as an estimate: ``{"estimate", "score" (0..1), ...}``; ``estimate``
    is None when the reply names no label (unmapped)."""
    if task == "key":
        est = parse_key(reply)
        return {"estimate": est, "score": mirex_key_score(truth, est) if est else 0.0,
                "relation": key_relation(truth, est) if est else "unmapped"}
    if task == "tempo":
        est = parse_tempo(reply)
        if est is None:
            return {"estimate": None, "acc1": False, "acc2": False, "score": 0.0}
        acc1, acc2 = tempo_accuracy(truth, est)
        return {"estimate": est, "acc1": acc1 == 1.0, "acc2": acc2 == 1.0, "score": acc1}
    if task == "style":
        labels = map_labels(reply, STYLE_WORDS, first_only=True)
        est = labels[0] if labels else None
        return {"estimate": est, "score": float(est == truth)}
    if task == "instruments":
        est = map_labels(reply, FAMILY_WORDS, first_only=False)
        hit = len(set(est) & set(truth))
        prec = hit / len(est) if est else 0.0
        rec = hit / len(truth)
        f1 = 2 * prec * rec / (prec + rec) if hit else 0.0
        return {"estimate": est or None, "precision": prec, "recall": rec, "score": f1}
    raise ValueError(f"unknown MIR task {task!r}")


def summarize_mir(records: list[dict[str, Any]], condition: str = "audio") -> dict[str, Any]:
    """Per task: n, unmapped answers and the task's scores; for key and style a confusion
    table ``{truth: {estimate or "unmapped": count}}``."""
    out: dict[str, Any] = {}
    ok = [r for r in records if not r.get("error") and condition in r.get("results", {})]
    for task in MIR_QUESTIONS:
        rs = [r for r in ok if r["mir_task"] == task]
        if not rs:
            continue
        sc = [r["results"][condition]["scored"] for r in rs]
        entry: dict[str, Any] = {"n": len(rs),
                                 "unmapped": sum(s["estimate"] is None for s in sc)}
        if task == "key":
            entry["mirex_weighted"] = sum(s["score"] for s in sc) / len(sc)
            entry["relations"] = dict(Counter(s["relation"] for s in sc))
        elif task == "tempo":
            entry["acc1"] = sum(s["acc1"] for s in sc) / len(sc)
            entry["acc2"] = sum(s["acc2"] for s in sc) / len(sc)
        elif task == "style":
            entry["accuracy"] = sum(s["score"] for s in sc) / len(sc)
        else:
            entry["f1"] = sum(s["score"] for s in sc) / len(sc)
            entry["precision"] = sum(s["precision"] for s in sc) / len(sc)
            entry["recall"] = sum(s["recall"] for s in sc) / len(sc)
        if task in ("key", "style"):
            conf: dict[str, Counter] = {}
            for r, s in zip(rs, sc):
                conf.setdefault(str(r["truth"]), Counter())[str(s["estimate"] or "unmapped")] \
                    += 1
            entry["confusion"] = {t: dict(c) for t, c in sorted(conf.items())}
        out[task] = entry
    return out


__all__ = ["FAMILY_WORDS", "MIR_QUESTIONS", "STYLE_WORDS", "map_labels", "mir_items",
           "parse_key", "parse_tempo", "score_answer", "summarize_mir"]
