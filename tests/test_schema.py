"""Conversation schema: validation rules, file:line errors, --skip-bad recording."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mullm.data.schema import (
    Conversation,
    read_conversations,
    validate_conversation,
    write_conversations,
)
from mullm.errors import DataError

DATA = Path(__file__).parent / "data"


def _copy(tmp_path: Path, name: str) -> Path:
    sf.write(tmp_path / "clip.wav", np.zeros(1600, dtype=np.float32), 16000)
    dst = tmp_path / name
    shutil.copy(DATA / name, dst)
    return dst


def test_reads_valid_sample(tmp_path: Path) -> None:
    convs = read_conversations(_copy(tmp_path, "conversations_sample.jsonl"))
    assert [c.id for c in convs] == ["c1", "c2", "c3", "c4"]
    assert convs[1].audio_paths() == [tmp_path / "clip.wav"] * 2
    assert convs[3].choices == ["brass", "strings"] and convs[3].answer == 1
    assert convs[2].turns[0]["role"] == "system"


def test_round_trip(tmp_path: Path) -> None:
    convs = read_conversations(_copy(tmp_path, "conversations_sample.jsonl"))
    out = tmp_path / "again.jsonl"
    write_conversations(out, convs)
    again = read_conversations(out)
    assert [c.to_dict() for c in again] == [c.to_dict() for c in convs]


def test_first_bad_line_fails_with_file_and_line(tmp_path: Path) -> None:
    path = _copy(tmp_path, "conversations_bad.jsonl")
    with pytest.raises(DataError, match=r"conversations_bad\.jsonl:2: malformed JSON"):
        read_conversations(path)


def test_skip_bad_records_every_bad_line(tmp_path: Path) -> None:
    path = _copy(tmp_path, "conversations_bad.jsonl")
    errors = tmp_path / "run" / "errors.jsonl"
    convs = read_conversations(path, skip_bad=True, errors_path=errors)
    assert [c.id for c in convs] == ["ok1", "ok2"]
    recs = [json.loads(x) for x in errors.read_text().splitlines()]
    lines = [int(r["input"].rsplit(":", 1)[1]) for r in recs]
    assert lines == [2, 3, 4, 5, 6, 7, 8]
    msgs = " | ".join(r["error"] for r in recs)
    for needle in ("malformed JSON", "does not exist", "unknown field(s) ['labels']",
                   "no assistant turn", "2 <audio> marker(s) but 1 audio", "roles must alternate",
                   "task 'translate'"):
        assert needle in msgs


@pytest.mark.parametrize("bad, msg", [
    ({"choices": ["a", "b"], "answer": 2}, "answer must be an index"),
    ({"task": "mcq"}, "needs choices"),
    ({"answer": 0}, "answer given without choices"),
    ({"turns": [{"role": "user", "content": "x", "extra": 1}]}, "exactly role and content"),
    ({"id": ""}, "non-empty string"),
    ({"images": ["a.png"], "turns": [{"role": "user", "content": "<image><image>"},
                                     {"role": "assistant", "content": "y"}]}, "<image> marker"),
])
def test_validation_messages(bad: dict, msg: str) -> None:
    base = {"id": "x", "audio": [], "images": [], "task": "qa",
            "turns": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(DataError, match=msg):
        validate_conversation({**base, **bad}, where="f.jsonl:9", check_files=False)


def test_duplicate_ids_rejected(tmp_path: Path) -> None:
    c = Conversation(id="a", task="chat", turns=[{"role": "user", "content": "q"},
                                                 {"role": "assistant", "content": "a"}])
    p = tmp_path / "d.jsonl"
    write_conversations(p, [c, c])
    with pytest.raises(DataError, match=r"d\.jsonl:2: .*duplicate id 'a'"):
        read_conversations(p)
