"""Writing a feature cache folder: items appended in atomically written shards.

A shard is written to a temporary file and moved into place (``mullm.utils.atomic``), then
the index is rewritten the same way; a killed run loses at most the shard it was filling,
and a rerun skips every item already in the index.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from mullm.encoders.base import Encoder
from mullm.features.keys import (
    CACHE_VERSION,
    INDEX,
    StaleCacheError,
    describe_differences,
    fingerprint_hash,
    item_key,
    resolve_layers,
    resolved,
)
from mullm.utils.atomic import atomic_path, atomic_write_text
from mullm.utils.dtypes import torch_dtype

# Settings that must match for a folder to take more items.
_FIXED = ("version", "fingerprint", "layers", "windowing", "dtype", "augment")


class FeatureCacheWriter:
    """Append items to a cache folder in atomically written shards (see module docstring).

    Args:
        directory: the cache folder (created).
        encoder: the encoder whose outputs are stored (its fingerprint keys the items).
        layers: layers to keep ("all", an index or a list; negative counts from the end).
        window_s: the encoder's window in seconds, recorded as the cache's windowing.
        dtype: storage dtype name (default: the encoder config's dtype).
        augment: tag of the augmentation applied to the inputs (part of every key).
        shard_mb: a shard is written once this many MiB are pending ...
        shard_seconds: ... or this many seconds after the last one.

    Raises:
        ValueError: an unknown dtype or a layer the encoder does not have.
        StaleCacheError: the folder holds items made with other settings.
    """

    def __init__(self, directory: str | os.PathLike, encoder: Encoder, *,
                 layers: str | int | list[int] = "all", window_s: float | None = None,
                 dtype: str | None = None, augment: str | None = None,
                 shard_mb: float = 256.0, shard_seconds: float = 120.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        fp = encoder.fingerprint()
        dtype = dtype or getattr(encoder.config, "dtype", "float32")
        self.dtype = torch_dtype(dtype)
        kept = resolve_layers(layers, encoder.num_layers)
        settings = {
            "version": CACHE_VERSION, "encoder": fp, "fingerprint": fingerprint_hash(fp),
            "name": fp.get("name"), "sample_rate": encoder.sample_rate,
            "frame_rate": encoder.frame_rate, "num_layers": encoder.num_layers,
            "hidden_size": encoder.hidden_size, "layers": kept,
            "windowing": {"window_s": window_s}, "dtype": dtype, "augment": augment,
        }
        path = self.dir / INDEX
        if path.is_file():
            index = json.loads(path.read_text())
            diffs = [f"{k} {index.get(k)} != {settings[k]}" for k in _FIXED
                     if index.get(k) != settings[k]]
            if diffs:
                if index.get("fingerprint") != settings["fingerprint"]:
                    diffs = describe_differences(fp, index.get("encoder", {})) or diffs
                raise StaleCacheError(
                    f"{self.dir}: holds features made with other settings (cached != "
                    f"current): {'; '.join(diffs)}; choose another --out folder"
                )
            self.index = index
            self.index.setdefault("paths", {})
        else:
            self.index = {**settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                          "shards": [], "items": {}, "by_wave": {}, "paths": {}}
            self._write_index()
        self.layer_index = torch.tensor(kept)
        self.all_layers = len(kept) == encoder.num_layers
        self.shard_bytes = int(shard_mb * 2**20)
        self.shard_seconds = shard_seconds
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_info: dict[str, dict] = {}
        self._pending_bytes = 0
        self._index_dirty = False
        self._last_flush = time.monotonic()

    @property
    def encoder_hash(self) -> str:
        """Hash of the encoder fingerprint used in item keys."""
        return self.index["fingerprint"]

    @property
    def windowing(self) -> dict:
        """The windowing recorded in the index."""
        return self.index["windowing"]

    @property
    def paths(self) -> dict[str, dict]:
        """The path table: resolved path -> {"key", "size", "mtime_ns"}."""
        return self.index["paths"]

    def key(self, content_sha256: str) -> str:
        """Item key for a file with this content hash."""
        return item_key(content_sha256, self.encoder_hash, self.windowing,
                        self.index.get("augment"))

    def has(self, key: str) -> bool:
        """True if the item is stored (or waiting in the current shard)."""
        return key in self.index["items"] or key in self._pending

    def note_path(self, path: str | os.PathLike, key: str, stamp: dict[str, int]) -> None:
        """Record that the file at ``path`` (size and mtime ``stamp``) has item ``key``;
        written with the next shard or at ``close``."""
        entry = {"key": key, **stamp}
        name = resolved(path)
        if self.paths.get(name) != entry:
            self.paths[name] = entry
            self._index_dirty = True

    def add(self, key: str, hidden_states: torch.Tensor, info: dict) -> None:
        """Queue one item's (L, T, D) states; flushes a shard when it is big or old."""
        h = hidden_states.detach()
        if not self.all_layers:
            h = h.index_select(0, self.layer_index.to(h.device))
        h = h.to("cpu", self.dtype).contiguous()
        self._pending[key] = h
        self._pending_info[key] = {**info, "frames": int(h.shape[1])}
        self._pending_bytes += h.numel() * h.element_size()
        if (self._pending_bytes >= self.shard_bytes
                or time.monotonic() - self._last_flush >= self.shard_seconds):
            self.flush()

    def flush(self) -> None:
        """Write pending items as one shard (atomically), then the index."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        from safetensors.torch import save_file

        name = f"shard-{len(self.index['shards']):05d}.safetensors"
        with atomic_path(self.dir / name) as tmp:
            save_file(self._pending, str(tmp), metadata={"mullm_cache": str(CACHE_VERSION)})
        self.index["shards"].append(name)
        for key, info in self._pending_info.items():
            self.index["items"][key] = {**info, "shard": name}
            if info.get("wave_sha256"):
                self.index["by_wave"][info["wave_sha256"]] = key
        self._write_index()
        self._pending, self._pending_info, self._pending_bytes = {}, {}, 0

    def _write_index(self) -> None:
        atomic_write_text(self.dir / INDEX, json.dumps(self.index, indent=1))
        self._index_dirty = False

    def close(self) -> None:
        """Flush what is pending (and the path table, when only it changed)."""
        self.flush()
        if self._index_dirty:
            self._write_index()
