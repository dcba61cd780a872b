"""What to caption: inputs resolved to unique items, and stable shards of them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mullm.caption.settings import CaptionJobError
from mullm.errors import DataError
from mullm.utils.atomic import atomic_write_bytes


@dataclass
class CaptionItem:
    """One input: its id (path relative to the input root) and its file."""

    id: str
    path: str


def _is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()))


def _hf_dataset_items(root: Path, audio_column: str = "audio") -> list[CaptionItem]:
    """Items of a local ``datasets`` folder (``save_to_disk`` layout). Embedded audio bytes
    are written once to ``$MULLM_CACHE/caption-inputs`` (named by content hash, so a resume
    finds the same file); ids are ``split/row``."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{root}: is a Hugging Face datasets folder; reading it needs the optional "
            "package 'datasets' (pip install datasets)"
        ) from None
    from mullm.llm import cache_root

    loaded = datasets.load_from_disk(str(root))
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"": loaded}
    cache = cache_root() / "caption-inputs"
    items = []
    for split, ds in splits.items():
        if audio_column not in ds.column_names:
            raise DataError(f"{root}{'/' + split if split else ''}: no {audio_column!r} "
                            f"column (columns: {ds.column_names})")
        # Read the raw Arrow column: no decoding (datasets' own decoder needs torchcodec).
        column = ds.data.column(audio_column)
        for i in range(len(ds)):
            value = column[i].as_py()
            rid = f"{split}/{i}" if split else str(i)
            if isinstance(value, str):
                value = {"path": value, "bytes": None}
            if not isinstance(value, dict):
                raise DataError(f"{root}: row {rid}: {audio_column!r} is {type(value).__name__}"
                                ", expected an Audio feature or a path")
            raw, src = value.get("bytes"), value.get("path")
            if raw:
                digest = hashlib.sha256(raw).hexdigest()
                suffix = Path(src).suffix if src and Path(src).suffix else ".wav"
                dest = cache / digest[:2] / f"{digest}{suffix}"
                if not dest.is_file():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(dest, raw)
                items.append(CaptionItem(rid, str(dest)))
            elif src:
                p = Path(src)
                items.append(CaptionItem(rid, str(p if p.is_absolute() else root / p)))
            else:
                raise DataError(f"{root}: row {rid}: audio has neither bytes nor a path")
    return items


def resolve_inputs(specs: str | os.PathLike | Iterable[str | os.PathLike],
                   notes: list[str] | None = None) -> list[CaptionItem]:
    """Files, folders, globs, manifests and HF ``datasets`` folders -> unique items, sorted
    by id. Every file in a folder is an item (the decoder decides what is audio); hidden
    names are skipped, which ``notes`` (if given) is told, with anything unreadable.

    Raises:
        DataError: no inputs, an unreadable manifest (file:line), or two different files
            with the same id.
    """
    from mullm.data.manifest import read_manifest

    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    specs = [os.fspath(s) for s in specs]
    if not specs:
        raise DataError("no inputs given")
    items: list[CaptionItem] = []
    plain = [s for s in specs if not _is_hf_dataset(Path(s))]
    for s in specs:
        if _is_hf_dataset(Path(s)):
            items.extend(_hf_dataset_items(Path(s)))
    if plain:
        items.extend(CaptionItem(m.id, m.path) for m in read_manifest(plain, notes))
    by_id: dict[str, CaptionItem] = {}
    for item in items:
        prev = by_id.get(item.id)
        if prev is not None and prev.path != item.path:
            raise DataError(f"two inputs have the same id {item.id!r}: {prev.path} and "
                            f"{item.path}; caption them into separate --out files")
        by_id[item.id] = item
    return [by_id[k] for k in sorted(by_id)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based i) -> (i, n).

    Raises:
        CaptionJobError: not ``i/n`` with ``0 <= i < n``.
    """
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise CaptionJobError(f"--shard {text!r}: expected i/n, e.g. 0/4 (0-based)") from None
    if n < 1 or not 0 <= i < n:
        raise CaptionJobError(f"--shard {text!r}: need n >= 1 and 0 <= i < n (shards are "
                              f"0-based: 0/{max(n, 1)} .. {max(n, 1) - 1}/{max(n, 1)})")
    return i, n


def shard_of(item_id: str, count: int) -> int:
    """The shard an id belongs to: a stable hash, so adding files never moves old ones."""
    # surrogateescape: an id from a file name that is not UTF-8 hashes as its original
    # bytes (valid UTF-8 ids hash exactly as before).
    try:
        raw = item_id.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (JSON "\\ud800")
        raw = item_id.encode("utf-8", "surrogatepass")
    return int(hashlib.sha1(raw).hexdigest()[:12], 16) % count


def select_shard(items: list[CaptionItem], index: int, count: int) -> list[CaptionItem]:
    """The items of shard ``index`` of ``count``."""
    return [it for it in items if shard_of(it.id, count) == index]
