"""Multiple-choice benchmarks in their published formats -> checked ``MCQItem`` lists.

Formats (``MCQ_FORMATS``; ``read_mcq(path)`` detects the format from the file unless told):

* ``muchomusic``: the released MuChoMusic CSV (Weck et al., ISMIR 2024; zenodo 12709974,
  read as ``muchomusic_eval/utils.py`` reads it): ``question``, ``correct_answer``,
  ``distractor_{1,2,3}_answer``, ``dataset``, ``dataset_identifier``, ``genre``,
  ``music_reasoning`` and ``music_knowledge`` (Python list literals; they are the
  dimensions), plus ``audio`` (or ``audio_path``), which the released file lacks: the audio
  path is ``--audio-template`` formatted with the row (default ``{audio}``; for the released
  file e.g. ``{dataset}/audio/{dataset_identifier}.wav``).
* ``rulistening``: RUListening (Zang et al., 2025) rows, a CSV or JSON of ``question``,
  ``answer`` (or ``correct_answer``), ``distractors`` (a list, or ``distractor_{1..N}``
  columns) and the audio as above. Its protocol (the dataset card): 4-fold, each fold drops
  one distractor and shuffles the rest; ``expand_folds`` makes those items.
* ``mmau``: the MMAU JSON list (``mmau-test-mini.json``): ``id``, ``audio_id`` (path),
  ``question``, ``choices``, ``answer`` (the text of the right choice), ``task``,
  ``category``, ``sub-category``, ``difficulty``.
* ``mmar``: the MMAR JSON list (``MMAR-meta.json``): ``id``, ``audio_path``, ``question``,
  ``choices``, ``answer`` (text), ``modality``, ``category``, ``sub-category``.
* ``conversations``: mullm's conversation JSONL with ``task: mcq`` (``choices``, ``answer``
  index, ``dimensions``; INTERFACES.md, "Conversations").

Every row is checked before any model loads; an error names the file, the line and the
missing or wrong field. An item with fewer than two options, or whose answer is not among
its options, is refused by its id.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mullm.errors import DataError

MCQ_FORMATS = ("muchomusic", "rulistening", "mmau", "mmar", "conversations")


@dataclass(frozen=True)
class MCQItem:
    """One multiple-choice question about one clip, in the benchmark's own option order.

    ``answer`` indexes ``choices``; ``dimensions`` are the per-dimension breakdown keys
    (MuChoMusic's knowledge and reasoning dimensions, MMAU/MMAR category and sub-category).
    ``where`` is ``file:line`` of the row, for messages.
    """

    id: str
    audio: str
    question: str
    choices: tuple[str, ...]
    answer: int
    dimensions: tuple[str, ...] = ()
    source: str = ""
    where: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, row) of a CSV (header first), a JSON array / object list, or JSON Lines."""
    from mullm.data.converters import iter_csv_records, iter_json_records

    if path.suffix.lower() == ".csv":
        yield from iter_csv_records(path)
    else:
        yield from iter_json_records(path, "data")


def _listish(value: Any, where: str, name: str) -> list[str]:
    """A list field that may be a JSON/Python list literal in a CSV cell (or empty)."""
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise DataError(f"{where}: field {name!r} is not a list literal: {text[:60]!r}"
                            ) from None
        return [str(v) for v in parsed]
    return [text]


def _need(row: dict, where: str, *names: str) -> list[Any]:
    missing = [n for n in names if row.get(n) in (None, "")]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing} (have {sorted(row)})")
    return [row[n] for n in names]


def _check(item: MCQItem) -> MCQItem:
    """Refuse items that cannot be scored, by id."""
    if len(item.choices) < 2:
        raise DataError(f"{item.where}: item {item.id!r} has {len(item.choices)} option(s); "
                        "a multiple-choice item needs at least two")
    if not 0 <= item.answer < len(item.choices):
        raise DataError(f"{item.where}: item {item.id!r}: answer index {item.answer} is not "
                        f"among its {len(item.choices)} options")
    if len(set(item.choices)) != len(item.choices):
        raise DataError(f"{item.where}: item {item.id!r} lists an option twice: "
                        f"{list(item.choices)}")
    return item


def _answer_index(answer: Any, choices: list[str], where: str, rid: str) -> int:
    text = str(answer).strip()
    norm = [c.strip() for c in choices]
    if text in norm:
        return norm.index(text)
    raise DataError(f"{where}: item {rid!r}: field 'answer' {text!r} is not among its "
                    f"options {choices}")


def _audio(row: dict, where: str, template: str | None, root: Path) -> str:
    if template:
        try:
            rel = template.format(**{k: v for k, v in row.items() if isinstance(k, str)})
        except KeyError as exc:
            raise DataError(f"{where}: audio template {template!r} names field {exc} that "
                            "the row lacks") from None
    else:
        rel = row.get("audio") or row.get("audio_path") or row.get("audio_id")
        if rel in (None, ""):
            raise DataError(f"{where}: missing field 'audio' (or 'audio_path'); the released "
                            "MuChoMusic CSV has none: pass an audio template such as "
                            "'{dataset}/audio/{dataset_identifier}.wav'")
    return os.path.normpath(str(rel) if os.path.isabs(str(rel)) else str(root / str(rel)))


