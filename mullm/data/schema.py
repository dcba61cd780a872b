"""The conversation schema (INTERFACES.md, "Conversations"): dataclass, validation, JSONL I/O.

One JSON object per line::

    {"id": "clip00001-qa-0", "audio": ["audio/clip00001.wav"], "images": [],
     "turns": [{"role": "user", "content": "<audio>\\nWhat key is this in?"},
               {"role": "assistant", "content": "F# minor."}],
     "task": "qa", "split": "train", "source": "mullm-templates"}

Multiple choice adds ``choices`` (list of strings), ``answer`` (index) and ``dimensions``.
``meta`` (an object) is optional provenance that training ignores (the model that wrote an
LLM-augmented item, the attribute a template asked about, ...). A ``generate`` item (music
output) may carry ``target``: ``{"caption": "...", "audio": "path"}``, the music its last reply
stands for; the caption is what the output projector is trained to match (through the music
decoder's own text encoder), the optional audio the reference clip (an edit's result, or the
clip the caption describes). Any other field is an error, so a typo never silently drops data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mullm.errors import DataError
from mullm.utils.atomic import atomic_open
from mullm.utils.jsonl import iter_jsonl, json_line

log = logging.getLogger(__name__)

TASKS = ("caption", "qa", "mir", "mcq", "chat", "generate")
ROLES = ("system", "user", "assistant")
AUDIO_MARKER = "<audio>"
IMAGE_MARKER = "<image>"
FIELDS = ("id", "audio", "images", "turns", "task", "split", "source", "choices", "answer",
          "dimensions", "meta", "target")
REQUIRED = ("id", "turns", "task")


@dataclass
class Conversation:
    """One training or evaluation example; paths are as written (relative to ``base_dir``)."""

    id: str
    turns: list[dict[str, str]]
    task: str
    audio: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    split: str | None = None
    source: str | None = None
    choices: list[str] | None = None
    answer: int | None = None
    dimensions: list[str] | None = None
    meta: dict | None = None
    target: dict | None = None
    base_dir: Path | None = field(default=None, compare=False, repr=False)

    def resolve(self, p: str) -> Path:
        """A media path resolved against the JSONL folder (absolute paths unchanged)."""
        q = Path(p)
        return q if q.is_absolute() or self.base_dir is None else self.base_dir / q

    def audio_paths(self) -> list[Path]:
        """Absolute-or-resolved paths of the audio items, in marker order."""
        return [self.resolve(p) for p in self.audio]

    def image_paths(self) -> list[Path]:
        """Resolved paths of the image items, in marker order."""
        return [self.resolve(p) for p in self.images]

    def to_dict(self) -> dict:
        """The JSON object (optional fields left out when unset)."""
        d: dict = {"id": self.id, "audio": list(self.audio), "images": list(self.images),
                   "turns": [dict(t) for t in self.turns], "task": self.task,
                   "split": self.split, "source": self.source}
        for k in ("choices", "answer", "dimensions", "meta", "target"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


def _fail(where: str, msg: str) -> DataError:
    return DataError(f"{where}: {msg}")


def validate_conversation(obj: object, *, base_dir: str | os.PathLike | None = None,
                          where: str = "<conversation>", check_files: bool = True,
                          audio_exists: Callable[[Path], bool] | None = None
                          ) -> Conversation:
    """Check one decoded JSON object against the schema; raise DataError naming ``where``.

    With ``check_files`` every media file must exist; ``audio_exists`` replaces the check
    for audio (a feature cache serves audio files that are gone).
    """
    if not isinstance(obj, dict):
        raise _fail(where, f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown}; allowed: {list(FIELDS)}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise _fail(where, f"missing field(s) {missing}")
    cid = obj["id"]
    if not isinstance(cid, str) or not cid:
        raise _fail(where, f"id must be a non-empty string, got {cid!r}")
    where = f"{where} (id {cid!r})"
    task = obj["task"]
    if task not in TASKS:
        raise _fail(where, f"task {task!r} is not one of {list(TASKS)}")
    media = {}
    for k in ("audio", "images"):
        v = obj.get(k, [])
        if v is None:
            v = []
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            raise _fail(where, f"{k} must be a list of paths, got {v!r}")
        media[k] = v
    turns = obj["turns"]
    if not isinstance(turns, list) or not turns:
        raise _fail(where, "turns must be a non-empty list of {role, content}")
    expect = "user"
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or set(t) != {"role", "content"}:
            raise _fail(where, f"turn {i} must be an object with exactly role and content, "
                        f"got {t!r}")
        role, content = t["role"], t["content"]
        if role not in ROLES:
            raise _fail(where, f"turn {i} role {role!r} is not one of {list(ROLES)}")
        if not isinstance(content, str):
            raise _fail(where, f"turn {i} content must be a string, got {type(content).__name__}")
        if role == "system":
            if i != 0:
                raise _fail(where, f"turn {i}: a system turn may only come first")
            continue
        if role != expect:
            raise _fail(where, f"turn {i} is {role!r} but roles must alternate user, "
                        f"assistant, ... (expected {expect!r})")
        expect = "assistant" if role == "user" else "user"
    if not any(t["role"] == "assistant" for t in turns):
        raise _fail(where, "no assistant turn: nothing to learn or score")
    text = "".join(t["content"] for t in turns)
    for marker, k in ((AUDIO_MARKER, "audio"), (IMAGE_MARKER, "images")):
        count = text.count(marker)
        if count and count != len(media[k]):
            raise _fail(where, f"{count} {marker} marker(s) but {len(media[k])} {k} item(s); "
                        f"use one marker per item, or none to put all {k} before the first "
                        "user turn")
    choices, answer = obj.get("choices"), obj.get("answer")
    if task == "mcq" and choices is None:
        raise _fail(where, "task 'mcq' needs choices and answer")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2 or not all(
                isinstance(c, str) for c in choices):
            raise _fail(where, f"choices must be a list of >= 2 strings, got {choices!r}")
        if not isinstance(answer, int) or isinstance(answer, bool) or not (
                0 <= answer < len(choices)):
            raise _fail(where, f"answer must be an index into the {len(choices)} choices, "
                        f"got {answer!r}")
    elif answer is not None:
        raise _fail(where, "answer given without choices")
    dims = obj.get("dimensions")
    if dims is not None and (not isinstance(dims, list) or not all(isinstance(d, str)
                                                                 for d in dims)):
        raise _fail(where, f"dimensions must be a list of strings, got {dims!r}")
    for k in ("split", "source"):
        if obj.get(k) is not None and not isinstance(obj[k], str):
            raise _fail(where, f"{k} must be a string, got {obj[k]!r}")
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise _fail(where, f"meta must be an object, got {meta!r}")
    target = obj.get("target")
    if target is not None:
        if task != "generate":
            raise _fail(where, f"target is only for task 'generate' (music output), not {task!r}")
        if not isinstance(target, dict) or not set(target) <= {"caption", "audio"} or not (
                isinstance(target.get("caption"), str) and target["caption"].strip()):
            raise _fail(where, "target must be {\"caption\": non-empty text, \"audio\": optional "
                        f"path}}, got {target!r}")
        if "audio" in target and not (isinstance(target["audio"], str) and target["audio"]):
            raise _fail(where, f"target.audio must be a path, got {target['audio']!r}")
    conv = Conversation(id=cid, turns=[dict(t) for t in turns], task=task, audio=media["audio"],
                        images=media["images"], split=obj.get("split"),
                        source=obj.get("source"), choices=choices, answer=answer,
                        dimensions=dims, meta=meta, target=target,
                        base_dir=Path(base_dir) if base_dir is not None else None)
    if check_files:
        exists = audio_exists or Path.is_file
        for p in conv.audio_paths():
            if not exists(p):
                raise _fail(where, f"media file {p} does not exist")
        extra = [conv.resolve(target["audio"])] if target and "audio" in target else []
        for p in conv.image_paths() + extra:
            if not p.is_file():
                raise _fail(where, f"media file {p} does not exist")
    return conv


def read_conversations(path: str | os.PathLike, skip_bad: bool = False,
                       errors_path: str | os.PathLike | None = None, *,
                       check_files: bool = True,
                       audio_exists: Callable[[Path], bool] | None = None
                       ) -> list[Conversation]:
    """Read a conversation JSONL; fail on the first bad line (file:line) unless ``skip_bad``.

    With ``skip_bad`` each bad line is appended to ``errors_path`` as
    ``{"input": "FILE:LINE", "error": ...}`` (logged when no path is given) and reading goes on.
    ``audio_exists`` replaces the audio-file check (see ``validate_conversation``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conversation file {path} does not exist")
    out: list[Conversation] = []
    seen: dict[str, int] = {}
    bad: list[dict] = []
    for line in iter_jsonl(path):
        try:
            conv = validate_conversation(line.value, base_dir=path.parent, where=line.where,
                                         check_files=check_files, audio_exists=audio_exists)
            if conv.id in seen:
                raise _fail(line.where, f"duplicate id {conv.id!r} (first on line "
                            f"{seen[conv.id]})")
        except DataError as e:
            if not skip_bad:
                raise
            bad.append({"input": line.where, "error": str(e)})
            continue
        seen[conv.id] = line.number
        out.append(conv)
    if bad:
        if errors_path is not None:
            append_errors(errors_path, bad)
        else:
            for b in bad:
                log.warning("skipped %s", b["error"])
    return out


def append_errors(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append ``{"input", "error"}`` records to an errors.jsonl (created if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json_line(r))


def write_conversations(path: str | os.PathLike, convs: Iterable[Conversation | dict]) -> int:
    """Write conversations as JSONL (atomically); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_open(path) as f:
        for c in convs:
            d = c.to_dict() if isinstance(c, Conversation) else c
            f.write(json_line(d))
            n += 1
    return n
