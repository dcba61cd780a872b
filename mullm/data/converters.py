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
* ``mucaps`` (music generation, M2UGen's decoder stage): ``MUCapsCaptions.json``, an object
  {audio file: caption}; the caption is the instruction (as M2UGen trains it), the reply is
  the output tokens ``[AUD0]..``, and ``target`` holds the caption and the clip.
* ``muedit`` / ``muimage`` (M2UGen's any-to-music instructions): a JSON list of
  {input_file, output_file, conversation: [{from: human, value}, {from: gpt, value,
  caption}]}; the input file is the clip to edit (``muedit``) or the image (``muimage``), the
  reply is the gpt value plus the output tokens, ``target`` the gpt caption and output file.

The generation formats write ``output_tokens`` tokens (M2UGen: 8; it must equal the model's
``music_output.num_tokens``) and task ``generate``.

Every row is validated; a bad row, whatever is wrong with it, raises ``DataError`` naming
the file and line unless ``skip_bad``, which records it in ``errors.jsonl`` and goes on. A
field that is blank (empty or only spaces) where text is needed is a bad row, named.

Ids are unique per entry and stable across runs: formats with several question-answer
entries per clip (MusicQA: one JSON entry per pair, nine per clip; MusicInstruct: many
questions per ``ytid``; LLark; the MuChoMusic CSV) add a short hash of the entry's text
(``musicqa-000001-3f9a1c2b7e``); formats with one entry per clip keep readable ids
(``musiccaps-<ytid>``). An id met again (an exact duplicate entry, or a repeated clip) gets
``-2``, ``-3`` ... in file order.

Text files are read as UTF-8 unless ``encoding`` says otherwise; a byte-order mark (UTF-8
or UTF-16, as spreadsheet programs write) is honoured whatever was asked. Bytes that are
not text in the encoding stop the conversion with ``file:line``, the byte and the encoding
tried (``--encoding cp1252`` reads Windows-1252).
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mullm.data.schema import Conversation, append_errors, validate_conversation
from mullm.errors import DataError, OutputError
from mullm.utils.atomic import atomic_open
from mullm.utils.files import check_output_path
from mullm.utils.jsonl import JsonlLine, json_line
from mullm.utils.text import check_encoding, read_text

Record = tuple[int, dict]  # (line number, row)


# ---- reading records with line numbers ---------------------------------------------------------

def _iter_csv(path: Path, encoding: str = "utf-8") -> Iterator[Record]:
    reader = csv.DictReader(io.StringIO(read_text(path, encoding), newline=""))
    _ = reader.fieldnames  # reads the header, so line_num counts it
    line = reader.line_num + 1
    for row in reader:
        yield line, row
        line = reader.line_num + 1


def _iter_json(path: Path, list_key: str | None = None, encoding: str = "utf-8"
               ) -> Iterator[Record]:
    """Records of a JSON array, an object holding one (``list_key``), or JSON Lines."""
    text = read_text(path, encoding)
    stripped = text.lstrip()
    dec = json.JSONDecoder()
    line_of = lambda i: text.count("\n", 0, i) + 1  # noqa: E731
    if stripped.startswith("["):
        start = text.index("[") + 1
    elif stripped.startswith("{") and list_key and re.search(
            r'"' + re.escape(list_key) + r'"\s*:\s*\[', text):
        start = re.search(r'"' + re.escape(list_key) + r'"\s*:\s*\[', text).end()
    else:  # JSON Lines
        # split("\n"), not splitlines(): JSON text may hold U+2028 and friends raw.
        for number, raw in enumerate(text.split("\n"), 1):
            if raw.strip():
                try:
                    value = JsonlLine(path, number, raw).value
                except DataError as e:
                    value = e
                yield number, value
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
    """The values of ``keys``; a missing or blank (only spaces) one is a bad row, named."""
    missing = [k for k in keys if row.get(k) is None or row.get(k) == ""]
    if missing:
        raise DataError(f"missing field(s) {missing}")
    blank = [k for k in keys if isinstance(row[k], str) and not row[k].strip()]
    if blank:
        raise DataError(f"blank field(s) {blank}: only spaces, no text")
    return [row[k] for k in keys]


def _seconds(row: dict, key: str, default: float) -> int:
    """A whole number of seconds from ``row[key]`` (``default`` when absent).

    Raises:
        DataError: naming the field and its value when it is not a finite number.
    """
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return int(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{key} {value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise DataError(f"{key} {value!r} is not a number of seconds >= 0")
    return int(number)


def _entry_id(prefix: str, clip: object, turns: list[dict]) -> str:
    """``prefix-clip-<10 hex>``: unique per question-answer entry of a clip, stable across
    runs and file orders (a hash of the entry's text)."""
    text = json.dumps([str(clip), [t["content"] for t in turns]], ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{prefix}-{clip}-{digest}"


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
    start = _seconds(row, "start_s", 0)
    end = _seconds(row, "end_s", start + 10)
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
    for j, t in enumerate(conv):
        if not isinstance(t, dict) or t.get("from") not in role or not isinstance(
                t.get("value"), str):
            raise DataError(f"conversation turn {t!r} needs from (human|gpt) and value")
        if not t["value"].strip():
            raise DataError(f"conversation[{j}] ({t['from']}) has a blank value")
        turns.append({"role": role[t["from"]], "content": t["value"].strip()})
    stem = Path(name).stem
    return [{"audio": [tpl.format(audio_name=name)], "images": [], "turns": turns,
             "task": "qa", "split": None, "source": "musicqa",
             "id": _entry_id("musicqa", stem, turns)}]


def _musicinstruct(row: dict, tpl: str) -> list[dict]:
    ytid, q, a = _need(row, "ytid", "question", "answer")
    split = "test" if _truthy(row.get("is_audioset_eval")) else "train"
    turns = _turns(("<audio>\n" + str(q).strip(), str(a).strip()))
    return [{"id": _entry_id("musicinstruct", ytid, turns), "audio": [tpl.format(ytid=ytid)],
             "images": [], "turns": turns, "task": "qa", "split": split,
             "source": "musicinstruct"}]


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
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(rid))
    for j, qa in enumerate(resp):
        if not isinstance(qa, dict):
            raise DataError(f"response[{j}] needs a question and an answer, got {qa!r}")
        try:
            q, a = _need(qa, "question", "answer")
        except DataError as e:
            raise DataError(f"response[{j}]: {e}") from None
        turns = _turns(("<audio>\n" + str(q).strip(), str(a).strip()))
        out.append({"id": _entry_id("llark", safe, turns),
                    "audio": [tpl.format(id=rid, uri=rid)], "images": [], "turns": turns,
                    "task": "qa", "split": row.get("split"), "source": "llark"})
    return out


def _muchomusic(row: dict, tpl: str) -> list[dict]:
    dims = _listish(row.get("reasoning", row.get("music_reasoning"))) + _listish(
        row.get("knowledge", row.get("music_knowledge")))
    if "prompt" in row:  # prepare_prompts.py output: options already shuffled into the prompt
        rid, prompt, answers, orders = _need(row, "id", "prompt", "answers", "answer_orders")
        if not isinstance(answers, list) or sorted(orders) != list(range(len(answers))):
            raise DataError("answer_orders must be a permutation of the answers' indices")
        if any(not str(a).strip() for a in answers):
            raise DataError("answers holds a blank answer")
        answer = list(orders).index(0)  # index 0 of the original order is the correct one
        audio = tpl.format(audio_path=row.get("audio_path", ""), id=rid)
        user = "<audio>\n" + prompt.strip()
        choices = [str(a) for a in answers]
    else:  # the released CSV
        rid, q, correct = _need(row, "dataset_identifier", "question", "correct_answer")
        distractors = [row.get(f"distractor_{i}_answer") for i in (1, 2, 3)]
        raw = [correct] + [d for d in distractors if d is not None and str(d).strip()]
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
    turns = _turns((user, f"({_LETTERS[answer]}) {choices[answer]}"))
    # The prompt JSON's id is one question's; the CSV's dataset_identifier is the clip's.
    cid = f"muchomusic-{rid}" if "prompt" in row else _entry_id("muchomusic", rid, turns)
    return [{"id": cid, "audio": [audio], "images": [], "turns": turns,
             "task": "mcq", "split": "test", "source": "muchomusic", "choices": choices,
             "answer": answer, "dimensions": dims,
             "meta": {"dataset": row.get("dataset"), "genre": row.get("genre")}}]


def _iter_caption_map(path: Path, encoding: str = "utf-8") -> Iterator[Record]:
    """MUCaps' {audio file: caption} object as records {"file", "caption"}."""
    try:
        data = json.loads(read_text(path, encoding))
    except json.JSONDecodeError as e:
        yield e.lineno, DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})")
        return
    if not isinstance(data, dict):
        yield 1, DataError(f"{path}: expected an object {{audio file: caption}}")
        return
    for i, (name, caption) in enumerate(data.items(), 1):
        yield i, {"file": name, "caption": caption}


def _aud(num_tokens: int) -> str:
    from mullm.outputs.vocab import output_token_text

    return output_token_text(num_tokens)


def _mucaps(row: dict, tpl: str, output_tokens: int = 8) -> list[dict]:
    name, caption = _need(row, "file", "caption")
    if not isinstance(caption, str):
        raise DataError(f"caption must be text, got {caption!r}")
    audio = tpl.format(file=name)
    return [{"id": f"mucaps-{Path(name).stem}", "audio": [], "images": [],
             "turns": _turns((caption.strip(), _aud(output_tokens))), "task": "generate",
             "split": None, "source": "mucaps",
             "target": {"caption": caption.strip(), "audio": audio}}]


def _any_to_music(row: dict, tpl: str, output_tokens: int, kind: str) -> list[dict]:
    src, dst, conv = _need(row, "input_file", "output_file", "conversation")
    if not isinstance(conv, list) or len(conv) < 2 or not all(isinstance(t, dict)
                                                             for t in conv):
        raise DataError("conversation must be a list of a human and a gpt turn")
    human, gpt = conv[0], conv[-1]
    question, answer, caption = human.get("value"), gpt.get("value"), gpt.get("caption")
    for what, v in (("human value", question), ("gpt value", answer), ("gpt caption", caption)):
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"the {what} must be non-empty text, got {v!r}")
    marker = "<audio>" if kind == "muedit" else "<image>"
    item = {"id": f"{kind}-{Path(src).stem}-{Path(dst).stem}", "audio": [], "images": [],
            "turns": _turns((f"{marker}\n{question.strip()}",
                             f"{answer.strip()} {_aud(output_tokens)}")),
            "task": "generate", "split": None, "source": kind,
            "target": {"caption": caption.strip(), "audio": tpl.format(file=dst)}}
    item["audio" if kind == "muedit" else "images"] = [tpl.format(file=src)]
    return [item]


def _muedit(row: dict, tpl: str, output_tokens: int = 8) -> list[dict]:
    return _any_to_music(row, tpl, output_tokens, "muedit")


def _muimage(row: dict, tpl: str, output_tokens: int = 8) -> list[dict]:
    return _any_to_music(row, tpl, output_tokens, "muimage")


GENERATION_FORMATS = ("mucaps", "muedit", "muimage")


# format -> (reader(path, encoding), row converter, default audio template)
FORMATS: dict[str, tuple[Callable[[Path, str], Iterator[Record]], Callable, str]] = {
    "musiccaps": (_iter_csv, _musiccaps, "{ytid}.wav"),
    "musicqa": (_iter_json, _musicqa, "{audio_name}"),
    "musicinstruct": (lambda p, e: _iter_json(p, "QA", e), _musicinstruct, "{ytid}.wav"),
    "lpmusiccaps": (_iter_json, _lpmusiccaps, "{id}.wav"),
    "songdescriber": (_iter_csv, _songdescriber, "{path}"),
    "llark": (_iter_json, _llark, "{id}.wav"),
    "muchomusic": (lambda p, e: _iter_csv(p, e) if p.suffix.lower() == ".csv"
                   else _iter_json(p, None, e), _muchomusic, "{audio_path}"),
    "mucaps": (_iter_caption_map, _mucaps, "{file}"),
    "muedit": (_iter_json, _muedit, "{file}"),
    "muimage": (_iter_json, _muimage, "{file}"),
}


def _convert_row(row: object, conv_fn: Callable, tpl: str, root: Path, out_dir: Path,
                 where: str, check_audio: bool) -> list[Conversation]:
    """One row's conversations, validated; any problem is a ``DataError`` (``where:``)."""
    if isinstance(row, DataError):
        raise row
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}")
    try:
        items = conv_fn(row, tpl)
    except KeyError as e:
        raise DataError(f"audio template {tpl!r} names field {e} that the row lacks") from None
    convs = []
    for item in items:
        for k, t in enumerate(item["turns"]):
            if t["role"] == "assistant" and not str(t["content"]).strip():
                raise DataError(f"turn {k} (the answer) is blank")
        def rel(p: str) -> str:
            p = p if os.path.isabs(p) else str(root / p)
            return os.path.relpath(os.path.abspath(p), os.path.abspath(out_dir))

        item["audio"] = [rel(p) for p in item["audio"]]
        item["images"] = [rel(p) for p in item.get("images", [])]
        if item.get("target", {}).get("audio"):
            item["target"]["audio"] = rel(item["target"]["audio"])
        convs.append(validate_conversation(item, base_dir=out_dir, where=where,
                                           check_files=check_audio))
    return convs


