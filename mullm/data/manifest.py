"""Manifests: the lists of audio files that ``extract``, ``caption`` and ``eval`` read.

Accepted (INTERFACES.md, Manifests):

- a conversation JSONL (``audio``: a list of paths, or one path),
- a ``metadata.jsonl`` (``audio``: one path),
- a CSV with an ``audio`` (or ``path``) column,
- a text file with one path per line (``#`` comments allowed),
- a folder (searched recursively for audio extensions),
- a glob (``music/**/*.flac``),
- a single audio file, or a list of any of these.

Relative paths in a JSONL/CSV/text file are relative to that file's folder. Each item's
``id`` is its path relative to the input root (the manifest's folder, the searched folder,
the glob's fixed prefix), so ids stay unique when stems repeat. A file listed twice is
kept once. Malformed rows raise ``DataError`` naming the file and line; files are not
opened here (a missing or bad audio file is the batch job's error record, not a crash).
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mullm.audio import AUDIO_EXTENSIONS
from mullm.errors import DataError
from mullm.utils.jsonl import iter_jsonl

_TABLE_SUFFIXES = (".jsonl", ".csv", ".txt", ".lst")


@dataclass
class ManifestItem:
    """One input: a unique id, the absolute path, and where it was listed."""

    id: str
    path: str
    source: str
    line: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """``source:line`` (or just the source) for error messages."""
        return f"{self.source}:{self.line}" if self.line is not None else self.source


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _rel_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _abs(raw: str, base: Path) -> Path:
    p = Path(os.path.expanduser(raw))
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _audio_field(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, list):
        values = value
    else:
        raise DataError(f"{where}: {key!r} must be a path or a list of paths, got "
                        f"{type(value).__name__}")
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"{where}: {key!r} holds {v!r}; expected a non-empty path string")
    return values


def _read_jsonl(path: Path) -> list[ManifestItem]:
    base = path.parent
    items = []
    for line in iter_jsonl(path):
        row, where = line.object, line.where
        key = "audio" if "audio" in row else "path" if "path" in row else None
        if key is None:
            if "images" in row or "turns" in row:
                continue  # a conversation with no audio (image-only or text-only)
            raise DataError(f"{where}: no 'audio' field (keys: {sorted(row)})")
        if row[key] in (None, []):
            continue  # an explicit "no audio" conversation row
        meta = {k: v for k, v in row.items() if k in ("id", "split", "task")}
        for rel in _audio_field(row[key], where, key):
            p = _abs(rel, base)
            items.append(ManifestItem(_rel_id(p, base), str(p), str(path), line.number, meta))
    return items


def _read_csv(path: Path) -> list[ManifestItem]:
    base = path.parent
    items = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        key = "audio" if "audio" in cols else "path" if "path" in cols else None
        if key is None:
            raise DataError(f"{path}:1: CSV needs an 'audio' or 'path' column, has {cols}")
        for n, row in enumerate(reader, 2):
            value = (row.get(key) or "").strip()
            if not value:
                raise DataError(f"{path}:{n}: empty {key!r} value")
            p = _abs(value, base)
            items.append(ManifestItem(_rel_id(p, base), str(p), str(path), n))
    return items


def _read_list(path: Path) -> list[ManifestItem]:
    base = path.parent
    items = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        p = _abs(line, base)
        items.append(ManifestItem(_rel_id(p, base), str(p), str(path), n))
    return items


def _is_audio(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_EXTENSIONS


def _read_folder(path: Path) -> list[ManifestItem]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and _is_audio(p))
    return [ManifestItem(_rel_id(p, path), str(p.resolve()), str(path)) for p in files]


def _read_glob(pattern: str) -> list[ManifestItem]:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    files = [p for p in files if p.is_file() and _is_audio(p)]
    return [ManifestItem(_rel_id(p.resolve(), root.resolve()), str(p.resolve()), pattern)
            for p in files]


def _read_one(spec: str) -> list[ManifestItem]:
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return _read_folder(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".csv":
            return _read_csv(path)
        if suffix in (".txt", ".lst"):
            return _read_list(path)
        if _is_audio(path):
            p = path.resolve()
            return [ManifestItem(p.name, str(p), str(path))]
        raise DataError(
            f"{path}: not a manifest: expected a .jsonl, .csv or .txt list, a folder, a glob "
            f"or an audio file ({', '.join(AUDIO_EXTENSIONS)})"
        )
    if _is_glob(spec):
        return _read_glob(spec)
    if _is_audio(path):
        # A listed audio file that is missing: let the batch job record it.
        p = path.absolute()
        return [ManifestItem(p.name, str(p), str(path))]
    raise DataError(f"{spec}: manifest not found (no such file, folder or glob match)")


def read_manifest(spec: str | os.PathLike | list[str | os.PathLike]) -> list[ManifestItem]:
    """Read one manifest or a list of them into unique items (first listing wins)."""
    specs = [str(s) for s in spec] if isinstance(spec, (list, tuple)) else [str(spec)]
    if not specs:
        raise DataError("empty manifest list")
    direct = all(Path(s).suffix.lower() in AUDIO_EXTENSIONS and not _is_glob(s)
                 for s in specs) and len(specs) > 1
    items: list[ManifestItem] = []
    for s in specs:
        items.extend(_read_one(s))
    if direct:
        # A plain list of files: ids relative to their common folder keep them unique.
        root = Path(os.path.commonpath([os.path.dirname(i.path) for i in items]))
        for i in items:
            i.id = _rel_id(Path(i.path), root)
    seen: dict[str, ManifestItem] = {}
    ids: dict[str, str] = {}
    out = []
    for item in items:
        if item.path in seen:
            continue
        if item.id in ids and ids[item.id] != item.path:
            # Same relative id from two roots: fall back to the absolute path.
            item.id = item.path
        seen[item.path] = item
        ids[item.id] = item.path
        out.append(item)
    if not out:
        raise DataError(f"{', '.join(specs)}: manifest lists no audio files "
                        f"(extensions: {', '.join(AUDIO_EXTENSIONS)})")
    return out


__all__ = ["ManifestItem", "read_manifest"]
