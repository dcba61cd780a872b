"""Multiple-choice evaluation with audio-ablation controls and two scorers side by side.

Each item is asked under every *condition* (``CONDITIONS``; all four by default):

* ``audio``: the item's own clip (the real run);
* ``noise``: Gaussian noise with the clip's RMS loudness and length (``closed.noise_like``);
* ``other``: another item's clip (a seeded derangement over the items' distinct clips);
* ``none``: the question with no audio at all (no ``<audio>`` marker, no media).

and by every *scorer* (``SCORERS``):

* ``logprob``: the option whose text has the highest log-probability as the reply
  (``scoring.score_options``; no parsing, so it measures what the model knows even when it
  does not follow the answer format);
* ``generate``: a greedy reply to the pinned prompt, parsed (``prompts.parse_answer``: a
  letter first, then the option text); unparsable replies count as wrong and are counted,
  giving the instruction-following rate.

Options are shown in a seeded order (``prompts.option_order``), the same for every condition
and scorer of an item. Accuracy above the noise / other-clip / no-audio controls is what the
model takes from the audio; at their level the answers come from the question alone.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from mullm.eval.engine import EvalTask, EvalUnit
from mullm.eval.mcq_items import MCQItem
from mullm.eval.prompts import PROMPTS, PromptSpec, option_order, parse_answer

if TYPE_CHECKING:
    from mullm.model import MusicLLM

CONDITIONS = ("audio", "noise", "other", "none")
SCORERS = ("logprob", "generate")
# A model within this many accuracy points of its noise control is flagged in the report's
# first line: at that distance the audio is not what its answers come from.
NOISE_MARGIN_POINTS = 3.0


def item_seed(seed: int, key: str) -> int:
    """A 32-bit seed for one item (its noise), fixed by the run seed and the item key."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "big")


def other_clips(items: list[MCQItem], seed: int) -> dict[str, list[str]]:
    """For each item id, the other clips to use for the ``other`` condition, in order of
    preference (the first that loads is used): a seeded derangement of the distinct clips
    first, then every other clip. Empty when all items share one clip."""
    clips = sorted({it.audio for it in items})
    rng = np.random.default_rng(seed)
    order = [clips[i] for i in rng.permutation(len(clips))]
    nxt = {c: order[(k + 1) % len(order)] for k, c in enumerate(order)}
    out = {}
    for it in items:
        if len(clips) < 2:
            out[it.id] = []
            continue
        first = nxt[it.audio]
        start = order.index(first)
        out[it.id] = [c for c in order[start:] + order[:start] if c != it.audio]
    return out


