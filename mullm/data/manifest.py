"""Manifests: the lists of audio files that ``extract``, ``caption`` and ``eval`` read.

Accepted (INTERFACES.md, Manifests):

- a conversation JSONL (``audio``: a list of paths, or one path),
- a ``metadata.jsonl`` (``audio``: one path),
- a CSV with an ``audio`` (or ``path``) column,
- a text file with one path per line (``#`` comments allowed),
- a folder: every file in it and its subfolders, whatever its name or extension (symbolic
  links to folders are followed once; names starting with ``.`` are hidden and skipped,
  and the skip is reported),
- a glob (``music/**/*.flac``): every non-folder it matches,
- a file of any other kind, or a list of any of these. Only ``.jsonl``, ``.csv``, ``.txt``
  and ``.lst`` files are read as manifests; every other file is an audio input, so a list of
  paths is never mistaken for a manifest.

Whether a file is audio is the decoder's call (``mullm.audio``), not its extension's: a
file it cannot read becomes the batch job's error record (a broken link, a symlink loop, a
cover image, a truncated file), never a silent omission.

Relative paths in a JSONL/CSV/text file are relative to that file's folder. Each item's
``id`` is its path relative to the input root (the manifest's folder, the searched folder,
the glob's fixed prefix), so ids stay unique when stems repeat. A file listed twice is
kept once (the same path; a symbolic link is its own entry). Malformed rows raise
``DataError`` naming the file and line; audio files are not opened here.

File names that are not valid UTF-8 stay exact: paths are ``str`` with surrogate escapes
(PEP 383, as ``os.listdir`` gives them), and manifests are decoded the same way
(``surrogateescape``), so a Latin-1 list of Latin-1 names finds its files. A UTF-8 or
UTF-16 byte-order mark is accepted.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mullm.errors import DataError
from mullm.utils.jsonl import iter_jsonl
from mullm.utils.text import read_text

MANIFEST_SUFFIXES = (".jsonl", ".csv", ".txt", ".lst")
# Manifests list file names: undecodable bytes are kept as they are (see the docstring).
_NAMES = "surrogateescape"
_HINT = "save the manifest as UTF-8"


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
    for line in iter_jsonl(path, errors=_NAMES, hint=_HINT):
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
    reader = csv.DictReader(io.StringIO(read_text(path, errors=_NAMES, hint=_HINT),
                                        newline=""))
    cols = reader.fieldnames or []
    key = "audio" if "audio" in cols else "path" if "path" in cols else None
    if key is None:
        raise DataError(f"{path}:1: CSV needs an 'audio' or 'path' column, has {cols}")
    line = reader.line_num + 1
    for row in reader:
        value = (row.get(key) or "").strip()
        if not value:
            raise DataError(f"{path}:{line}: empty {key!r} value")
        p = _abs(value, base)
        items.append(ManifestItem(_rel_id(p, base), str(p), str(path), line))
        line = reader.line_num + 1
    return items


def _read_list(path: Path) -> list[ManifestItem]:
    base = path.parent
    items = []
    text = read_text(path, errors=_NAMES, hint=_HINT)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        p = _abs(line, base)
        items.append(ManifestItem(_rel_id(p, base), str(p), str(path), n))
    return items


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _read_folder(path: Path, notes: list[str]) -> list[ManifestItem]:
    """Every non-folder entry below ``path`` (files, links, broken links, loops, special
    files): the decoder decides what is audio. Linked folders are followed, each real
    folder once (a link back up the tree would loop forever)."""
    root = os.path.abspath(path)
    seen_dirs: set[tuple[int, int]] = set()
    hidden, unreadable, items = 0, [], []

    def on_error(exc: OSError) -> None:
        unreadable.append(f"{exc.filename} ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError as exc:  # removed while we walk
            on_error(exc)
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        hidden += sum(_hidden(d) for d in dirnames) + sum(_hidden(f) for f in filenames)
        # Real folders before links, so a folder reached both ways keeps its own path.
        dirnames[:] = sorted((d for d in dirnames if not _hidden(d)),
                             key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d))
        for name in filenames:
            if not _hidden(name):
                p = os.path.join(dirpath, name)
                items.append(ManifestItem(_rel_id(Path(p), Path(root)), p, str(path)))
    if hidden:
        notes.append(f"{path}: skipped {hidden} hidden entr{'y' if hidden == 1 else 'ies'} "
                     "(names starting with '.'); list them explicitly to include them")
    for what in unreadable:
        notes.append(f"{path}: cannot list the folder {what}: its files are not included")
    return sorted(items, key=lambda i: i.id)


def _read_glob(pattern: str) -> list[ManifestItem]:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    root = os.path.abspath(Path(*fixed) if fixed else Path("."))
    files = sorted(os.path.abspath(p) for p in glob.glob(pattern, recursive=True))
    return [ManifestItem(_rel_id(Path(p), Path(root)), p, pattern) for p in files
            if not os.path.isdir(p)]


def _kind(spec: str) -> str:
    """folder | manifest | file | glob: how ``spec`` is read."""
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return "folder"
    if path.exists() or path.is_symlink():
        return "manifest" if path.suffix.lower() in MANIFEST_SUFFIXES else "file"
    if _is_glob(spec):
        return "glob"
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        raise DataError(f"{spec}: manifest not found")
    if spec.endswith(("/", os.sep)):
        raise DataError(f"{spec}: folder not found")
    return "file"  # a listed file that is missing: the batch job records it


def _read_one(spec: str, kind: str, notes: list[str]) -> list[ManifestItem]:
    path = Path(os.path.expanduser(spec))
    if kind == "folder":
        return _read_folder(path, notes)
    if kind == "glob":
        return _read_glob(spec)
    if kind == "manifest":
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".csv":
            return _read_csv(path)
        return _read_list(path)
    p = os.path.abspath(path)
    return [ManifestItem(os.path.basename(p), p, spec)]


def read_manifest(spec: str | os.PathLike | list[str | os.PathLike],
                  notes: list[str] | None = None) -> list[ManifestItem]:
    """Read one manifest or a list of them into unique items (first listing wins).

    Args:
        spec: what ``--input`` / ``--manifest`` gave (see the module docstring).
        notes: if given, receives one line per thing left out on purpose (hidden files)
            or that could not be looked at (an unreadable folder), for the job's log.

    Raises:
        DataError: a manifest that is missing or malformed (``file:line``), a missing
            folder, or nothing to read at all.
    """
    specs = [os.fspath(s) for s in spec] if isinstance(spec, (list, tuple)) else \
        [os.fspath(spec)]
    if not specs:
        raise DataError("empty manifest list")
    notes = notes if notes is not None else []
    kinds = [_kind(s) for s in specs]
    items: list[ManifestItem] = []
    for s, kind in zip(specs, kinds):
        items.extend(_read_one(s, kind, notes))
    if len(specs) > 1 and all(k == "file" for k in kinds):
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
        raise DataError(f"{', '.join(specs)}: lists no audio files (no files at all)"
                        + (f"; {'; '.join(notes)}" if notes else ""))
    return out


__all__ = ["MANIFEST_SUFFIXES", "ManifestItem", "read_manifest"]
