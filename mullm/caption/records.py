"""The caption file: durable JSONL records (``mullm.utils.records``) and the settings sidecar
beside it, ``FILE.jsonl.meta.json``, which holds the model fingerprint and the settings of the
records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mullm.caption.settings import CaptionJobError
from mullm.utils.atomic import atomic_write_text
from mullm.utils.records import (  # noqa: F401 - the caption package's record I/O
    RecordWriter,
    encode_record,
    read_records,
    repair_tail,
    rewrite_records,
)

META_SUFFIX = ".meta.json"
FORMAT = "mullm.caption/1"
RECORD_KEYS = ("id", "path", "caption", "segments", "error", "duration_s", "model", "prompt",
               "generation")
# The sidecar keys that must match for records to be mixed in one file.
_SETTINGS_KEYS = ("model_fingerprint", "prompt", "generation")


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
