"""Public music-text data sets -> the conversation schema (INTERFACES.md, "Conversations").

Formats (``FORMATS``) and the fields read, as the projects release them:

* ``musiccaps``: MusicCaps CSV (ytid, start_s, end_s, audioset_positive_labels, aspect_list,
  caption, author_id, is_balanced_subset, is_audioset_eval); audio is not shipped, so paths
  come from ``audio_template`` (default ``{ytid}.wav``).
* ``musicqa``: MU-LLaMA MusicQA JSON, a list of {audio_name, conversation: [{from: human|gpt,
  value}]}.
* ``musicinstruct``: MusiLingo MusicInstruct JSON, {"QA": [{ytid, question, answer,
  is_audioset_eval, ...}]} (a bare list is accepted too).
* ``lpmusiccaps``: LP-MusicCaps rows (JSON list or JSONL) with caption_writing,
  caption_summary, caption_paraphrase, caption_attribute_prediction (+ ytid / track_id /
  fname, path, split or is_audioset_eval).
* ``songdescriber``: Song Describer CSV (caption_id, track_id, caption, is_valid_subset,
  familiarity, artist_id, album_id, path, duration).
* ``llark``: LLark instruction data, JSON list or JSONL of {uri | id, response: [{question,
  answer}]}.
* ``muchomusic``: MuChoMusic, either the prompt JSON its ``prepare_prompts.py`` writes (id,
  prompt, answers, answer_orders, dataset, reasoning, knowledge, audio_path) or the released
  CSV (question, correct_answer, distractor_{1,2,3}_answer, dataset, dataset_identifier,
  genre, music_reasoning, music_knowledge).

Every row is validated; a bad row raises ``DataError`` naming the file and line unless
``skip_bad``, which records it in ``errors.jsonl`` and goes on.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mullm.data.schema import Conversation, append_errors, validate_conversation
from mullm.errors import DataError
from mullm.utils.atomic import atomic_open
from mullm.utils.jsonl import iter_jsonl

Record = tuple[int, dict]  # (line number, row)


# ---- reading records with line numbers ---------------------------------------------------------

def _iter_csv(path: Path) -> Iterator[Record]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        _ = reader.fieldnames  # read the header now, so the first row is line 2, not 1
        line = reader.line_num + 1
        for row in reader:
            yield line, row
            line = reader.line_num + 1


def _iter_json(path: Path, list_key: str | None = None) -> Iterator[Record]:
    """Records of a JSON array, an object holding one (``list_key``), or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    dec = json.JSONDecoder()
    line_of = lambda i: text.count("\n", 0, i) + 1  # noqa: E731
    if stripped.startswith("["):
        start = text.index("[") + 1
    elif stripped.startswith("{") and list_key and re.search(
            r'"' + re.escape(list_key) + r'"\s*:\s*\[', text):
        start = re.search(r'"' + re.escape(list_key) + r'"\s*:\s*\[', text).end()
    else:  # JSON Lines
        for line in iter_jsonl(path):
            try:
                value = line.value
            except DataError as e:
                value = e
            yield line.number, value
        return
    i = start
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text):
            yield line_of(i), DataError(f"{path}:{line_of(i)}: JSON array is not closed")
            return
        if text[i] == "]":
            return
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            # past a syntax error the array cannot be resynchronised reliably: stop here
            yield line_of(e.pos), DataError(f"{path}:{line_of(e.pos)}: malformed JSON ({e.msg})")
            return
        yield line_of(i), obj
        i = end


# ---- helpers -------------------------------------------------------------------------------

def _truthy(v: object) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


def _need(row: dict, *keys: str) -> list:
    missing = [k for k in keys if row.get(k) in (None, "")]
    if missing:
        raise DataError(f"missing field(s) {missing}")
    return [row[k] for k in keys]