class MCQTask(EvalTask):
    """Multiple-choice items under the ablation conditions, scored both ways.

    Args:
        model: the model (in eval mode).
        items: the items (``mcq_items.read_mcq``), used for the ``other`` clips too.
        prompt: the pinned prompt (``prompts.PROMPTS``), or ``"plain"``: the question as
            given, options not shown (for questions that list their answers themselves,
            like the quickstart's closed questions).
        conditions, scorers: subsets of ``CONDITIONS`` and ``SCORERS``.
        seed: option order, noise and the ``other`` derangement.
        max_new_tokens: generation budget (default: the prompt's).
    """

    name = "mcq"

    def __init__(self, model: MusicLLM, items: list[MCQItem], prompt: str = "mullm",
                 conditions: tuple[str, ...] = CONDITIONS, scorers: tuple[str, ...] = SCORERS,
                 seed: int = 0, max_new_tokens: int | None = None) -> None:
        bad = [c for c in conditions if c not in CONDITIONS]
        bad += [s for s in scorers if s not in SCORERS]
        if bad or not conditions or not scorers:
            raise ValueError(f"conditions {list(conditions)} / scorers {list(scorers)}: use "
                             f"{list(CONDITIONS)} and {list(SCORERS)} (at least one each)")
        if prompt != "plain" and prompt not in PROMPTS:
            raise ValueError(f"prompt {prompt!r}: choose 'plain' or one of {sorted(PROMPTS)}")
        self.model, self.seed = model, seed
        self.spec: PromptSpec | None = PROMPTS.get(prompt)
        self.prompt_name = prompt
        self.conditions, self.scorers = tuple(conditions), tuple(scorers)
        self.max_new_tokens = max_new_tokens or (self.spec.max_new_tokens if self.spec else 16)
        self.others = other_clips(items, seed) if "other" in conditions else {}
        self._clips: dict[str, Any] = {}  # the last few decoded clips, by path

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        """What decides the answers (the resumable job refuses to mix other settings)."""
        return {"task": self.name, "prompt": self.spec.record() if self.spec else
                {"name": "plain", "template": "{question}", "source": "the item's question "
                 "as given; options not shown"}, "conditions": list(self.conditions),
                "scorers": list(self.scorers), "seed": self.seed,
                "max_new_tokens": self.max_new_tokens}

    # ------------------------------------------------------------------ units
    def item_id(self, item: MCQItem) -> str:
        return item.id

    def _load(self, path: str) -> Any:
        if path not in self._clips:
            if len(self._clips) >= 64:  # items of one clip come together; keep memory flat
                self._clips.pop(next(iter(self._clips)))
            self._clips[path] = self.model.processor.load_item("audio", path)
        return self._clips[path]

    def _other(self, item: MCQItem) -> tuple[str | None, Any, list[str]]:
        """(path, clip, clips that failed to load) of the first loadable other clip."""
        failed = []
        for path in self.others.get(item.id, []):
            try:
                return path, self._load(path), failed
            except (ValueError, OSError) as exc:
                failed.append(f"{path}: {exc}")
        return None, None, failed

    def text(self, item: MCQItem, order: list[int]) -> str:
        """The user text of ``item`` with its options in ``order``."""
        if self.spec is None:
            return item.question
        return self.spec.render(item.question, [item.choices[i] for i in order])

    def units(self, item: MCQItem) -> tuple[dict[str, Any], list[EvalUnit]]:
        from mullm.eval.closed import noise_like

        wave = self._load(item.audio)  # a missing or broken clip fails the item here
        order = option_order(item.id, len(item.choices), self.seed)
        text = self.text(item, order)
        options = [item.choices[i] for i in order]
        state: dict[str, Any] = {"order": order, "text": text, "skipped": {}}
        media: dict[str, Any] = {"audio": wave,
                                 "noise": noise_like(wave, item_seed(self.seed, item.id))}
        if "other" in self.conditions:
            path, clip, failed = self._other(item)
            state["other_audio"] = path
            if clip is None:
                state["skipped"]["other"] = ("no other clip could be loaded: " +
                                             "; ".join(failed) if failed else
                                             "every item has the same clip")
            media["other"] = clip
        units = []
        for cond in self.conditions:
            if cond in state["skipped"]:
                continue
            if cond == "none":
                prompt = ([{"role": "user", "content": text}], {})
            else:
                prompt = ([{"role": "user", "content": "<audio>\n" + text}],
                          {"audio": [media[cond]]})
            for scorer in self.scorers:
                units.append(EvalUnit(scorer, f"{cond}/{scorer}", (prompt, options)))
        return state, units

    def run(self, kind: str, units: list[EvalUnit]) -> list[Any]:
        from mullm.eval.scoring import generate_replies, score_options

        prompts = [u.data[0] for u in units]
        if kind == "logprob":
            return score_options(self.model, prompts, [u.data[1] for u in units])
        if kind == "generate":
            return generate_replies(self.model, prompts, self.max_new_tokens)
        raise ValueError(f"unknown unit kind {kind!r}")

    # ------------------------------------------------------------------ records
    def record(self, item: MCQItem, state: dict[str, Any], results: dict[str, Any]
               ) -> dict[str, Any]:
        order = state["order"]
        options = [item.choices[i] for i in order]
        out: dict[str, Any] = {}
        for key, value in results.items():
            cond, scorer = key.split("/")
            if scorer == "logprob":
                entry = {"scores": [round(float(s), 5) for s in value],
                         "choice": int(np.argmax(value))}
            else:
                choice, how = parse_answer(value, options)
                entry = {"reply": value, "choice": choice, "parsed": how}
            entry["correct"] = entry["choice"] == order.index(item.answer)
            out.setdefault(cond, {})[scorer] = entry
        return {"id": item.id, "task": self.name, "source": item.source, "audio": item.audio,
                "other_audio": state.get("other_audio"), "question": item.question,
                "prompt": state["text"], "options": options, "answer": order.index(item.answer),
                "answer_text": item.choices[item.answer], "dimensions": list(item.dimensions),
                "results": out, "skipped": state["skipped"], "error": None}

    def error_record(self, item: MCQItem, error: str) -> dict[str, Any]:
        return {"id": item.id, "task": self.name, "source": item.source, "audio": item.audio,
                "question": item.question, "dimensions": list(item.dimensions),
                "answer_text": item.choices[item.answer], "error": error}


