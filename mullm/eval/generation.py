"""Generation tasks: captioning, free question answering and LLark-style MIR questions.

Every item is a prompt about one clip with its reference(s); the model's greedy reply is
generated in batches (``scoring.generate_replies``) under each condition asked for (the
clip itself by default; ``noise`` / ``other`` / ``none`` as in ``mullm.eval.mcq``) and
scored afterwards over the whole set:

* ``caption`` and ``qa``: ``caption_metrics.caption_metrics`` (corpus BLEU, METEOR,
  ROUGE-L, CIDEr, SPICE when it can run, BERTScore when its model is local, sentence-
  embedding similarity); items come from a conversation JSONL (the last assistant reply is
  the reference; conversations with the same clip and prompt pool their references);
* ``mir``: ``mir_tasks`` (key MIREX score, tempo Acc1/Acc2, style and instrument labels);
  items come from a ``metadata.jsonl`` collection with exact labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mullm.errors import DataError
from mullm.eval.engine import EvalTask, EvalUnit
from mullm.eval.mcq import CONDITIONS, other_clips

if TYPE_CHECKING:
    from mullm.model import MusicLLM


def read_generation_items(path: str | os.PathLike, task: str, *, split: str | None = None,
                          mir_tasks: tuple[str, ...] | None = None,
                          max_items: int | None = None) -> list[dict[str, Any]]:
    """Items of a caption / qa (conversation JSONL) or mir (``metadata.jsonl``) task:
    ``{"id", "audio" (resolved path), "messages", "references" | "truth", ...}``.

    Raises:
        DataError: a malformed file (``file:line`` and the field) or no items.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{task} data {path} does not exist")
    if task == "mir":
        from mullm.data.corpus import read_metadata
        from mullm.eval.mir_tasks import MIR_QUESTIONS, mir_items

        rows = [r for r in read_metadata(path, check_audio=False)
                if split is None or r.get("split") == split]
        items = []
        for it in mir_items(rows, mir_tasks or tuple(MIR_QUESTIONS)):
            audio = it["audio"] if os.path.isabs(it["audio"]) else str(path.parent /
                                                                       it["audio"])
            items.append({**it, "audio": audio,
                          "messages": [{"role": "user", "content": it["question"]}]})
    else:
        from mullm.utils.jsonl import iter_jsonl

        groups: dict[tuple, dict[str, Any]] = {}
        for line in iter_jsonl(path):
            row = line.object
            if row.get("task") not in (task, None) or (split and row.get("split") != split):
                continue
            turns, audio = row.get("turns"), row.get("audio")
            if not isinstance(turns, list) or not turns or turns[-1].get("role") != \
                    "assistant" or not isinstance(turns[-1].get("content"), str):
                raise DataError(f"{line.where}: field 'turns' must end with an assistant "
                                "reply (the reference)")
            if not isinstance(audio, list) or len(audio) != 1:
                raise DataError(f"{line.where}: field 'audio' must list exactly one clip")
            clip = audio[0] if os.path.isabs(audio[0]) else str(path.parent / audio[0])
            messages = [{"role": t["role"], "content": t["content"]} for t in turns[:-1]]
            if not any("<audio>" in t["content"] for t in messages):
                messages[0] = {**messages[0], "content": "<audio>\n" + messages[0]["content"]}
            key = (clip, repr(messages))
            g = groups.setdefault(key, {"id": str(row.get("id", line.where)), "audio": clip,
                                        "messages": messages, "references": []})
            g["references"].append(turns[-1]["content"])
        items = list(groups.values())
    if max_items is not None:
        items = items[:max_items]
    if not items:
        raise DataError(f"{path}: no {task} items" + (f" in split {split!r}" if split else ""))
    return items