def _listish(v: object) -> list[str]:
    if isinstance(v, list):
        return [str(x) for x in v]
    if v in (None, ""):
        return []
    s = str(v).strip()
    if s.startswith("["):
        try:
            return [str(x) for x in ast.literal_eval(s)]
        except (ValueError, SyntaxError):
            pass
    return [x.strip() for x in s.split(",") if x.strip()]


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    out = []
    for u, a in pairs:
        out += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    return out


def _stable_perm(key: str, n: int) -> list[int]:
    # deterministic option order per item, so the right answer is not always (A)
    h = hashlib.sha256(key.encode()).digest()
    idx = list(range(n))
    for i in range(n - 1, 0, -1):
        j = h[i % len(h)] % (i + 1)
        idx[i], idx[j] = idx[j], idx[i]
    return idx


_LETTERS = "ABCDEFGH"


# ---- per-format row converters: row -> list of conversation dicts (audio as given) ----------

def _musiccaps(row: dict, tpl: str) -> list[dict]:
    ytid, caption = _need(row, "ytid", "caption")
    start = int(float(row.get("start_s") or 0))
    end = int(float(row.get("end_s") or start + 10))
    audio = tpl.format(ytid=ytid, start_s=start, end_s=end)
    split = "test" if _truthy(row.get("is_audioset_eval")) else "train"
    base = {"audio": [audio], "images": [], "split": split, "source": "musiccaps"}
    out = [{"id": f"musiccaps-{ytid}", "task": "caption",
            "turns": _turns(("<audio>\nDescribe this music.", caption.strip())),
            "meta": {"author_id": row.get("author_id"),
                     "is_balanced_subset": _truthy(row.get("is_balanced_subset"))}, **base}]
    aspects = _listish(row.get("aspect_list"))
    if aspects:
        out.append({"id": f"musiccaps-{ytid}-aspects", "task": "qa",
                    "turns": _turns(("<audio>\nList short tags that describe this music.",
                                     ", ".join(aspects))), **base})
    return out


def _musicqa(row: dict, tpl: str) -> list[dict]:
    name, conv = _need(row, "audio_name", "conversation")
    if not isinstance(conv, list) or not conv:
        raise DataError("conversation must be a non-empty list")
    role = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
    turns = []
    for t in conv:
        if not isinstance(t, dict) or t.get("from") not in role or not isinstance(
                t.get("value"), str):
            raise DataError(f"conversation turn {t!r} needs from (human|gpt) and value")
        turns.append({"role": role[t["from"]], "content": t["value"].strip()})
    stem = Path(name).stem
    return [{"audio": [tpl.format(audio_name=name)], "images": [], "turns": turns,
             "task": "qa", "split": None, "source": "musicqa", "id": f"musicqa-{stem}"}]


def _musicinstruct(row: dict, tpl: str) -> list[dict]:
    ytid, q, a = _need(row, "ytid", "question", "answer")
    split = "test" if _truthy(row.get("is_audioset_eval")) else "train"
    return [{"id": f"musicinstruct-{ytid}", "audio": [tpl.format(ytid=ytid)], "images": [],
             "turns": _turns(("<audio>\n" + q.strip(), a.strip())), "task": "qa",
             "split": split, "source": "musicinstruct"}]


_LP_PROMPTS = {
    "caption_writing": "Write a description of this music.",
    "caption_summary": "Summarise this music in one sentence.",
    "caption_paraphrase": "Describe this music in your own words.",
    "caption_attribute_prediction": "Describe this music, including attributes it likely has.",
}


def _lpmusiccaps(row: dict, tpl: str) -> list[dict]:
    rid = row.get("track_id") or row.get("fname") or row.get("ytid")
    if not rid:
        raise DataError("missing an id field (track_id, fname or ytid)")
    fields = {k: row[k] for k in _LP_PROMPTS if isinstance(row.get(k), str) and row[k].strip()}
    if not fields:
        raise DataError(f"no caption field among {list(_LP_PROMPTS)}")
    audio = row["path"] if row.get("path") else tpl.format(**{k: v for k, v in row.items()
                                                           if isinstance(v, (str, int))},
                                                        id=rid)
    split = row.get("split") or ("test" if _truthy(row.get("is_audioset_eval")) else "train")
    return [{"id": f"lpmusiccaps-{rid}-{k.removeprefix('caption_')}", "audio": [audio],
             "images": [], "turns": _turns(("<audio>\n" + _LP_PROMPTS[k], v.strip())),
             "task": "caption", "split": split, "source": "lp-musiccaps"}
            for k, v in fields.items()]