def convert(fmt: str, inp: str | os.PathLike, out: str | os.PathLike, *,
            audio_root: str | os.PathLike | None = None, audio_template: str | None = None,
            check_audio: bool = True, skip_bad: bool = False,
            errors_path: str | os.PathLike | None = None,
            encoding: str = "utf-8", output_tokens: int = 8) -> tuple[int, int]:
    """Convert ``inp`` in ``fmt`` to a conversation JSONL at ``out``; returns (written, bad).

    Audio paths (and image paths, and a generation target's audio) are ``audio_root /
    audio_template.format(row fields)`` (``audio_root`` defaults to the input's folder) and
    are written relative to ``out``'s folder. ``output_tokens`` is the number of ``[AUDi]``
    tokens the generation formats write. ``out``
    is written atomically: a stopped conversion leaves no partial file and no temporary
    file. With ``skip_bad`` each bad row goes to ``errors_path`` (default: ``errors.jsonl``
    beside ``out``) as ``{"input": "file:line", "error": ...}``.

    Raises:
        ValueError: an unknown format.
        DataError: the input is missing or not text in ``encoding`` (``file:line``, the
            encoding tried), an unknown encoding, or a bad row (``file:line``: what is
            wrong) unless ``skip_bad``.
        OutputError: ``out`` cannot be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    inp, out = Path(inp), Path(out)
    if not inp.is_file():
        raise DataError(f"{inp}: input file not found")
    encoding = check_encoding(encoding)
    check_output_path(out, error=OutputError)
    reader, conv_fn, default_tpl = FORMATS[fmt]
    if fmt in GENERATION_FORMATS:
        conv_fn = functools.partial(conv_fn, output_tokens=output_tokens)
    tpl = audio_template or default_tpl
    root = Path(audio_root) if audio_root is not None else inp.parent
    out_dir = out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    errors_path = Path(errors_path) if errors_path else out_dir / "errors.jsonl"
    written, bad = 0, 0
    seen: set[str] = set()
    with atomic_open(out) as f:
        for line, row in reader(inp, encoding):
            where = f"{inp}:{line}"
            try:
                convs = _convert_row(row, conv_fn, tpl, root, out_dir, where, check_audio)
            except Exception as e:  # every bad row is named, whatever broke in it
                text = str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}"
                msg = text if text.startswith(str(inp)) else f"{where}: {text}"
                if not skip_bad:
                    raise DataError(msg) from None
                append_errors(errors_path, [{"input": where, "error": msg}])
                bad += 1
                continue
            for c in convs:
                c.id = _unique(c.id, seen)
                f.write(json_line(c.to_dict()))
                written += 1
    return written, bad


def _unique(cid: str, seen: set[str]) -> str:
    """``cid``, or ``cid-2``, ``cid-3`` ... when an earlier entry has it (file order)."""
    out, n = cid, 1
    while out in seen:
        n += 1
        out = f"{cid}-{n}"
    seen.add(out)
    return out


# Public names of the line-numbered readers, for other readers of published formats
# (mullm.eval.mcq_items).
iter_csv_records = _iter_csv
iter_json_records = _iter_json