class GenerationTask(EvalTask):
    """Greedy replies to caption / qa / mir items under the given conditions."""

    def __init__(self, model: MusicLLM, items: list[dict[str, Any]], task: str,
                 conditions: tuple[str, ...] = ("audio",), max_new_tokens: int = 64,
                 seed: int = 0) -> None:
        if task not in ("caption", "qa", "mir"):
            raise ValueError(f"task {task!r}: a generation task is caption, qa or mir")
        bad = [c for c in conditions if c not in CONDITIONS]
        if bad or not conditions:
            raise ValueError(f"conditions {list(conditions)}: choose from {list(CONDITIONS)}")
        self.model, self.name, self.seed = model, task, seed
        self.conditions, self.max_new_tokens = tuple(conditions), max_new_tokens
        from mullm.eval.mcq_items import MCQItem

        # other_clips needs only ids and clips
        stand_ins = [MCQItem(i["id"], i["audio"], "", ("", " "), 0) for i in items]
        self.others = other_clips(stand_ins, seed) if "other" in conditions else {}
        self._clips: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        """What decides the replies."""
        from mullm.eval.mir_tasks import MIR_QUESTIONS

        out = {"task": self.name, "conditions": list(self.conditions), "seed": self.seed,
               "max_new_tokens": self.max_new_tokens, "decoding": "greedy"}
        if self.name == "mir":
            out["questions"] = dict(MIR_QUESTIONS)
        return out

    def item_id(self, item: dict[str, Any]) -> str:
        return item["id"]

    def _load(self, path: str) -> Any:
        if path not in self._clips:
            if len(self._clips) >= 64:
                self._clips.pop(next(iter(self._clips)))
            self._clips[path] = self.model.processor.load_item("audio", path)
        return self._clips[path]

    def units(self, item: dict[str, Any]) -> tuple[dict[str, Any], list[EvalUnit]]:
        from mullm.eval.closed import noise_like
        from mullm.eval.mcq import item_seed

        wave = self._load(item["audio"])
        state: dict[str, Any] = {"skipped": {}}
        media = {"audio": wave, "noise": noise_like(wave, item_seed(self.seed, item["id"]))}
        if "other" in self.conditions:
            for path in self.others.get(item["id"], []):
                try:
                    media["other"], state["other_audio"] = self._load(path), path
                    break
                except (ValueError, OSError):
                    continue
            else:
                state["skipped"]["other"] = "no other clip could be loaded"
        units = []
        for cond in self.conditions:
            if cond in state["skipped"]:
                continue
            msgs = item["messages"]
            if cond == "none":
                msgs = [{**m, "content": m["content"].replace("<audio>", "").strip()}
                        for m in msgs]
                prompt = (msgs, {})
            else:
                if not any("<audio>" in m["content"] for m in msgs):
                    msgs = [{**msgs[0], "content": "<audio>\n" + msgs[0]["content"]}] + msgs[1:]
                prompt = (msgs, {"audio": [media[cond]]})
            units.append(EvalUnit("generate", cond, prompt))
        return state, units

    def run(self, kind: str, units: list[EvalUnit]) -> list[Any]:
        from mullm.eval.scoring import generate_replies

        return generate_replies(self.model, [u.data for u in units], self.max_new_tokens)

    def record(self, item: dict[str, Any], state: dict[str, Any], results: dict[str, Any]
               ) -> dict[str, Any]:
        out: dict[str, Any] = {"id": item["id"], "task": self.name, "audio": item["audio"],
                               "prompt": item["messages"][-1]["content"], "error": None,
                               "skipped": state["skipped"]}
        if self.name == "mir":
            from mullm.eval.mir_tasks import score_answer

            out.update(mir_task=item["task"], truth=item["truth"], results={
                c: {"reply": r, "scored": score_answer(item["task"], item["truth"], r)}
                for c, r in results.items()})
        else:
            out.update(references=item["references"],
                       results={c: {"reply": r} for c, r in results.items()})
        return out

    def error_record(self, item: dict[str, Any], error: str) -> dict[str, Any]:
        rec = {"id": item["id"], "task": self.name, "audio": item["audio"], "error": error}
        if self.name == "mir":
            rec["mir_task"] = item["task"]
        return rec


def summarize_generation(records: list[dict[str, Any]], settings: dict[str, Any],
                         legacy: tuple[str, ...] = (), bertscore_model: str | None = None
                         ) -> dict[str, Any]:
    """The report of a caption / qa / mir run: metrics per condition (errors excluded and
    counted)."""
    ok = [r for r in records if not r.get("error")]
    errors = [{"id": r["id"], "error": r["error"]} for r in records if r.get("error")]
    out: dict[str, Any] = {"task": settings["task"], "settings": settings,
                           "items": len(records), "scored": len(ok), "errors": len(errors),
                           "error_items": errors, "conditions": {}}
    for cond in settings["conditions"]:
        rs = [r for r in ok if cond in r.get("results", {})]
        if not rs:
            continue
        if settings["task"] == "mir":
            from mullm.eval.mir_tasks import FAMILY_WORDS, STYLE_WORDS, summarize_mir

            out["conditions"][cond] = summarize_mir(rs, cond)
            out["label_mappings"] = {"style": STYLE_WORDS, "instruments": FAMILY_WORDS}
        else:
            from mullm.eval.caption_metrics import BERTSCORE_DEFAULT, caption_metrics

            cands = {r["id"]: r["results"][cond]["reply"] for r in rs}
            refs = {r["id"]: r["references"] for r in rs}
            out["conditions"][cond] = caption_metrics(
                cands, refs, legacy=legacy, bertscore_model=bertscore_model or
                BERTSCORE_DEFAULT)
    return out


__all__ = ["GenerationTask", "read_generation_items", "summarize_generation"]