def _songdescriber(row: dict, tpl: str) -> list[dict]:
    cid, caption, path = _need(row, "caption_id", "caption", "path")
    return [{"id": f"songdescriber-{cid}", "audio": [tpl.format(path=path,
                                                               track_id=row.get("track_id"))],
             "images": [], "turns": _turns(("<audio>\nDescribe this music.", caption.strip())),
             "task": "caption", "split": "test", "source": "song-describer",
             "meta": {"track_id": row.get("track_id"),
                      "is_valid_subset": _truthy(row.get("is_valid_subset")),
                      "familiarity": row.get("familiarity")}}]


def _llark(row: dict, tpl: str) -> list[dict]:
    rid = row.get("id") if row.get("id") not in (None, "") else row.get("uri")
    if rid in (None, ""):
        raise DataError("missing id or uri")
    resp = row.get("response")
    if not isinstance(resp, list) or not resp:
        raise DataError("response must be a non-empty list of {question, answer}")
    out = []
    for j, qa in enumerate(resp):
        if not isinstance(qa, dict) or not qa.get("question") or not qa.get("answer"):
            raise DataError(f"response[{j}] needs a question and an answer, got {qa!r}")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(rid))
        out.append({"id": f"llark-{safe}-{j}", "audio": [tpl.format(id=rid, uri=rid)],
                    "images": [], "turns": _turns(("<audio>\n" + str(qa["question"]).strip(),
                                                   str(qa["answer"]).strip())),
                    "task": "qa", "split": row.get("split"), "source": "llark"})
    return out


def _muchomusic(row: dict, tpl: str) -> list[dict]:
    dims = _listish(row.get("reasoning", row.get("music_reasoning"))) + _listish(
        row.get("knowledge", row.get("music_knowledge")))
    if "prompt" in row:  # prepare_prompts.py output: options already shuffled into the prompt
        rid, prompt, answers, orders = _need(row, "id", "prompt", "answers", "answer_orders")
        if not isinstance(answers, list) or sorted(orders) != list(range(len(answers))):
            raise DataError("answer_orders must be a permutation of the answers' indices")
        answer = list(orders).index(0)  # index 0 of the original order is the correct one
        audio = tpl.format(audio_path=row.get("audio_path", ""), id=rid)
        user = "<audio>\n" + prompt.strip()
        choices = [str(a) for a in answers]
    else:  # the released CSV
        rid, q, correct = _need(row, "dataset_identifier", "question", "correct_answer")
        distractors = [row.get(f"distractor_{i}_answer") for i in (1, 2, 3)]
        raw = [correct] + [d for d in distractors if d not in (None, "")]
        perm = _stable_perm(str(rid) + q, len(raw))
        choices = [str(raw[i]) for i in perm]
        answer = perm.index(0)
        # the benchmark's own loader: drop ".json"; MusicCaps ids also lose a "_N" suffix
        audio_id = str(rid).removesuffix(".json")
        if row.get("dataset") == "musiccaps":
            audio_id = "_".join(audio_id.split("_")[:-1]) or audio_id
        audio = tpl.format(dataset_identifier=rid, dataset=row.get("dataset", ""), id=rid,
                           audio_id=audio_id,
                           audio_path=f"{row.get('dataset', '')}/{audio_id}.wav")
        opts = " ".join(f"({_LETTERS[i]}) {c}" for i, c in enumerate(choices))
        user = f"<audio>\nQuestion: {q.strip()}\nOptions: {opts}\nThe correct answer is:"
    return [{"id": f"muchomusic-{rid}", "audio": [audio], "images": [],
             "turns": _turns((user, f"({_LETTERS[answer]}) {choices[answer]}")),
             "task": "mcq", "split": "test", "source": "muchomusic", "choices": choices,
             "answer": answer, "dimensions": dims,
             "meta": {"dataset": row.get("dataset"), "genre": row.get("genre")}}]