# ---------------------------------------------------------------------- summary
def _rates(recs: list[dict[str, Any]], conditions: list[str], scorers: list[str]
           ) -> dict[str, Any]:
    """Accuracy per condition x scorer over ``recs`` (successful records), with the
    instruction-following rate of the generate scorer and both chance rates."""
    n = len(recs)
    answers = Counter(r["answer_text"] for r in recs)
    out: dict[str, Any] = {
        "n": n,
        "chance_uniform": float(np.mean([1 / len(r["options"]) for r in recs])) if n else None,
        "majority_rate": answers.most_common(1)[0][1] / n if n else None,
        "majority_answer": answers.most_common(1)[0][0] if n else None,
    }
    for cond in conditions:
        for scorer in scorers:
            done = [r["results"][cond][scorer] for r in recs
                    if scorer in r["results"].get(cond, {})]
            cell: dict[str, Any] = {"n": len(done), "accuracy": (
                sum(e["correct"] for e in done) / len(done) if done else None)}
            if scorer == "generate":
                parsed = sum(e["choice"] is not None for e in done)
                cell["unparsable"] = len(done) - parsed
                cell["instruction_following"] = parsed / len(done) if done else None
            out.setdefault(cond, {})[scorer] = cell
    return out


def noise_verdict(overall: dict[str, Any], scorers: list[str],
                  margin_points: float = NOISE_MARGIN_POINTS) -> str:
    """The report's first line: whether the model is within ``margin_points`` accuracy
    points of its noise control (per scorer)."""
    if "noise" not in overall:
        return "No noise control was run: whether the model used the audio is not measured."
    parts, close = [], []
    for s in scorers:
        real, noise = overall["audio"][s]["accuracy"], overall["noise"][s]["accuracy"]
        if real is None or noise is None:
            continue
        gap = 100 * (real - noise)
        parts.append(f"{s}: {100 * real:.1f} % with audio vs {100 * noise:.1f} % with noise "
                     f"({gap:+.1f} points)")
        if gap < margin_points:
            close.append(s)
    if not parts:
        return "No item was scored: there is nothing to compare with the noise control."
    if close:
        return (f"WARNING: the model is within {margin_points:g} points of its noise control "
                f"({'; '.join(parts)}): its answers do not come from the audio.")
    return f"The model scores above its noise control ({'; '.join(parts)})."


def summarize_mcq(records: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """The report of a multiple-choice run: verdict line, overall and per-dimension tables,
    error count and list (errors are excluded from every accuracy)."""
    ok = [r for r in records if not r.get("error")]
    errors = [{"id": r["id"], "error": r["error"]} for r in records if r.get("error")]
    conditions, scorers = settings["conditions"], settings["scorers"]
    overall = _rates(ok, conditions, scorers)
    dims = sorted({d for r in ok for d in r["dimensions"]})
    per_dim = {d: _rates([r for r in ok if d in r["dimensions"]], conditions, scorers)
               for d in dims}
    skipped = Counter(c for r in ok for c in r.get("skipped", {}))
    return {"task": "mcq", "verdict": noise_verdict(overall, scorers), "settings": settings,
            "items": len(records), "scored": len(ok), "errors": len(errors),
            "error_items": errors, "skipped_conditions": dict(skipped), "overall": overall,
            "dimensions": per_dim}


__all__ = ["CONDITIONS", "MCQTask", "NOISE_MARGIN_POINTS", "SCORERS", "noise_verdict",
           "other_clips", "summarize_mcq"]
