"""Converters on data sets as released and files as users save them: many QA entries per
clip, bad rows of every kind, byte-order marks and other encodings."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from mullm.cli import main as cli
from mullm.data.converters import convert
from mullm.data.schema import read_conversations
from mullm.errors import DataError

DATA = Path(__file__).parent / "data"
QUESTIONS = ["Describe the audio", "What is the mood of this music?", "What is the tempo?",
             "Which instruments play?", "What genre is it?", "Is there a vocalist?",
             "What key is it in?", "What is the time signature?", "Where could it be used?"]


def _musicqa_release(path: Path) -> list[dict]:
    """MusicQA as MU-LLaMA released it: one JSON entry per question-answer pair, nine
    entries per clip."""
    entries = [{"audio_name": clip, "conversation": [
        {"from": "human", "value": q}, {"from": "gpt", "value": f"Answer {i} about {clip}."}]}
        for clip in ("000001.wav", "000002.wav") for i, q in enumerate(QUESTIONS)]
    path.write_text(json.dumps(entries, indent=2))
    return entries


def _ids(out: Path) -> list[str]:
    return [json.loads(x)["id"] for x in out.read_text().splitlines()]


def test_musicqa_as_released_keeps_every_pair_with_stable_unique_ids(tmp_path: Path) -> None:
    src = tmp_path / "MusicQA.json"
    _musicqa_release(src)
    assert convert("musicqa", src, tmp_path / "a.jsonl", check_audio=False) == (18, 0)
    ids = _ids(tmp_path / "a.jsonl")
    assert len(set(ids)) == 18 and all(i.startswith("musicqa-00000") for i in ids)
    # Stable across runs, and independent of the file's order.
    entries = json.loads(src.read_text())
    (tmp_path / "rev.json").write_text(json.dumps(entries[::-1]))
    assert convert("musicqa", tmp_path / "rev.json", tmp_path / "b.jsonl",
                   check_audio=False) == (18, 0)
    assert sorted(_ids(tmp_path / "b.jsonl")) == sorted(ids)
    convs = read_conversations(tmp_path / "a.jsonl", check_files=False)
    assert {c.turns[0]["content"] for c in convs} == set(QUESTIONS)


def test_musicinstruct_many_questions_per_ytid(tmp_path: Path) -> None:
    qa = [{"ytid": "-0Gj8-vB1q4", "question": q, "answer": f"A{i}.",
           "is_audioset_eval": False} for i, q in enumerate(QUESTIONS[:5])]
    qa.append(dict(qa[0]))  # an exact duplicate entry is kept, with a -2 id
    (tmp_path / "mi.json").write_text(json.dumps({"QA": qa}))
    assert convert("musicinstruct", tmp_path / "mi.json", tmp_path / "o.jsonl",
                   check_audio=False) == (6, 0)
    ids = _ids(tmp_path / "o.jsonl")
    assert len(set(ids)) == 6 and ids[5] == ids[0] + "-2"


def _musiccaps_rows() -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO((DATA / "musiccaps_sample.csv").read_text()))
    return list(reader.fieldnames or []), list(reader)


def _write_csv(path: Path, fields: list[str], rows: list[dict], encoding: str = "utf-8",
               ) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))


def test_musiccaps_bad_start_is_a_named_bad_row(tmp_path: Path, capsys) -> None:
    fields, rows = _musiccaps_rows()
    rows[1]["start_s"] = "n/a"
    rows[2]["caption"] = "   "
    src = tmp_path / "mc.csv"
    _write_csv(src, fields, rows)
    out = tmp_path / "out" / "mc.jsonl"
    with pytest.raises(DataError, match=r"mc\.csv:3: start_s 'n/a' is not a number"):
        convert("musiccaps", src, out, check_audio=False)
    assert not out.parent.exists() or not list(out.parent.iterdir())  # no .tmp left
    rc = cli(["convert", "--from", "musiccaps", str(src), "--out", str(out),
              "--no-check-audio"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mullm convert: error: ") and "mc.csv:3: start_s 'n/a'" in err
    assert not out.parent.exists() or not list(out.parent.iterdir())
    rc = cli(["convert", "--from", "musiccaps", str(src), "--out", str(out),
              "--no-check-audio", "--skip-bad"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip())["written"] == 2  # row 2: caption, tags
    errors = [json.loads(x) for x in (out.parent / "errors.jsonl").read_text().splitlines()]
    assert [e["input"] for e in errors] == [f"{src}:3", f"{src}:4"]
    assert "blank field(s) ['caption']" in errors[1]["error"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["errors.jsonl", "mc.jsonl"]


def test_any_exception_in_a_row_is_a_bad_row(tmp_path: Path) -> None:
    src = tmp_path / "mc.csv"
    shutil.copy(DATA / "musiccaps_sample.csv", src)
    # A format spec the values do not fit: str.format raises ValueError in every row.
    with pytest.raises(DataError, match=r"mc\.csv:2: ValueError: .*format code"):
        convert("musiccaps", src, tmp_path / "o.jsonl", check_audio=False,
                audio_template="{ytid:d}.wav")
    n, bad = convert("musiccaps", src, tmp_path / "o.jsonl", check_audio=False,
                     audio_template="{ytid:d}.wav", skip_bad=True)
    assert (n, bad) == (0, 3)
    rows = [{"track_id": "t1", "caption_writing": "fine", "path": 12}]
    (tmp_path / "lp.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"lp\.json:1: TypeError: "):
        convert("lpmusiccaps", tmp_path / "lp.json", tmp_path / "o.jsonl", check_audio=False)


def test_blank_answers_are_refused_by_name(tmp_path: Path) -> None:
    entries = _musicqa_release(tmp_path / "qa.json")
    entries[3]["conversation"][1]["value"] = " \t "
    (tmp_path / "qa.json").write_text(json.dumps(entries, indent=2))
    with pytest.raises(DataError, match=r"qa\.json:\d+: conversation\[1\] \(gpt\) has a blank "
                                        r"value"):
        convert("musicqa", tmp_path / "qa.json", tmp_path / "o.jsonl", check_audio=False)
    qa = [{"ytid": "x", "question": "Tempo?", "answer": ""}]
    (tmp_path / "mi.json").write_text(json.dumps(qa))
    with pytest.raises(DataError, match=r"missing field\(s\) \['answer'\]"):
        convert("musicinstruct", tmp_path / "mi.json", tmp_path / "o.jsonl", check_audio=False)
    llark = [{"id": "1", "response": [{"question": "Key?", "answer": "  "}]}]
    (tmp_path / "l.json").write_text(json.dumps(llark))
    with pytest.raises(DataError, match=r"response\[0\]: blank field\(s\) \['answer'\]"):
        convert("llark", tmp_path / "l.json", tmp_path / "o.jsonl", check_audio=False)


def test_byte_order_marks_are_accepted(tmp_path: Path) -> None:
    fields, rows = _musiccaps_rows()
    _write_csv(tmp_path / "bom.csv", fields, rows, encoding="utf-8-sig")
    assert convert("musiccaps", tmp_path / "bom.csv", tmp_path / "a.jsonl",
                   check_audio=False) == (6, 0)
    _write_csv(tmp_path / "u16.csv", fields, rows, encoding="utf-16")  # with its BOM
    assert convert("musiccaps", tmp_path / "u16.csv", tmp_path / "b.jsonl",
                   check_audio=False) == (6, 0)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    _musicqa_release(tmp_path / "qa.json")
    bom = tmp_path / "qa-bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "qa.json").read_bytes())
    assert convert("musicqa", bom, tmp_path / "c.jsonl", check_audio=False) == (18, 0)
    lp = (DATA / "lpmusiccaps_sample.jsonl").read_bytes()
    (tmp_path / "lp.jsonl").write_bytes(b"\xef\xbb\xbf" + lp)
    assert convert("lpmusiccaps", tmp_path / "lp.jsonl", tmp_path / "d.jsonl",
                   check_audio=False) == (8, 0)


def test_other_encodings_name_file_line_and_encoding(tmp_path: Path, capsys) -> None:
    fields, rows = _musiccaps_rows()
    rows[1]["caption"] = "A café-style “smart” waltz – naïve and sweet."
    src = tmp_path / "win.csv"
    _write_csv(src, fields, rows, encoding="cp1252")
    with pytest.raises(DataError, match=r"win\.csv:3: not UTF-8 text \(byte 0x.. at column "
                                        r"\d+\); name the file's encoding with --encoding"):
        convert("musiccaps", src, tmp_path / "o.jsonl", check_audio=False, skip_bad=True)
    rc = cli(["convert", "--from", "musiccaps", str(src), "--out", str(tmp_path / "o.jsonl"),
              "--no-check-audio", "--encoding", "cp1252"])
    assert rc == 0, capsys.readouterr().err
    convs = read_conversations(tmp_path / "o.jsonl", check_files=False)
    assert convs[2].turns[1]["content"] == rows[1]["caption"]
    rc = cli(["convert", "--from", "musiccaps", str(src), "--out", str(tmp_path / "p.jsonl"),
              "--encoding", "klingon"])
    assert rc == 2 and "unknown encoding 'klingon'" in capsys.readouterr().err
