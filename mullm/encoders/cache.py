"""The feature cache: frozen-encoder outputs stored once, served instead of re-encoding.

Layout of a cache folder::

    index.json                 settings + one record per item (written atomically)
    shard-00000.safetensors    tensors (L, T, D), one per item, named by the item key
    errors.jsonl               inputs that failed in the last run: {"input", "error"}

An item is keyed by sha256 of (the audio file's content hash, the encoder fingerprint, the
windowing, the augmentation tag), so a changed file, encoder or setting never hits a stale
entry. The index also maps the hash of each decoded waveform to its item, which lets
``CachedEncoder`` serve a batch of waveforms transparently (misses are encoded online).

Writes are crash-safe: a shard is written to a temporary file and moved into place with
``os.replace``, then the index is rewritten the same way; a killed run loses at most the
shard it was filling, and a rerun skips every item already in the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mullm.encoders.base import Encoder, EncoderOutput, frame_mask
from mullm.errors import MullmError

CACHE_VERSION = 1
INDEX = "index.json"
ERRORS = "errors.jsonl"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class StaleCacheError(MullmError, ValueError):
    """A feature cache made with a different encoder or settings than the one asked for."""


# ------------------------------------------------------------------------------ hashing


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def wave_sha256(wave: np.ndarray | torch.Tensor, sample_rate: int) -> str:
    """sha256 of a decoded mono waveform (float32 samples) at ``sample_rate``."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().to("cpu", torch.float32).numpy()
    arr = np.ascontiguousarray(wave, dtype=np.float32)
    h = hashlib.sha256(f"{sample_rate}:{arr.shape[0]}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def module_weights_hash(module: torch.nn.Module) -> str:
    """sha256 over every tensor of a module's state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def fingerprint_hash(fingerprint: dict) -> str:
    """Stable sha256 of an encoder fingerprint dict."""
    return hashlib.sha256(_canonical(fingerprint).encode()).hexdigest()


def item_key(content_sha256: str, encoder_hash: str, windowing: dict,
             augment: str | None = None) -> str:
    """The cache key of one input: content, encoder, windowing and augmentation."""
    text = _canonical({"content": content_sha256, "encoder": encoder_hash,
                       "windowing": windowing, "augment": augment})
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_layers(layers: str | int | list[int], num_layers: int) -> list[int]:
    """Layers to keep as non-negative indices ("all", an index, or a list)."""
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


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


# ------------------------------------------------------------------------------ reading


class FeatureCache:
    """Read a feature cache folder; ``check`` refuses a cache made with other settings."""

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
        self._open: dict[str, Any] = {}
        if encoder is not None:
            self.check(encoder)

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

    def key_for(self, path: str | os.PathLike) -> str:
        """The key a file would have in this cache (hashes the file's content)."""
        return item_key(file_sha256(path), self.index["fingerprint"], self.windowing,
                        self.index.get("augment"))

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
        key = self.key_for(path)
        if key not in self.index["items"]:
            raise KeyError(f"{path}: not in feature cache {self.dir} (not extracted, or the "
                           f"file changed since)")
        return self.get_key(key)

    def lookup(self, path: str | os.PathLike | None = None, *,
               wave: np.ndarray | torch.Tensor | None = None,
               sample_rate: int | None = None) -> tuple[torch.Tensor, dict] | None:
        """Find features by file (content hash) or by decoded waveform; None on a miss."""
        if (path is None) == (wave is None):
            raise ValueError("lookup needs exactly one of path or wave")
        if path is not None:
            try:
                key = self.key_for(path)
            except OSError:
                return None
        else:
            key = self.index["by_wave"].get(
                wave_sha256(wave, sample_rate or self.fingerprint["sample_rate"]))
            if key is None:
                return None
        return self.get_key(key) if key in self.index["items"] else None


# ------------------------------------------------------------------------------ writing


class FeatureCacheWriter:
    """Append items to a cache folder in atomically written shards (see module docstring)."""

    def __init__(self, directory: str | os.PathLike, encoder: Encoder, *,
                 layers: str | int | list[int] = "all", window_s: float | None = None,
                 dtype: str | None = None, augment: str | None = None,
                 shard_mb: float = 256.0, shard_seconds: float = 120.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        fp = encoder.fingerprint()
        dtype = dtype or getattr(encoder.config, "dtype", "float32")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} not in {sorted(_DTYPES)}")
        self.dtype = _DTYPES[dtype]
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
            fixed = ("version", "fingerprint", "layers", "windowing", "dtype", "augment")
            diffs = [f"{k} {index.get(k)} != {settings[k]}" for k in fixed
                     if index.get(k) != settings[k]]
            if diffs:
                if index.get("fingerprint") != settings["fingerprint"]:
                    diffs = describe_differences(fp, index.get("encoder", {})) or diffs
                raise StaleCacheError(
                    f"{self.dir}: holds features made with other settings (cached != "
                    f"current): {'; '.join(diffs)}; choose another --out folder"
                )
            self.index = index
        else:
            self.index = {**settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                          "shards": [], "items": {}, "by_wave": {}}
            self._write_index()
        self.layer_index = torch.tensor(kept)
        self.all_layers = len(kept) == encoder.num_layers
        self.shard_bytes = int(shard_mb * 2**20)
        self.shard_seconds = shard_seconds
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_info: dict[str, dict] = {}
        self._pending_bytes = 0
        self._last_flush = time.monotonic()

    @property
    def encoder_hash(self) -> str:
        """Hash of the encoder fingerprint used in item keys."""
        return self.index["fingerprint"]

    @property
    def windowing(self) -> dict:
        """The windowing recorded in the index."""
        return self.index["windowing"]

    def key(self, content_sha256: str) -> str:
        """Item key for a file with this content hash."""
        return item_key(content_sha256, self.encoder_hash, self.windowing,
                        self.index.get("augment"))

    def has(self, key: str) -> bool:
        """True if the item is stored (or waiting in the current shard)."""
        return key in self.index["items"] or key in self._pending

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
        tmp = self.dir / f".{name}.tmp-{os.getpid()}"
        save_file(self._pending, str(tmp), metadata={"mullm_cache": str(CACHE_VERSION)})
        os.replace(tmp, self.dir / name)
        self.index["shards"].append(name)
        for key, info in self._pending_info.items():
            self.index["items"][key] = {**info, "shard": name}
            if info.get("wave_sha256"):
                self.index["by_wave"][info["wave_sha256"]] = key
        self._write_index()
        self._pending, self._pending_info, self._pending_bytes = {}, {}, 0

    def _write_index(self) -> None:
        _atomic_write_text(self.dir / INDEX, json.dumps(self.index, indent=1))

    def close(self) -> None:
        """Flush what is pending."""
        self.flush()


@contextlib.contextmanager
def cache_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Refuse two writers on one cache folder (a lock file holding the writer's pid)."""
    path = Path(directory) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, PermissionError, OSError):
                path.unlink(missing_ok=True)  # the writer died: its lock is stale
                continue
            raise MullmError(f"{directory}: another extract (pid {pid}) is writing here; "
                             f"wait for it or remove {path} if it is gone") from None
    else:
        raise MullmError(f"{directory}: cannot take the lock {path}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------- batch extraction


@dataclass
class ExtractSummary:
    """Counts of one extraction run."""

    extracted: int = 0
    skipped: int = 0
    failed: int = 0
    silent: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    errors: list[dict] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        """Items now in the cache (newly extracted or already there)."""
        return self.extracted + self.skipped


@dataclass
class _Unit:
    item: int
    window: int
    wave: np.ndarray


def _load_windows(path: str, encoder: Encoder, window_s: float) -> tuple[list[np.ndarray], list]:
    """Decode a file as one waveform (short) or as consecutive windows (long)."""
    from mullm.audio import audio_info, iter_audio_windows, load_audio

    cfg = encoder.config
    sr = encoder.sample_rate
    info = audio_info(path)
    if info.duration_s <= window_s:
        # The same decoding call as training/inference, so waveform hashes match.
        wave = load_audio(path, sr, min_duration_s=cfg.min_duration_s)
        return [wave], [{"start_s": 0.0, "end_s": len(wave) / sr}]
    waves, spans = [], []
    for w in iter_audio_windows(path, sr, window_s, min_duration_s=cfg.min_duration_s):
        waves.append(w.wave)
        spans.append({"start_s": w.start_s, "end_s": w.end_s})
    return waves, spans


def extract_features(encoder: Encoder, paths: list[str], out_dir: str | os.PathLike, *,
                     ids: list[str] | None = None, batch_size: int = 8,
                     layers: str | int | list[int] = "all", dtype: str | None = None,
                     augment: str | None = None, shard_mb: float = 256.0,
                     progress: bool = True,
                     on_item: Callable[[int], None] | None = None) -> ExtractSummary:
    """Encode audio files into a feature cache; failures go to OUT/errors.jsonl.

    Files longer than ``encoder.config.window_s`` (else ``max_duration_s``) are decoded and
    encoded window by window and their frames concatenated; their record says so
    (``num_windows``, ``windows``).
    """
    from tqdm import tqdm

    from mullm.audio import audio_info, is_silent, pad_batch, rms_db

    out_dir = Path(out_dir)
    cfg = encoder.config
    # Files longer than this are decoded and encoded in consecutive chunks (bounded memory).
    # The index's "windowing" records the encoder's own window_s (null: whole clips, as
    # online encoding sees them); a chunked item lists its windows in its record.
    chunk_s = float(cfg.window_s or cfg.max_duration_s)
    device = next(iter(encoder.buffers()), next(iter(encoder.parameters()), None))
    device = device.device if device is not None else torch.device("cpu")
    summary = ExtractSummary()
    t0 = time.perf_counter()
    with cache_lock(out_dir):
        writer = FeatureCacheWriter(out_dir, encoder, layers=layers, window_s=cfg.window_s,
                                    dtype=dtype, augment=augment, shard_mb=shard_mb)
        writer.index["chunk_s"] = chunk_s
        errors_path = out_dir / ERRORS
        errors_file = errors_path.open("w")  # failures are retried on a rerun
        queue: list[_Unit] = []
        parts: dict[int, dict[int, torch.Tensor]] = {}
        meta: dict[int, dict] = {}
        bar = tqdm(total=len(paths), unit="file", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)

        def fail(i: int, message: str) -> None:
            rec = {"input": paths[i], "error": message}
            if ids is not None:
                rec["id"] = ids[i]
            errors_file.write(json.dumps(rec) + "\n")
            errors_file.flush()
            summary.failed += 1
            summary.errors.append(rec)
            parts.pop(i, None)
            meta.pop(i, None)
            bar.update(1)

        def finish(i: int) -> None:
            m = meta.pop(i)
            pieces = parts.pop(i)
            h = torch.cat([pieces[w] for w in range(m["num_windows"])], dim=1)
            info = {k: v for k, v in m.items() if not k.startswith("_")}
            writer.add(m["_key"], h, info)
            summary.extracted += 1
            summary.audio_seconds += m["duration_s"]
            summary.silent += int(m["silent"])
            bar.update(1)
            bar.set_postfix(ok=summary.extracted, skip=summary.skipped, fail=summary.failed)

        def run(units: list[_Unit]) -> None:
            x, n = pad_batch([u.wave for u in units])
            try:
                out = encoder(torch.from_numpy(x).to(device), torch.from_numpy(n))
            except (ValueError, RuntimeError) as exc:
                if len(units) == 1:
                    raise
                # Isolate the unit that broke the batch; the others still succeed.
                del exc
                for u in units:
                    try:
                        run([u])
                    except (ValueError, RuntimeError) as e:
                        if u.item in meta:
                            fail(u.item, f"encoding failed: {e}")
                return
            for j, u in enumerate(units):
                if u.item not in meta:
                    continue
                frames = int(out.mask[j].sum())
                parts[u.item][u.window] = out.hidden_states[j, :, :frames].to("cpu")
                if len(parts[u.item]) == meta[u.item]["num_windows"]:
                    finish(u.item)

        def drain(force: bool = False) -> None:
            while queue and (force or len(queue) >= batch_size):
                batch, queue[:] = queue[:batch_size], queue[batch_size:]
                try:
                    run(batch)
                except (ValueError, RuntimeError) as e:
                    for u in batch:
                        if u.item in meta:
                            fail(u.item, f"encoding failed: {e}")

        for i, path in enumerate(paths):
            try:
                sha = file_sha256(path)
                key = writer.key(sha)
                if writer.has(key):
                    summary.skipped += 1
                    bar.update(1)
                    continue
                waves, spans = _load_windows(path, encoder, chunk_s)
            except (OSError, ValueError) as exc:
                msg = str(exc) if isinstance(exc, ValueError) else f"{path}: {exc}"
                fail(i, msg)
                continue
            total = sum(len(w) for w in waves)
            sq = sum(float(np.sum(np.square(w, dtype=np.float64))) for w in waves)
            level = 10 * np.log10(sq / max(total, 1)) if sq > 0 else -np.inf
            silent = bool(is_silent(waves[0])) if len(waves) == 1 else bool(level < -60.0)
            native = audio_info(path)
            meta[i] = {
                "_key": key, "path": str(Path(path).resolve()), "content_sha256": sha,
                "id": ids[i] if ids is not None else str(path),
                "duration_s": total / encoder.sample_rate, "num_samples": total,
                "native_sample_rate": native.sample_rate, "channels": native.channels,
                "silent": silent, "rms_db": round(float(rms_db(waves[0])) if len(waves) == 1
                                                  else float(level), 2),
                "num_windows": len(waves), "windows": spans,
                "wave_sha256": wave_sha256(waves[0], encoder.sample_rate)
                if len(waves) == 1 else None,
            }
            parts[i] = {}
            queue.extend(_Unit(i, w, wave) for w, wave in enumerate(waves))
            drain()
            if on_item is not None:
                on_item(i)
        drain(force=True)
        writer.close()
        bar.close()
        errors_file.close()
    summary.seconds = time.perf_counter() - t0
    return summary


# ------------------------------------------------------------------- transparent serving


class CachedEncoder(Encoder):
    """Wrap an encoder so batches are served from a feature cache when the waveform is
    there (matched by its hash), and encoded online otherwise.

    Output is the same EncoderOutput as online encoding (in the cache's dtype). When the
    cache keeps only some layers, ``num_layers`` is that count and online misses are cut
    to the same layers, so both paths agree.
    """

    def __init__(self, encoder: Encoder, cache: FeatureCache | str | os.PathLike, *,
                 fallback: bool = True) -> None:
        super().__init__(encoder.config)
        self.encoder = encoder
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        self.cache.check(encoder)
        self.modality = encoder.modality
        self.sample_rate = encoder.sample_rate
        self.frame_rate = encoder.frame_rate
        self.hidden_size = encoder.hidden_size
        self.kept = self.cache.layers
        self.num_layers = len(self.kept)
        self.fallback = fallback
        self.dtype = _DTYPES[self.cache.index["dtype"]]
        self.hits = 0
        self.misses = 0

    def frame_spec(self) -> dict:
        """Same as the wrapped encoder."""
        return self.encoder.frame_spec()

    def fingerprint(self) -> dict:
        """The wrapped encoder's fingerprint."""
        return self.encoder.fingerprint()

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Serve each row from the cache by waveform hash; encode the misses online."""
        lens = [int(n) for n in lengths.tolist()]
        found: dict[int, torch.Tensor] = {}
        missing = []
        for i, n in enumerate(lens):
            hit = self.cache.lookup(wave=inputs[i, :n], sample_rate=self.sample_rate)
            if hit is not None and hit[0].shape[1] == self.encoder.num_frames(n):
                found[i] = hit[0]
            else:
                missing.append(i)
        self.hits += len(found)
        self.misses += len(missing)
        if missing and not self.fallback:
            raise KeyError(f"{self.cache.dir}: {len(missing)} input(s) not cached "
                           f"(batch rows {missing}) and fallback=False")
        if missing:
            sub_len = max(lens[i] for i in missing)
            idx = torch.tensor(missing, device=inputs.device)
            out = self.encoder(inputs.index_select(0, idx)[:, :sub_len], lengths[missing])
            h = out.hidden_states
            if self.num_layers != self.encoder.num_layers:
                h = h.index_select(1, torch.tensor(self.kept, device=h.device))
            for j, i in enumerate(missing):
                found[i] = h[j, :, :int(out.mask[j].sum())].to(self.dtype)
        device = inputs.device
        frames = torch.tensor([found[i].shape[1] for i in range(len(lens))], device=device)
        total = int(frames.max())
        hs = torch.zeros(len(lens), self.num_layers, total, self.hidden_size,
                         dtype=self.dtype, device=device)
        for i, h in found.items():
            hs[i, :, :h.shape[1]] = h.to(device, self.dtype)
        return EncoderOutput(hidden_states=hs, mask=frame_mask(frames, total))


def cached_or_online(encoder: Encoder, cache_dir: str | os.PathLike | None) -> Encoder:
    """``CachedEncoder`` over ``cache_dir`` when given, else the encoder itself."""
    return encoder if cache_dir is None else CachedEncoder(encoder, cache_dir)


def iter_items(cache: FeatureCache) -> Iterable[tuple[str, dict]]:
    """(key, info) for every cached item."""
    return cache.index["items"].items()


__all__ = [
    "CachedEncoder", "ExtractSummary", "FeatureCache", "FeatureCacheWriter", "StaleCacheError",
    "cached_or_online", "describe_differences", "extract_features", "file_sha256",
    "fingerprint_hash", "item_key", "module_weights_hash", "resolve_layers", "wave_sha256",
]
