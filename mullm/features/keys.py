"""The feature cache's format: file names, item keys, settings checks, file stamps.

An item is keyed by sha256 of (the audio file's content hash, the encoder fingerprint, the
windowing, the augmentation tag), so a changed file, encoder or setting never hits a stale
entry. Hashing a file means reading it, so the index also records, per resolved path, the
key it had and the file's size and modification time at extraction: an unchanged file (or
one that is gone) is looked up by path without being read.
"""

from __future__ import annotations

import os
from pathlib import Path

from mullm.errors import MullmError
from mullm.utils.hashing import json_sha256

CACHE_VERSION = 1
INDEX = "index.json"
ERRORS = "errors.jsonl"
LOCK = ".lock"


class StaleCacheError(MullmError, ValueError):
    """A feature cache made with a different encoder or settings than the one asked for."""


def fingerprint_hash(fingerprint: dict) -> str:
    """Stable sha256 of an encoder fingerprint dict."""
    return json_sha256(fingerprint)


def item_key(content_sha256: str, encoder_hash: str, windowing: dict,
             augment: str | None = None) -> str:
    """The cache key of one input: content, encoder, windowing and augmentation."""
    return json_sha256({"content": content_sha256, "encoder": encoder_hash,
                        "windowing": windowing, "augment": augment})


def resolve_layers(layers: str | int | list[int], num_layers: int) -> list[int]:
    """Layers to keep as sorted non-negative indices ("all", an index, or a list).

    Raises:
        ValueError: an index outside ``-num_layers .. num_layers - 1``.
    """
    if layers == "all":
        return list(range(num_layers))
    idx = [layers] if isinstance(layers, int) else list(layers)
    out = []
    for i in idx:
        j = i + num_layers if i < 0 else i
        if not 0 <= j < num_layers:
            raise ValueError(f"layer {i} does not exist; the encoder has {num_layers} layers")
        out.append(j)
    return sorted(set(out))


def describe_differences(expected: dict, found: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two fingerprint dicts ("frame_rate 25.0 != 50.0")."""
    diffs = []
    for key in sorted(set(expected) | set(found)):
        a, b = found.get(key, "<unset>"), expected.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += describe_differences(b, a, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key} {a} != {b}")
    return diffs


def resolved(path: str | os.PathLike) -> str:
    """The absolute, symlink-free form of ``path`` the index records (works for a file that
    no longer exists)."""
    return str(Path(path).resolve())


def file_stamp(path: str | os.PathLike) -> dict[str, int]:
    """``{"size": bytes, "mtime_ns": ...}`` of a file: what the index compares to decide a
    file is unchanged without reading it.

    Raises:
        OSError: the file cannot be stat'ed (FileNotFoundError when it is gone).
    """
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def same_stamp(entry: dict, stamp: dict[str, int]) -> bool:
    """True when a path entry recorded this size and modification time."""
    return entry.get("size") == stamp["size"] and entry.get("mtime_ns") == stamp["mtime_ns"]
