"""Labels -> captions and QA written by an instruct LLM (LLark / MU-LLaMA style augmentation).

Any text generator works: a callable ``generate(messages) -> str``. Two are provided: an
OpenAI-compatible HTTP endpoint (:func:`openai_generator`) and a local transformers model
(:func:`transformers_generator`). Every reply is parsed as JSON, validated against
:data:`OUTPUT_SCHEMA` (with ``jsonschema``), filtered for phrases that leak the annotation
process ("metadata", "the label", ...) and checked against the labels it was given (no wrong
key or mode). A bad reply is retried up to ``max_retries`` times; an item that never gets a
valid reply is counted and written to ``errors.jsonl``, and the run goes on. Every
conversation records the model's name in ``meta.model``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mullm.data.schema import Conversation, append_errors
from mullm.data.templates import audio_relpath, instrument_phrase, join_words, key_name
from mullm.utils.music import PITCH_NAMES, pitch_class

Generate = Callable[[list[dict]], str]
SOURCE = "mullm-llm"

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["caption", "qa"],
    "additionalProperties": False,
    "properties": {
        # pattern: at least one non-blank character (a reply of spaces is empty)
        "caption": {"type": "string", "minLength": 20, "maxLength": 1200, "pattern": "\\S"},
        "qa": {
            "type": "array", "minItems": 1, "maxItems": 6,
            "items": {
                "type": "object", "required": ["question", "answer"],
                "additionalProperties": False,
                "properties": {"question": {"type": "string", "minLength": 5,
                                            "pattern": "\\S"},
                               "answer": {"type": "string", "minLength": 1,
                                          "pattern": "\\S"}},
            },
        },
    },
}

# Phrases that reveal the text was written from annotations rather than by listening
# (LLark filtered its generated data the same way), or that refuse to answer.
BANNED_PHRASES = [
    "metadata", "meta data", "the label", "labels", "labelled as", "labeled as",
    "according to the tags", "the tags", "tagged", "annotation", "annotated",
    "the provided information", "based on the provided", "the given information",
    "the data provided", "json", "as an ai", "i cannot", "i am unable", "not possible to determine",
    "cannot determine", "no information", "is not provided", "not mentioned",
]

SYSTEM_PROMPT = (
    "You write training data for a music-understanding assistant. You are given facts about a "
    "short music clip. Write as if you had listened to it: never mention facts, tags, labels, "
    "metadata or where the information came from. Reply with one JSON object and nothing else: "
    '{"caption": "<2-4 sentence description>", "qa": [{"question": "...", "answer": "..."}, '
    "...]} with 2 to 4 question-answer pairs about what can be heard (key, tempo, metre, "
    "instruments, mood, style, a reason why the music suits some setting)."
)


def facts_text(row: dict) -> str:
    """The label facts handed to the LLM, one per line."""
    lines = []
    if row.get("key") and row.get("mode"):
        lines.append(f"key: {key_name(row)}")
    if row.get("tempo_bpm"):
        lines.append(f"tempo: {int(round(row['tempo_bpm']))} BPM ({row.get('tempo_class')})")
    if row.get("time_signature"):
        lines.append(f"time signature: {row['time_signature']} ({row.get('metre')} metre)")
    if row.get("instruments"):
        lines.append("instruments: " + join_words([instrument_phrase(i)
                                                   for i in row["instruments"]]))
    if row.get("style"):
        lines.append(f"style: {row['style']}")
    if row.get("duration_s"):
        lines.append(f"length: {row['duration_s']:.0f} seconds")
    return "\n".join(lines)


def build_messages(row: dict) -> list[dict]:
    """Chat messages asking the LLM for a caption and QA pairs about one clip."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "Facts about the clip:\n" + facts_text(row)}]


class InvalidOutput(ValueError):
    """A generator reply that is not usable; the message says why."""


@functools.cache
def _validator() -> Any:
    """A jsonschema validator for ``OUTPUT_SCHEMA`` (the schema itself checked once)."""
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(OUTPUT_SCHEMA)
    return Draft202012Validator(OUTPUT_SCHEMA)


def validate_output(obj: object) -> None:
    """Check a parsed reply against ``OUTPUT_SCHEMA`` with jsonschema.

    Raises:
        InvalidOutput: naming the JSON path, what is wrong and the schema keyword, e.g.
            ``$.qa: [] should be non-empty (minItems)``.
    """
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(obj))
    if error is not None:
        raise InvalidOutput(f"{error.json_path}: {error.message} ({error.validator})")


def _extract_json(text: str) -> object:
    # models often wrap JSON in prose or ``` fences: take the outermost {...}
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise InvalidOutput("no JSON object in the reply")
    try:
        return json.loads(text[start:end + 1])
    except json.JSONDecodeError as e:
        raise InvalidOutput(f"reply is not valid JSON ({e.msg})") from None


# the tonic letter must be a capital so "in a minor key" is not read as A minor
_KEY_RE = re.compile(r"\b([A-G])(#|b| sharp| flat)?[ -]((?i:major|minor))\b")


