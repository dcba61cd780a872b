"""Music-generation and editing conversations from the offline corpus (MUCaps / MUEdit layout).

The offline equivalent of M2UGen's generation data, with exact labels:

* text to music (MUCaps-like): a request written from a clip's labels ("Compose a slow
  chorale in D minor for strings."), a reply ending in the output tokens, and ``target`` =
  the clip's caption and the clip;
* editing (MUEdit-like): ``mullm augment --mode audio`` writes time-stretched and transposed
  copies of each clip with their labels moved (ids ``<clip>-stretch0.80``, ``-pitch+2``).
  Each copy and its original make two edits: original -> copy ("Make it slower.") and copy ->
  original ("Make it faster."): the input clip is attached to the request, the target is the
  other clip. The edit changes only what the instruction says, because it is the same
  recording stretched or shifted.

``mullm augment --mode generation --metadata M --out F`` writes them; they use task
``generate`` and need a model whose ``music_output.num_tokens`` equals ``output_tokens``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mullm.data.schema import Conversation
from mullm.data.templates import audio_relpath, key_name, short_caption

SOURCE = "mullm-generation"

_ASK = ["Compose {x}", "Generate {x}", "Create {x}", "Write and play {x}", "Make me {x}",
        "Please generate music: {x}"]
_REPLY = ["Here is {x}", "Here is a piece: {x}", "This is {x}"]


def _lower_first(text: str) -> str:
    text = text.rstrip(".")
    return text[:1].lower() + text[1:]


def edit_instruction(source: dict, target: dict, op: str, rng: np.random.Generator
                     ) -> str | None:
    """The request that turns clip ``source`` into clip ``target``, or None when the change
    has no plain wording (``op``: the augmentation tag, e.g. ``stretch0.80``, ``pitch+2``)."""
    if op.startswith("stretch"):
        a, b = source.get("tempo_bpm"), target.get("tempo_bpm")
        if not a or not b or abs(b - a) < 0.05 * a:
            return None
        word = "slower" if b < a else "faster"
        return str(rng.choice([f"Make it {word}.", f"Play it {word}.",
                               f"Can you make this {word}?",
                               f"Change the tempo to about {round(b)} BPM."]))
    if op.startswith("pitch") and target.get("key") and target.get("key") != source.get("key"):
        return str(rng.choice([f"Transpose it to {key_name(target)}.",
                               f"Play the same in {key_name(target)}.",
                               f"Can you move this to {key_name(target)}?"]))
    return None


def generation_conversations(rows: Sequence[dict], *, meta_dir: str | os.PathLike,
                             out_dir: str | os.PathLike, output_tokens: int = 8,
                             seed: int = 0, edits: bool = True) -> list[Conversation]:
    """Text-to-music conversations for every original clip of ``rows`` (a metadata.jsonl's
    rows) and, with ``edits``, two editing conversations per augmented copy whose original is
    among ``rows``. Paths are written relative to ``out_dir``."""
    from mullm.outputs.vocab import output_token_text

    rng = np.random.default_rng(seed)
    meta_dir, out_dir = Path(meta_dir), Path(out_dir)
    aud = output_token_text(output_tokens)
    by_id = {r["id"]: r for r in rows}
    out: list[Conversation] = []

    def conv(cid: str, turns: list[dict], audio: list[str], target: dict, row: dict,
             meta: dict, caption: str | None = None) -> Conversation:
        caption = caption or short_caption(target, rng)
        return Conversation(id=cid, turns=turns, task="generate", audio=audio,
                            split=row.get("split"), source=SOURCE, meta=meta,
                            target={"caption": caption,
                                    "audio": audio_relpath(target, meta_dir, out_dir)},
                            base_dir=out_dir)

    for row in rows:
        if row.get("augmentation"):
            continue
        caption = short_caption(row, rng)
        ask = str(rng.choice(_ASK)).format(x=_lower_first(caption)) + "."
        reply = str(rng.choice(_REPLY)).format(x=_lower_first(caption)) + f". {aud}"
        out.append(conv(f"{row['id']}-t2m", [{"role": "user", "content": ask},
                                              {"role": "assistant", "content": reply}],
                        [], row, row, {"clip": row["id"], "template": "text-to-music"},
                        caption))
    if not edits:
        return out
    for row in rows:
        op = row.get("augmentation")
        original = by_id.get(row["id"][: -len(op) - 1]) if op else None
        if original is None:
            continue
        for src, dst, tag in ((original, row, "forward"), (row, original, "back")):
            ask = edit_instruction(src, dst, op, rng)
            if ask is None:
                continue
            reply = str(rng.choice(["Here is the edited version", "Here it is",
                                    "Done, here is the new version"])) + f". {aud}"
            out.append(conv(f"{row['id']}-edit-{tag}",
                            [{"role": "user", "content": f"<audio>\n{ask}"},
                             {"role": "assistant", "content": reply}],
                            [audio_relpath(src, meta_dir, out_dir)], dst, row,
                            {"clip": src["id"], "target_clip": dst["id"], "template": "edit",
                             "augmentation": op, "direction": tag}))
    return out


__all__ = ["SOURCE", "edit_instruction", "generation_conversations"]