def _muchomusic(row: dict, where: str, tpl: str | None, root: Path) -> list[MCQItem]:
    q, correct = _need(row, where, "question", "correct_answer")
    names = [f"distractor_{i}_answer" for i in (1, 2, 3)]
    missing = [n for n in names if n not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; MuChoMusic rows have three "
                        "distractors")
    choices = [str(correct)] + [str(row[n]) for n in names if row[n] not in (None, "")]
    rid = str(row.get("id") or row.get("dataset_identifier") or where.rsplit(":", 1)[-1])
    dims = (_listish(row.get("music_knowledge"), where, "music_knowledge")
            + _listish(row.get("music_reasoning"), where, "music_reasoning"))
    return [MCQItem(rid, _audio(row, where, tpl, root), str(q), tuple(choices), 0,
                    tuple(dims), "muchomusic", where,
                    {"dataset": row.get("dataset"), "genre": row.get("genre")})]


def _rulistening(row: dict, where: str, tpl: str | None, root: Path) -> list[MCQItem]:
    (q,) = _need(row, where, "question")
    correct = row.get("answer", row.get("correct_answer"))
    if correct in (None, ""):
        raise DataError(f"{where}: missing field 'answer' (or 'correct_answer')")
    dis = _listish(row.get("distractors"), where, "distractors")
    dis += [str(row[k]) for k in sorted(row) if k.startswith("distractor_")
            and row[k] not in (None, "")]
    rid = str(row.get("id") or where.rsplit(":", 1)[-1])
    return [MCQItem(rid, _audio(row, where, tpl, root), str(q), (str(correct), *dis), 0,
                    tuple(_listish(row.get("category"), where, "category")), "rulistening",
                    where)]


def _mmau_like(fmt: str, audio_key: str, dim_keys: tuple[str, ...]):
    def convert(row: dict, where: str, tpl: str | None, root: Path) -> list[MCQItem]:
        q, choices, answer = _need(row, where, "question", "choices", "answer")
        if not isinstance(choices, list):
            raise DataError(f"{where}: field 'choices' must be a list, got "
                            f"{type(choices).__name__}")
        rid = str(row.get("id") or where.rsplit(":", 1)[-1])
        if not tpl:
            _need(row, where, audio_key)
        audio = _audio({**row, "audio": row.get(audio_key)}, where, tpl, root)
        choices = [str(c) for c in choices]
        dims = tuple(str(row[k]) for k in dim_keys if row.get(k) not in (None, ""))
        return [MCQItem(rid, audio, str(q), tuple(choices),
                        _answer_index(answer, choices, where, rid), dims, fmt, where)]
    return convert


def _conversation(row: dict, where: str, tpl: str | None, root: Path) -> list[MCQItem]:
    rid, turns, choices = _need(row, where, "id", "turns", "choices")
    if row.get("task") != "mcq":
        return []
    if "answer" not in row or not isinstance(row["answer"], int):
        raise DataError(f"{where}: item {rid!r}: field 'answer' must be an option index")
    users = [t.get("content", "") for t in turns if isinstance(t, dict)
             and t.get("role") == "user"]
    if not users:
        raise DataError(f"{where}: item {rid!r}: field 'turns' has no user turn")
    audio = row.get("audio") or []
    if len(audio) != 1:
        raise DataError(f"{where}: item {rid!r}: field 'audio' must list exactly one clip, "
                        f"got {len(audio)}")
    question = users[0].replace("<audio>", "").strip()
    path = audio[0] if os.path.isabs(audio[0]) else str(root / audio[0])
    return [MCQItem(str(rid), path, question, tuple(str(c) for c in choices),
                    int(row["answer"]), tuple(row.get("dimensions") or ()), "conversations",
                    where)]


_CONVERTERS = {
    "muchomusic": _muchomusic,
    "rulistening": _rulistening,
    "mmau": _mmau_like("mmau", "audio_id", ("task", "category", "sub-category")),
    "mmar": _mmau_like("mmar", "audio_path", ("modality", "category", "sub-category")),
    "conversations": _conversation,
}


