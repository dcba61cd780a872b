"""Score captions by the attribute words they contain, against a clip's labels.

A caption "names what the model heard" when its words state the clip's key and mode, tempo
class, metre and (on single-family clips) instrument family. ``caption_attributes`` reads
those words (the answer words of the closed questions, as ``attribute_caption`` writes
them); ``score_captions`` counts, per attribute, the clips whose caption states the right
value (a caption that does not say counts as wrong), so captions generated with noise in
place of the clip give the same score's noise control.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mullm.data.templates import (
    FAMILY_CHOICES,
    METRE_CHOICES,
    TEMPO_CHOICES,
    attribute_caption,
    closed_questions,
)
from mullm.eval.closed import ATTRIBUTES

if TYPE_CHECKING:
    from mullm.model import MusicLLM

_KEY = re.compile(r"\b([A-G](?:#|b)?) (major|minor)\b")
# longest names first, so "synth lead" is not read as something shorter
_FAMILIES = sorted(FAMILY_CHOICES, key=len, reverse=True)


def caption_attributes(text: str) -> dict[str, Any]:
    """The attribute values a caption states: {"key", "mode", "tempo_class", "metre",
    "families"}; an attribute it does not state (or states twice, differently) is absent."""
    out: dict[str, Any] = {}
    low = text.lower()
    keys = {f"{t} {m}" for t, m in _KEY.findall(text)}
    if len(keys) == 1:
        out["key"] = keys.pop()
        out["mode"] = out["key"].split()[1]
    else:
        modes = set(re.findall(r"\b(major|minor)\b", low))
        if len(modes) == 1:
            out["mode"] = modes.pop()
    for attr, words in (("tempo_class", TEMPO_CHOICES), ("metre", METRE_CHOICES)):
        found = {w for w in words if re.search(rf"\b{w}\b", low)}
        if len(found) == 1:
            out[attr] = found.pop()
    fams, rest = [], low
    for f in _FAMILIES:
        if re.search(rf"\b{re.escape(f)}\b", rest):
            fams.append(f)
            rest = re.sub(rf"\b{re.escape(f)}\b", " ", rest)
    out["families"] = sorted(fams)
    return out


def score_captions(captions: list[str], rows: list[dict]) -> dict[str, Any]:
    """Per-attribute accuracy of ``captions[i]`` against ``rows[i]``'s labels, plus "all"
    (every attribute of every clip pooled). Family is scored on single-family clips: right
    when the caption names that family and no other."""
    if len(captions) != len(rows):
        raise ValueError(f"{len(captions)} captions for {len(rows)} clips")
    right: dict[str, int] = dict.fromkeys(ATTRIBUTES, 0)
    total: dict[str, int] = dict.fromkeys(ATTRIBUTES, 0)
    for text, row in zip(captions, rows):
        said = caption_attributes(text)
        for q in closed_questions(row):
            a = q["attribute"]
            total[a] += 1
            got = said["families"] == [q["answer"]] if a == "family" else \
                said.get(a) == q["answer"]
            right[a] += int(got)
    table = {a: {"n": total[a], "accuracy": right[a] / total[a]} for a in ATTRIBUTES
             if total[a]}
    n = sum(total.values())
    table["all"] = {"n": n, "accuracy": sum(right.values()) / n if n else 0.0}
    return table


@torch.no_grad()
def caption_clips(model: MusicLLM, rows: list[dict], meta_dir: str | Path, prompt: str,
                  noise_control: bool = True, batch_size: int = 8, max_new_tokens: int = 32,
                  seed: int = 0) -> dict[str, Any]:
    """Greedy captions of ``rows``' clips (and of noise with each clip's loudness), scored
    with ``score_captions``. Returns {"items": [{clip, caption, noise_caption, truth}],
    "scores": {...}, "noise_scores": {...}, "seconds"}."""
    from mullm.eval.closed import noise_like

    t0 = time.perf_counter()
    meta_dir = Path(meta_dir)
    waves = [model.processor.load_item("audio", str(meta_dir / r["audio"])) for r in rows]
    kinds = {"caption": waves}
    if noise_control:
        kinds["noise_caption"] = [noise_like(w, seed * 1_000_003 + i)
                                  for i, w in enumerate(waves)]
    texts: dict[str, list[str]] = {}
    for kind, items in kinds.items():
        texts[kind] = []
        for a in range(0, len(items), batch_size):
            chunk = items[a:a + batch_size]
            texts[kind] += model.generate_text(
                [[{"role": "user", "content": "<audio>\n" + prompt}] for _ in chunk],
                [{"audio": [x]} for x in chunk], max_new_tokens=max_new_tokens,
                do_sample=False)
    out: dict[str, Any] = {
        "items": [{"clip": r["id"], "truth": attribute_caption(r),
                   **{k: texts[k][i] for k in texts}} for i, r in enumerate(rows)],
        "scores": score_captions(texts["caption"], rows)}
    if noise_control:
        out["noise_scores"] = score_captions(texts["noise_caption"], rows)
    out["distinct"] = len(set(texts["caption"]))
    out["seconds"] = time.perf_counter() - t0
    return out


def format_caption_table(result: dict[str, Any]) -> str:
    """Attribute accuracy of the captions next to their noise control."""
    head = f"{'attribute':<12} {'n':>4} {'caption':>8} {'noise':>7}"
    lines = [head, "-" * len(head)]
    for attr, e in result["scores"].items():
        noise = result.get("noise_scores", {}).get(attr, {}).get("accuracy")
        lines.append(f"{attr:<12} {e['n']:>4} {e['accuracy']:>8.2f} "
                     f"{'-' if noise is None else f'{noise:.2f}':>7}")
    return "\n".join(lines)
