"""Durable JSONL records: the output files of batch jobs (captions, evaluations, generated
music) that must never lose or duplicate a result.

Each record is one ``os.write`` of a whole line followed by ``fsync``, so SIGKILL at any
moment leaves complete records plus at most one partial last line, which ``repair_tail``
cuts away on the next start. Whole-file rewrites are atomic.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mullm.errors import DataError
from mullm.utils.atomic import atomic_write_bytes
from mullm.utils.jsonl import iter_jsonl, json_line
from mullm.utils.locks import exclusive_lock


def encode_record(rec: dict[str, Any]) -> bytes:
    """One record as a UTF-8 JSON line. A path or id from a file name that is not valid
    UTF-8 is written with ``\\udcXX`` escapes (``mullm.utils.jsonl.json_line``), so it
    reads back as the same ``str`` and ``os.fsencode`` gives the original bytes.

    Raises:
        ValueError: NaN or infinity in the record (not JSON).
        TypeError: a value JSON cannot hold.
    """
    return json_line(rec).encode("utf-8")


class RecordWriter:
    """Appends one record per line: one ``os.write`` of the whole line, then ``fsync``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fd = os.open(str(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, rec: dict[str, Any]) -> None:
        """Append ``rec`` durably."""
        view = memoryview(encode_record(rec))
        while view:  # a regular file takes it whole; the loop only guards short writes
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair_tail(path: str | os.PathLike) -> int:
    """Cut a trailing partial line (no final newline) left by a killed writer; returns the
    number of bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Scan back in blocks for the last newline.
        pos, block = size, 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a record file (complete lines only; none when it does not exist).

    Raises:
        DataError: a line that is not a record (an object with an ``id``), naming
            ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in iter_jsonl(path, complete_only=True):
        try:
            rec = line.object
        except DataError as exc:
            raise DataError(f"{exc}; the record file was edited or damaged") from None
        if "id" not in rec:
            raise DataError(f"{line.where}: not a record (no 'id')")
        out.append(rec)
    return out


def rewrite_records(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Atomically replace a record file with ``records``."""
    atomic_write_bytes(path, b"".join(encode_record(r) for r in records))


@contextlib.contextmanager
def locked_records(path: str | os.PathLike, *, what: str,
                   log: Callable[[str], None]) -> Iterator[list[dict[str, Any]]]:
    """Hold ``PATH.lock`` for the block (one writer per record file), cut a partial last line
    left by a killed run (saying so to ``log``) and yield the file's records.

    Raises:
        LockedError: another job holds the lock; ``what`` says what it is doing.
        DataError: as ``read_records``.
    """
    with exclusive_lock(Path(str(path) + ".lock"), what=f"{path}: {what}",
                        remedy="wait for it or use another --out"):
        cut = repair_tail(path)
        if cut:
            log(f"{path}: removed a partial last line ({cut} bytes) left by an interrupted run")
        yield read_records(path)


def best_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per id, in the order ids first appear: a success beats a failure, else the
    first one."""
    best: dict[str, dict[str, Any]] = {}
    for r in records:
        prev = best.get(r["id"])
        if prev is None or (prev.get("error") and not r.get("error")):
            best[r["id"]] = r
    return best


def keep_records(path: str | os.PathLike, records: list[dict[str, Any]],
                 retry_failed: bool = False) -> dict[str, dict[str, Any]]:
    """The records a resumed job keeps, by id: ``best_records`` of ``records`` (the file's
    records), less the failed ones with ``retry_failed`` (their items run again). The file
    is rewritten only when that drops a line (a duplicate or a failure)."""
    keep = [r for r in best_records(records).values()
            if not (retry_failed and r.get("error"))]
    if len(keep) != len(records):
        rewrite_records(path, keep)
    return {r["id"]: r for r in keep}


@dataclass
class RecordJobStats:
    """Counts and times of a resumable record job (captioning, music generation); each job's
    stats add their own fields and summary table."""

    skipped: int = 0  # already recorded in the output
    succeeded: int = 0  # new records without an error
    failed: int = 0  # new records with an error
    audio_s: float = 0.0  # seconds of audio in the new successful records
    wall_s: float = 0.0  # seconds the job took

    def count(self, rec: dict[str, Any]) -> None:
        """Count one new record: a failure, or a success and its ``duration_s``."""
        if rec["error"]:
            self.failed += 1
        else:
            self.succeeded += 1
            self.audio_s += rec["duration_s"] or 0.0


__all__ = ["RecordJobStats", "RecordWriter", "best_records", "encode_record", "keep_records",
           "locked_records", "read_records", "repair_tail", "rewrite_records"]