def detect_format(path: str | os.PathLike) -> str:
    """The format of an MCQ file, from its header (CSV) or its first record (JSON).

    Raises:
        DataError: an empty file, or one that matches no known format.
    """
    path = Path(path)
    first = next(iter(_records(path)), None)
    if first is None:
        raise DataError(f"{path}: no records")
    line, row = first
    if isinstance(row, Exception):
        raise row
    if not isinstance(row, dict):
        raise DataError(f"{path}:{line}: expected an object per record, got "
                        f"{type(row).__name__}")
    keys = set(row)
    if "turns" in keys:
        return "conversations"
    if {"correct_answer", "distractor_1_answer"} <= keys:
        return "muchomusic"
    if "distractors" in keys or ("answer" in keys and "distractor_1" in keys):
        return "rulistening"
    if "choices" in keys and "audio_id" in keys:
        return "mmau"
    if "choices" in keys and ("audio_path" in keys or "modality" in keys):
        return "mmar"
    raise DataError(f"{path}:{line}: fields {sorted(keys)} match no multiple-choice format "
                    f"of {list(MCQ_FORMATS)}; name it with --format")


def read_mcq(path: str | os.PathLike, fmt: str | None = None, *,
             audio_template: str | None = None, audio_root: str | os.PathLike | None = None
             ) -> list[MCQItem]:
    """Every item of a multiple-choice file, checked (nothing is loaded but the file).

    Args:
        path: the benchmark file (CSV, JSON, JSONL).
        fmt: one of ``MCQ_FORMATS``; None detects it (``detect_format``).
        audio_template: how a row names its audio (``str.format`` over the row's fields);
            None reads the format's own audio field.
        audio_root: the folder relative audio paths start from (default: the file's).

    Raises:
        DataError: a malformed row (``file:line`` and the field), an item with fewer than
            two options or an answer not among them (by id), a duplicate id, or no items.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"multiple-choice file {path} does not exist")
    fmt = fmt or detect_format(path)
    if fmt not in _CONVERTERS:
        raise DataError(f"unknown multiple-choice format {fmt!r}; choose one of "
                        f"{list(MCQ_FORMATS)}")
    root = Path(audio_root) if audio_root is not None else path.parent
    items: list[MCQItem] = []
    seen: dict[str, str] = {}
    for line, row in _records(path):
        where = f"{path}:{line}"
        if isinstance(row, Exception):
            raise row
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object, got {type(row).__name__}")
        for item in _CONVERTERS[fmt](row, where, audio_template, root):
            item = _check(item)
            if item.id in seen:
                raise DataError(f"{where}: duplicate id {item.id!r} (first at {seen[item.id]})")
            seen[item.id] = where
            items.append(item)
    if not items:
        raise DataError(f"{path}: no multiple-choice items (format {fmt})")
    return items


def expand_folds(items: list[MCQItem], folds: int = 4) -> list[MCQItem]:
    """RUListening's protocol: per item, ``folds`` items that each drop one distractor
    (distractor ``k`` for fold ``k``); ids get ``#fold{k}``. Items with fewer distractors
    than ``folds`` drop each of theirs once.

    Raises:
        ValueError: ``folds`` < 1.
    """
    if folds < 1:
        raise ValueError(f"folds={folds}: must be >= 1")
    out = []
    for it in items:
        distractors = [i for i in range(len(it.choices)) if i != it.answer]
        for k, drop in enumerate(distractors[:folds]):
            keep = [i for i in range(len(it.choices)) if i != drop]
            out.append(_check(replace(it, id=f"{it.id}#fold{k}",
                                      choices=tuple(it.choices[i] for i in keep),
                                      answer=keep.index(it.answer))))
    return out


def write_items_jsonl(items: list[MCQItem], out: str | os.PathLike) -> None:
    """The items as JSON lines (for reports and debugging)."""
    Path(out).write_text("".join(json.dumps({
        "id": i.id, "audio": i.audio, "question": i.question, "choices": list(i.choices),
        "answer": i.answer, "dimensions": list(i.dimensions), "source": i.source}) + "\n"
        for i in items))


def write_muchomusic_csv(rows: list[dict[str, Any]], out: str | os.PathLike) -> None:
    """Rows in MuChoMusic's CSV layout (its columns, plus ``audio``), in one write.

    Each row needs ``question``, ``correct_answer`` and ``distractors`` (three strings);
    ``music_knowledge`` / ``music_reasoning`` are lists.
    """
    from mullm.utils.atomic import atomic_open

    cols = ["question", "correct_answer", "distractor_1_answer", "distractor_2_answer",
            "distractor_3_answer", "dataset", "dataset_identifier", "genre",
            "music_reasoning", "music_knowledge", "audio"]
    with atomic_open(out) as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            d1, d2, d3 = r["distractors"]
            w.writerow({"question": r["question"], "correct_answer": r["correct_answer"],
                        "distractor_1_answer": d1, "distractor_2_answer": d2,
                        "distractor_3_answer": d3, "dataset": r.get("dataset", ""),
                        "dataset_identifier": r["dataset_identifier"],
                        "genre": r.get("genre", ""),
                        "music_reasoning": repr(list(r.get("music_reasoning", []))),
                        "music_knowledge": repr(list(r.get("music_knowledge", []))),
                        "audio": r["audio"]})


__all__ = ["MCQItem", "MCQ_FORMATS", "detect_format", "expand_folds", "read_mcq",
           "write_items_jsonl", "write_muchomusic_csv"]