# format -> (reader, row converter, default audio template)
FORMATS: dict[str, tuple[Callable[[Path], Iterator[Record]], Callable, str]] = {
    "musiccaps": (_iter_csv, _musiccaps, "{ytid}.wav"),
    "musicqa": (_iter_json, _musicqa, "{audio_name}"),
    "musicinstruct": (lambda p: _iter_json(p, "QA"), _musicinstruct, "{ytid}.wav"),
    "lpmusiccaps": (_iter_json, _lpmusiccaps, "{id}.wav"),
    "songdescriber": (_iter_csv, _songdescriber, "{path}"),
    "llark": (_iter_json, _llark, "{id}.wav"),
    "muchomusic": (lambda p: _iter_csv(p) if p.suffix.lower() == ".csv" else _iter_json(p),
                   _muchomusic, "{audio_path}"),
}


def convert(fmt: str, inp: str | os.PathLike, out: str | os.PathLike, *,
            audio_root: str | os.PathLike | None = None, audio_template: str | None = None,
            check_audio: bool = True, skip_bad: bool = False,
            errors_path: str | os.PathLike | None = None) -> tuple[int, int]:
    """Convert ``inp`` in ``fmt`` to a conversation JSONL at ``out``; returns (written, bad).

    Audio paths are ``audio_root / audio_template.format(row fields)`` (``audio_root``
    defaults to the input's folder) and are written relative to ``out``'s folder.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    inp, out = Path(inp), Path(out)
    if not inp.is_file():
        raise FileNotFoundError(f"input file {inp} does not exist")
    reader, conv_fn, default_tpl = FORMATS[fmt]
    tpl = audio_template or default_tpl
    root = Path(audio_root) if audio_root is not None else inp.parent
    out_dir = out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    errors_path = Path(errors_path) if errors_path else out_dir / "errors.jsonl"
    written, bad = 0, 0
    seen: set[str] = set()
    # Written atomically: a failure (or --skip-bad off) leaves no half-converted file.
    with atomic_open(out) as f:
        for line, row in reader(inp):
            where = f"{inp}:{line}"
            try:
                if isinstance(row, DataError):
                    raise row
                if not isinstance(row, dict):
                    raise DataError(f"expected an object, got {type(row).__name__}")
                try:
                    items = conv_fn(row, tpl)
                except KeyError as e:
                    raise DataError(f"audio template {tpl!r} names field {e} that the row "
                                    "lacks") from None
                convs: list[Conversation] = []
                for item in items:
                    resolved = [p if os.path.isabs(p) else str(root / p) for p in item["audio"]]
                    item["audio"] = [os.path.relpath(os.path.abspath(p), os.path.abspath(out_dir))
                                     for p in resolved]
                    c = validate_conversation(item, base_dir=out_dir, where=where,
                                              check_files=check_audio)
                    if c.id in seen:
                        raise DataError(f"duplicate id {c.id!r}")
                    convs.append(c)
            except DataError as e:
                msg = str(e) if str(e).startswith(str(inp)) else f"{where}: {e}"
                if not skip_bad:
                    raise DataError(msg) from None
                append_errors(errors_path, [{"input": where, "error": msg}])
                bad += 1
                continue
            for c in convs:
                seen.add(c.id)
                f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
                written += 1
    return written, bad


# Public names of the line-numbered readers, for other readers of published formats
# (mullm.eval.mcq_items).
iter_csv_records = _iter_csv
iter_json_records = _iter_json
