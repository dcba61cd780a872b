"""mullm.utils: atomic writes, the exclusive lock, JSONL errors, dtypes, hashes, music."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mullm.errors import DataError
from mullm.utils.atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text
from mullm.utils.dtypes import torch_dtype
from mullm.utils.hashing import file_sha256, json_sha256, module_weights_hash, wave_sha256
from mullm.utils.jsonl import iter_jsonl
from mullm.utils.locks import LockedError, exclusive_lock
from mullm.utils.music import PITCH_NAMES, pitch_class, tempo_class
from mullm.utils.records import (
    RecordJobStats,
    best_records,
    keep_records,
    read_records,
    rewrite_records,
)

# ------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    f = tmp_path / "a.json"
    atomic_write_text(f, "old")
    atomic_write_bytes(f, b"new")
    assert f.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_write_error_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_open(f) as out:
        out.write("half of the new conten")
        raise RuntimeError("disk on fire")
    assert f.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]


def test_atomic_path_keeps_suffix_for_format_sniffing_writers(tmp_path: Path) -> None:
    import soundfile as sf

    dest = tmp_path / "clip.wav"
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".wav" and tmp.name.startswith(".")
        sf.write(tmp, np.zeros(160, np.float32), 16000)  # format chosen from the suffix
    assert sf.info(dest).format == "WAV"
    with pytest.raises(FileNotFoundError, match="created no file"), atomic_path(dest):
        pass  # a writer that wrote nothing must not look like success
    with pytest.raises(ValueError, match="expected 'w' or 'wb'"), atomic_open(dest, "a"):
        pass


# ------------------------------------------------------------------------------- locks


def test_lock_refuses_a_second_holder_naming_the_file(tmp_path: Path) -> None:
    lock = tmp_path / "out.jsonl.lock"
    with exclusive_lock(lock, what="a job is writing out.jsonl", remedy="wait for it"):
        with pytest.raises(LockedError) as info, exclusive_lock(lock, what="x", remedy="y"):
            pass
        msg = str(info.value)
        assert str(lock) in msg and "x" in msg and "y" in msg
    with exclusive_lock(lock, what="x", remedy="y"):  # released: free again
        pass


def test_lock_held_by_another_process_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "cache" / ".lock"
    code = textwrap.dedent(f"""
        import sys, time
        from mullm.utils.locks import exclusive_lock
        with exclusive_lock({str(lock)!r}, what="w", remedy="r"):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match="another extract"), \
                exclusive_lock(lock, what="another extract is writing", remedy="wait"):
            pass
    finally:
        p.communicate("\n", timeout=60)
    with exclusive_lock(lock, what="w", remedy="r"):  # the holder exited: free
        pass


# ------------------------------------------------------------------------------- JSONL


def test_jsonl_lines_and_errors_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "m.jsonl"
    f.write_text('{"a": 1}\n\n[1, 2]\n{oops\n')
    lines = list(iter_jsonl(f))
    assert [x.number for x in lines] == [1, 3, 4]  # blank lines skipped, numbers kept
    assert lines[0].object == {"a": 1} and lines[1].value == [1, 2]
    with pytest.raises(DataError, match=r"m\.jsonl:3: expected a JSON object, got list"):
        _ = lines[1].object
    with pytest.raises(DataError, match=r"m\.jsonl:4: malformed JSON \(.* at column 2\)"):
        _ = lines[2].value


def test_jsonl_complete_only_drops_a_partial_last_line(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_bytes(b'{"id": "a"}\n{"id": "b", "cap')
    assert [x.value["id"] for x in iter_jsonl(f, complete_only=True)] == ["a"]
    assert len(list(iter_jsonl(f))) == 2
    f.write_bytes(b'{"id": "a"}\n\xff\xfe\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2: not UTF-8"):
        list(iter_jsonl(f))


def test_keep_records_one_per_id_success_first_and_retry_drops_failures(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    recs = [{"id": "a", "error": "x"}, {"id": "b"}, {"id": "a"}, {"id": "c", "error": "y"},
            {"id": "b", "error": "z"}]
    assert best_records(recs) == {"a": recs[2], "b": recs[1], "c": recs[3]}
    rewrite_records(f, recs)
    assert list(keep_records(f, recs)) == ["a", "b", "c"]
    assert read_records(f) == [recs[2], recs[1], recs[3]]  # duplicates collapsed
    assert list(keep_records(f, read_records(f), retry_failed=True)) == ["a", "b"]
    assert read_records(f) == [recs[2], recs[1]]
    before = f.stat().st_mtime_ns
    assert list(keep_records(f, read_records(f), retry_failed=True)) == ["a", "b"]
    assert f.stat().st_mtime_ns == before  # nothing to drop: the file is not rewritten


def test_record_job_stats_count_outcomes_and_audio() -> None:
    stats = RecordJobStats()
    for rec in ({"error": None, "duration_s": 2.5}, {"error": "bad", "duration_s": None},
                {"error": None, "duration_s": None}):
        stats.count(rec)
    assert (stats.succeeded, stats.failed, stats.audio_s) == (2, 1, 2.5)


# ---------------------------------------------------------------------- dtypes, hashes


def test_torch_dtype_names() -> None:
    assert torch_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match=r"'fp8' is not one of \['bfloat16', 'float16'"):
        torch_dtype("fp8")


def test_hashes(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    assert file_sha256(f, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
    wave = np.linspace(-1, 1, 100, dtype=np.float32)
    assert wave_sha256(wave, 16000) == wave_sha256(torch.from_numpy(wave), 16000)
    assert wave_sha256(wave, 16000) != wave_sha256(wave, 22050)
    assert json_sha256({"a": 1, "b": [1, 2]}) == json_sha256({"b": [1, 2], "a": 1})
    assert json_sha256({"a": 1}) != json_sha256({"a": 2})
    m = torch.nn.Linear(2, 2)
    before = module_weights_hash(m)
    assert module_weights_hash(m) == before
    with torch.no_grad():
        m.bias[0] += 1
    assert module_weights_hash(m) != before


# ------------------------------------------------------------------------------- music


def test_pitch_classes_and_tempo_classes() -> None:
    assert [pitch_class(n) for n in PITCH_NAMES] == list(range(12))
    assert pitch_class("Db") == pitch_class("c#") == 1 and pitch_class("Cb") == 11
    with pytest.raises(ValueError, match="unknown key 'H'"):
        pitch_class("H")
    assert [tempo_class(b) for b in (79.9, 80, 129.9, 130)] == ["slow", "moderate",
                                                                "moderate", "fast"]
