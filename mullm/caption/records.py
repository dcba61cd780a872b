"""The caption file: durable JSONL records and the settings sidecar beside it.

Each record is one ``os.write`` of a whole line followed by ``fsync``, so SIGKILL at any
moment leaves complete records plus at most one partial last line, which ``repair_tail``
cuts away on the next start. Whole-file rewrites (``--retry-failed``, merging) are atomic.
``FILE.jsonl.meta.json`` holds the model fingerprint and the settings of the records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mullm.caption.settings import CaptionJobError
from mullm.errors import DataError
from mullm.utils.atomic import atomic_write_bytes, atomic_write_text
from mullm.utils.jsonl import iter_jsonl, json_line

META_SUFFIX = ".meta.json"
FORMAT = "mullm.caption/1"
RECORD_KEYS = ("id", "path", "caption", "segments", "error", "duration_s", "model", "prompt",
               "generation")
# The sidecar keys that must match for records to be mixed in one file.
_SETTINGS_KEYS = ("model_fingerprint", "prompt", "generation")


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
    """All records of a caption file (complete lines only; none when it does not exist).

    Raises:
        DataError: a line that is not a record, naming ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in iter_jsonl(path, complete_only=True):
        try:
            rec = line.object
        except DataError as exc:
            raise DataError(f"{exc}; the caption file was edited or damaged") from None
        if "id" not in rec:
            raise DataError(f"{line.where}: not a caption record (no 'id')")
        out.append(rec)
    return out


def rewrite_records(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Atomically replace a caption file with ``records``."""
    atomic_write_bytes(path, b"".join(encode_record(r) for r in records))


def meta_path(out: str | os.PathLike) -> Path:
    """The sidecar next to a caption file."""
    return Path(str(out) + META_SUFFIX)


def write_meta(out: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Atomically write the sidecar of caption file ``out``."""
    atomic_write_text(meta_path(out), json.dumps(meta, indent=2) + "\n")


def read_meta(out: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of caption file ``out``.

    Raises:
        CaptionJobError: it is missing or damaged (naming it and what to do).
    """
    mpath = meta_path(out)
    if not mpath.is_file():
        raise CaptionJobError(f"{mpath}: missing; the model and settings of the records in "
                              f"{out} are unknown; restore it or write to a new --out")
    try:
        return json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise CaptionJobError(f"{mpath}: damaged settings file ({exc.msg}); restore it or "
                              "write to a new --out") from None


def settings_key(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of a sidecar that must match for records to be mixed."""
    return {k: meta.get(k) for k in _SETTINGS_KEYS}


def describe_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Every setting that differs between two sidecars, "file has X, this run Y"."""
    diffs = []
    for k in ("model_fingerprint", "prompt"):
        if old.get(k) != new.get(k):
            diffs.append(f"{k}: file has {old.get(k)!r}, this run {new.get(k)!r}")
    og, ng = old.get("generation") or {}, new.get("generation") or {}
    for k in sorted(set(og) | set(ng)):
        if og.get(k) != ng.get(k):
            diffs.append(f"generation.{k}: file has {og.get(k)!r}, this run {ng.get(k)!r}")
    if old.get("shard") != new.get("shard"):
        diffs.append(f"shard: file has {old.get('shard')!r}, this run {new.get('shard')!r}")
    return "; ".join(diffs)
