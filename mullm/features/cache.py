"""Reading a feature cache folder: settings checks and item lookup.

Layout of a cache folder::

    index.json                 settings, one record per item, the path table (atomic writes)
    shard-00000.safetensors    tensors (L, T, D), one per item, named by the item key
    errors.jsonl               inputs that failed in the last run: {"input", "error"}

Items are found by key (``get_key``), by audio file (``key_for_path``: by the recorded path
while the file is unchanged or gone, else by content hash) or by decoded waveform
(``lookup(wave=...)``, the waveform hash table that ``CachedEncoder`` uses).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.encoders.base import Encoder
from mullm.errors import MullmError
from mullm.features.keys import (
    CACHE_VERSION,
    INDEX,
    StaleCacheError,
    describe_differences,
    file_stamp,
    fingerprint_hash,
    item_key,
    resolved,
    same_stamp,
)
from mullm.utils.hashing import file_sha256, wave_sha256


class FeatureCache:
    """A feature cache folder, read-only; ``check`` refuses one made with other settings.

    Raises:
        FileNotFoundError: ``directory`` has no index (not a cache).
        MullmError: the index is damaged.
        StaleCacheError: another format version, or (with ``encoder``) other settings.
    """

    def __init__(self, directory: str | os.PathLike, encoder: Encoder | None = None) -> None:
        self.dir = Path(directory)
        path = self.dir / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"{self.dir}: not a feature cache (no {INDEX}); "
                                    f"create one with `mullm extract`")
        try:
            self.index = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise MullmError(f"{path}: damaged index ({exc})") from None
        if self.index.get("version") != CACHE_VERSION:
            raise StaleCacheError(f"{self.dir}: cache format version "
                                  f"{self.index.get('version')} != {CACHE_VERSION}; re-extract")
        # Resolved path -> {"key", "size", "mtime_ns"}. Caches written before the path table
        # existed still name each item's path, without a stamp (an existing file is hashed).
        self._paths: dict[str, dict] = {
            info["path"]: {"key": key} for key, info in self.index["items"].items()
            if info.get("path")}
        self._paths.update(self.index.get("paths", {}))
        self._open: dict[str, Any] = {}
        if encoder is not None:
            self.check(encoder)

    def __getstate__(self) -> dict[str, Any]:
        # Open safetensors handles do not pickle (DataLoader workers): reopen lazily there.
        return {**self.__dict__, "_open": {}}

    # Settings ---------------------------------------------------------------------------
    @property
    def fingerprint(self) -> dict:
        """The encoder fingerprint the features were made with."""
        return self.index["encoder"]

    @property
    def layers(self) -> list[int]:
        """Indices of the encoder layers stored (all of them unless chosen at extraction)."""
        return list(self.index["layers"])

    @property
    def windowing(self) -> dict:
        """The encoder's windowing: {"window_s": seconds, or None for whole clips}."""
        return dict(self.index["windowing"])

    def check(self, encoder: Encoder, augment: str | None = None) -> None:
        """Raise StaleCacheError naming every setting that differs from ``encoder``'s."""
        fp = encoder.fingerprint()
        if fingerprint_hash(fp) == self.index["fingerprint"] and \
                augment == self.index.get("augment"):
            return
        diffs = describe_differences(fp, self.fingerprint)
        if augment != self.index.get("augment"):
            diffs.append(f"augment {self.index.get('augment')} != {augment}")
        raise StaleCacheError(
            f"{self.dir}: feature cache does not match this encoder (cached != current): "
            + "; ".join(diffs or ["fingerprint differs"])
            + "; re-run `mullm extract` into a new folder"
        )

    # Items ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index["items"])

    def __contains__(self, key: str) -> bool:
        return key in self.index["items"]

    def keys(self) -> list[str]:
        """Every item key."""
        return list(self.index["items"])

    def info(self, key: str) -> dict:
        """The record of one item (frames, duration_s, path, windows ...); KeyError when
        absent."""
        return dict(self.index["items"][key])

    def content_key(self, path: str | os.PathLike) -> str:
        """The key a file's current content would have in this cache (reads the file)."""
        return item_key(file_sha256(path), self.index["fingerprint"], self.windowing,
                        self.index.get("augment"))

    def key_for_path(self, path: str | os.PathLike) -> str | None:
        """The key of a cached audio file, or None when it is not cached.

        An unchanged file (same size and modification time as at extraction) and a file
        that no longer exists are found by their recorded path without being read; a new
        or changed file is hashed, so a changed file is never served stale.

        Raises:
            OSError: the file exists but cannot be read.
        """
        entry = self._paths.get(resolved(path))
        known = entry["key"] if entry and entry["key"] in self.index["items"] else None
        try:
            stamp = file_stamp(path)
        except FileNotFoundError:
            return known
        if known is not None and same_stamp(entry, stamp):
            return known
        key = self.content_key(path)
        return key if key in self.index["items"] else None

    def knows_path(self, path: str | os.PathLike) -> bool:
        """True when ``path`` was extracted into this cache (whether or not it still
        exists; does not read it)."""
        entry = self._paths.get(resolved(path))
        return entry is not None and entry["key"] in self.index["items"]

    def _tensor(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        shard = self.index["items"][key]["shard"]
        if shard not in self._open:
            self._open[shard] = safe_open(str(self.dir / shard), framework="pt")
        return self._open[shard].get_tensor(key)

    def get_key(self, key: str) -> tuple[torch.Tensor, dict]:
        """(hidden states (L_kept, T, D), info) of one key; KeyError when absent."""
        if key not in self.index["items"]:
            raise KeyError(f"{self.dir}: no cached features for key {key[:16]}...")
        return self._tensor(key), dict(self.index["items"][key])

    def get(self, path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
        """(hidden states (L_kept, T, D), info) for an audio file; KeyError when absent."""
        key = self.key_for_path(path)
        if key is None:
            raise KeyError(f"{path}: not in feature cache {self.dir} (not extracted, or the "
                           f"file changed since)")
        return self.get_key(key)

    def lookup(self, path: str | os.PathLike | None = None, *,
               wave: np.ndarray | torch.Tensor | None = None,
               sample_rate: int | None = None) -> tuple[torch.Tensor, dict] | None:
        """Find features by file (see ``key_for_path``) or by decoded waveform (its hash);
        None on a miss.

        Raises:
            ValueError: not exactly one of ``path`` and ``wave``.
        """
        if (path is None) == (wave is None):
            raise ValueError("lookup needs exactly one of path or wave")
        if path is not None:
            try:
                key = self.key_for_path(path)
            except OSError:
                return None
        else:
            key = self.index["by_wave"].get(
                wave_sha256(wave, sample_rate or self.fingerprint["sample_rate"]))
        return self.get_key(key) if key in self.index["items"] else None