def _contradicts(text: str, row: dict) -> str | None:
    """A stated key or mode that disagrees with the labels, if any."""
    if not (row.get("key") and row.get("mode")):
        return None
    truth = key_name(row)
    for m in _KEY_RE.finditer(text):
        letter, acc, mode = m.group(1), (m.group(2) or "").strip(), m.group(3).lower()
        acc = {"sharp": "#", "flat": "b"}.get(acc, acc)
        name = letter + acc
        try:
            pc = pitch_class(name)
        except ValueError:
            continue
        said = f"{PITCH_NAMES[pc]} {mode}"
        if said != truth:
            return f"states {said!r} but the clip is in {truth}"
    return None


def parse_reply(text: str, row: dict) -> dict:
    """Parse and check one reply: schema, banned phrases, agreement with the labels."""
    obj = _extract_json(text)
    validate_output(obj)
    texts = [obj["caption"]] + [x for qa in obj["qa"] for x in (qa["question"], qa["answer"])]
    for t in texts:
        low = t.lower()
        for p in BANNED_PHRASES:
            if p in low:
                raise InvalidOutput(f"banned phrase {p!r} in {t[:80]!r}")
        bad = _contradicts(t, row)
        if bad:
            raise InvalidOutput(f"contradicts the labels: {bad}")
    return obj


@dataclass
class LLMStats:
    """Counts of one LLM augmentation run."""

    items: int = 0
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    invalid_replies: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def llm_conversations(rows: Sequence[dict], generate: Generate, *, model_name: str,
                      meta_dir: str | os.PathLike, out_dir: str | os.PathLike,
                      max_retries: int = 2, errors_path: str | os.PathLike | None = None,
                      ) -> tuple[list[Conversation], LLMStats]:
    """One caption plus the QA pairs per row, from ``generate``; bad items are recorded."""
    meta_dir, out_dir = Path(meta_dir), Path(out_dir)
    stats = LLMStats()
    out: list[Conversation] = []
    for row in rows:
        stats.items += 1
        messages = build_messages(row)
        errors: list[str] = []
        parsed = None
        for _attempt in range(max_retries + 1):
            stats.attempts += 1
            try:
                parsed = parse_reply(generate(messages), row)
                break
            except InvalidOutput as e:
                stats.invalid_replies += 1
                reason = str(e).split(":")[0] if ":" in str(e) else str(e)
                stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
                errors.append(f"invalid reply: {e}")
            except Exception as e:  # noqa: BLE001 - a failing call is recorded, the run goes on
                errors.append(f"{type(e).__name__}: {e}")
        if parsed is None:
            stats.failed += 1
            if errors_path is not None:
                append_errors(errors_path, [{"input": row.get("id"), "error": "; ".join(errors),
                                             "model": model_name}])
            continue
        stats.ok += 1
        audio = [audio_relpath(row, meta_dir, out_dir)]
        meta = {"clip": row["id"], "model": model_name, "attempts": len(errors) + 1}
        out.append(Conversation(
            id=f"{row['id']}-llm-caption", task="caption", audio=audio, split=row.get("split"),
            source=SOURCE, meta=meta, base_dir=out_dir,
            turns=[{"role": "user", "content": "<audio>\nDescribe this music."},
                   {"role": "assistant", "content": parsed["caption"].strip()}]))
        for j, qa in enumerate(parsed["qa"]):
            out.append(Conversation(
                id=f"{row['id']}-llm-qa-{j}", task="qa", audio=audio, split=row.get("split"),
                source=SOURCE, meta=dict(meta), base_dir=out_dir,
                turns=[{"role": "user", "content": "<audio>\n" + qa["question"].strip()},
                       {"role": "assistant", "content": qa["answer"].strip()}]))
    return out, stats


def openai_generator(base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                     temperature: float = 0.7, max_tokens: int = 600, timeout_s: float = 120.0,
                     retries: int = 2) -> Generate:
    """A generator calling an OpenAI-compatible ``/chat/completions`` endpoint (urllib only)."""
    url = base_url.rstrip("/") + "/chat/completions"
    key = os.environ.get(api_key_env)

    def generate(messages: list[dict]) -> str:
        body = json.dumps({"model": model, "messages": messages, "temperature": temperature,
                           "max_tokens": max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last: Exception | None = None
        for i in range(retries + 1):
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as r:
                    data = json.loads(r.read().decode())
                return data["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as e:
                last = e
                if e.code not in (429, 500, 502, 503, 504):
                    raise RuntimeError(f"{url}: HTTP {e.code}: {e.read()[:300]!r}") from None
            except (urllib.error.URLError, TimeoutError) as e:
                last = e
            time.sleep(min(30.0, 2.0 ** i))
        raise RuntimeError(f"{url}: no reply after {retries + 1} tries ({last})")

    return generate


def transformers_generator(model, tokenizer=None, *, max_new_tokens: int = 400,  # noqa: ANN001
                           do_sample: bool = False, temperature: float = 0.7) -> Generate:
    """A generator running a local transformers causal LM (objects, or a folder path)."""
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        model = AutoModelForCausalLM.from_pretrained(model)
    if tokenizer is None:
        raise ValueError("pass the tokenizer with a model object")
    model.eval()

    def generate(messages: list[dict]) -> str:
        import torch

        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)
        else:  # base models: plain text prompt
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
            ids = tokenizer(text, return_tensors="pt")
        kw = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
        if do_sample:
            kw["temperature"] = temperature
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
            tokenizer.eos_token_id
        with torch.no_grad():
            out = model.generate(**ids, pad_token_id=pad, **kw)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    return generate
