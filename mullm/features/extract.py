"""Batch extraction (``mullm extract``): audio files -> a feature cache, on the shared
windowed batching engine (``mullm.utils.batching``).

A file up to ``encoder.config.window_s`` (else ``max_duration_s``) long is decoded whole,
exactly as training and inference decode it (so its waveform hash matches theirs); a
longer one is decoded and encoded window by window and its frames concatenated (its record
says so: ``num_windows``, ``windows``). Windows of all files are batched together; a file
that cannot be read or encoded is written to ``OUT/errors.jsonl`` and the run goes on.
Files already in the cache are skipped (an unchanged file without being read again).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from mullm.encoders.base import Encoder
from mullm.features.keys import ERRORS, LOCK, file_stamp, resolved, same_stamp
from mullm.features.writer import FeatureCacheWriter
from mullm.utils.batching import BatchEngine, BatchJob, Unit
from mullm.utils.hashing import file_sha256, wave_sha256
from mullm.utils.jsonl import json_line
from mullm.utils.locks import exclusive_lock

# One file's failure, whatever its type (a decoder error, MemoryError, an encoder's
# KeyError), fails that file alone; KeyboardInterrupt and SystemExit still stop the run.
_ITEM_ERRORS = (Exception,)


@dataclass
class ExtractSummary:
    """Counts of one extraction run."""

    extracted: int = 0  # items added to the cache
    skipped: int = 0  # inputs already cached
    failed: int = 0  # inputs written to errors.jsonl
    silent: int = 0  # extracted items below -60 dBFS throughout
    audio_seconds: float = 0.0  # seconds of audio extracted
    seconds: float = 0.0  # seconds the run took
    errors: list[dict] = field(default_factory=list)  # this run's errors.jsonl records

    @property
    def succeeded(self) -> int:
        """Items now in the cache (newly extracted or already there)."""
        return self.extracted + self.skipped


@dataclass
class _Source:
    """One input file while it is being extracted."""

    index: int
    path: str
    id: str | None
    key: str = ""
    stamp: dict[str, int] = field(default_factory=dict)  # size and mtime when first seen
    skipped: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    parts: dict[int, torch.Tensor] = field(default_factory=dict)
    spans: list[dict] = field(default_factory=list)
    samples: int = 0
    energy: float = 0.0  # sum of squared samples, for the level of a windowed file


class _Extraction(BatchJob[_Source]):
    """The extraction job: reads files into windows, encodes batches, stores items."""

    lanes = ("encode",)

    def __init__(self, encoder: Encoder, writer: FeatureCacheWriter, summary: ExtractSummary,
                 errors: IO[str], bar: Any, on_item: Callable[[int], None] | None) -> None:
        cfg = encoder.config
        self.encoder = encoder
        self.writer = writer
        self.summary = summary
        self.errors = errors
        self.bar = bar
        self.on_item = on_item
        # Files longer than this are decoded and encoded in consecutive chunks (bounded
        # memory). The index's "windowing" records the encoder's own window_s (null: whole
        # clips, as online encoding sees them); a chunked item lists its windows.
        self.chunk_s = float(cfg.window_s or cfg.max_duration_s)
        first = next(iter(encoder.buffers()), next(iter(encoder.parameters()), None))
        self.device = first.device if first is not None else torch.device("cpu")

    # -------------------------------------------------------------- reading
    def _already_cached(self, src: _Source) -> bool:
        """Find the file's key; True when the cache has it. An unchanged file whose path
        is in the index is not read; otherwise its content is hashed."""
        src.stamp = file_stamp(src.path)  # before reading: a later change shows as newer
        entry = self.writer.paths.get(resolved(src.path))
        if entry and same_stamp(entry, src.stamp) and self.writer.has(entry["key"]):
            src.key = entry["key"]
            return True
        sha = file_sha256(src.path)
        src.key = self.writer.key(sha)
        src.meta = {"path": resolved(src.path), "content_sha256": sha}
        return self.writer.has(src.key)

    def read(self, src: _Source) -> Iterator[tuple[int, np.ndarray]]:
        """(window index, waveform) of a file not yet cached, decoded lazily."""
        from mullm.audio import audio_info, iter_audio_windows, load_audio

        if self._already_cached(src):
            src.skipped = True
            return
        cfg, sr = self.encoder.config, self.encoder.sample_rate
        native = audio_info(src.path)
        src.meta.update(native_sample_rate=native.sample_rate, channels=native.channels)
        if native.duration_s <= self.chunk_s:
            # The same decoding call as training/inference, so waveform hashes match.
            wave = load_audio(src.path, sr, min_duration_s=cfg.min_duration_s)
            self._note_window(src, wave, 0.0, len(wave) / sr)
            self._note_whole_clip(src, wave)
            yield 0, wave
        else:
            for w in iter_audio_windows(src.path, sr, self.chunk_s,
                                        min_duration_s=cfg.min_duration_s):
                self._note_window(src, w.wave, w.start_s, w.end_s)
                yield w.index, w.wave

    @staticmethod
    def _note_window(src: _Source, wave: np.ndarray, start_s: float, end_s: float) -> None:
        src.spans.append({"start_s": start_s, "end_s": end_s})
        src.samples += len(wave)
        src.energy += float(np.sum(np.square(wave, dtype=np.float64)))

    def _note_whole_clip(self, src: _Source, wave: np.ndarray) -> None:
        """A whole-clip item's level, silence and waveform hash (the key by which
        ``CachedEncoder`` finds it in a decoded batch)."""
        from mullm.audio import is_silent, rms_db

        src.meta.update(silent=bool(is_silent(wave)), rms_db=round(float(rms_db(wave)), 2),
                        wave_sha256=wave_sha256(wave, self.encoder.sample_rate))

    # -------------------------------------------------------------- encoding
    def run_batch(self, lane: str, payloads: list[Any], number: int) -> list[torch.Tensor]:
        """Encode one batch of windows; each result is (L, frames, D) on the CPU."""
        from mullm.audio import pad_batch

        x, n = pad_batch([wave for _, wave in payloads])
        out = self.encoder(torch.from_numpy(x).to(self.device), torch.from_numpy(n))
        return [out.hidden_states[j, :, :int(out.mask[j].sum())].to("cpu")
                for j in range(len(payloads))]

    def store(self, src: _Source, unit: Unit, result: torch.Tensor) -> None:
        """Keep one window's frames."""
        src.parts[unit.payload[0]] = result

    # -------------------------------------------------------------- results
    def finish(self, src: _Source) -> None:
        """Add a complete file to the cache (or count it as already there)."""
        self.writer.note_path(src.path, src.key, src.stamp)
        if src.skipped:
            self.summary.skipped += 1
            self.bar.update(1)
            return
        windows = len(src.spans)
        h = torch.cat([src.parts.pop(w) for w in range(windows)], dim=1)
        info = {"path": src.meta["path"], "content_sha256": src.meta["content_sha256"],
                "id": src.id if src.id is not None else src.path,
                "duration_s": src.samples / self.encoder.sample_rate,
                "num_samples": src.samples,
                "native_sample_rate": src.meta["native_sample_rate"],
                "channels": src.meta["channels"], "silent": src.meta.get("silent"),
                "rms_db": src.meta.get("rms_db"), "num_windows": windows,
                "windows": src.spans, "wave_sha256": src.meta.get("wave_sha256")}
        if windows > 1:  # the level of the whole file, from every window's energy
            level = 10 * np.log10(src.energy / src.samples) if src.energy > 0 else -np.inf
            info.update(silent=bool(level < -60.0), rms_db=round(float(level), 2),
                        wave_sha256=None)
        self.writer.add(src.key, h, info)
        self.summary.extracted += 1
        self.summary.audio_seconds += info["duration_s"]
        self.summary.silent += int(info["silent"])
        self.bar.update(1)
        self.bar.set_postfix(ok=self.summary.extracted, skip=self.summary.skipped,
                             fail=self.summary.failed)
        if self.on_item is not None:
            self.on_item(src.index)

    def fail(self, src: _Source, error: BaseException, unit: Unit | None) -> None:
        """Append the file's error to errors.jsonl; the run goes on."""
        text = str(error) if isinstance(error, ValueError) else \
            f"{type(error).__name__}: {error}"
        if unit is not None:
            message = f"{src.path}: encoding failed: {text}"
        elif isinstance(error, ValueError):
            message = text  # mullm's audio errors name the file already
        else:
            message = f"{src.path}: {text}"
        rec = {"input": src.path, "error": message}
        if src.id is not None:
            rec["id"] = src.id
        self.errors.write(json_line(rec))
        self.errors.flush()
        self.summary.failed += 1
        self.summary.errors.append(rec)
        self.bar.update(1)


def extract_features(encoder: Encoder, paths: list[str], out_dir: str | os.PathLike, *,
                     ids: list[str] | None = None, batch_size: int = 8,
                     layers: str | int | list[int] = "all", dtype: str | None = None,
                     augment: str | None = None, shard_mb: float = 256.0,
                     progress: bool = True,
                     on_item: Callable[[int], None] | None = None) -> ExtractSummary:
    """Encode audio files into a feature cache; failures go to OUT/errors.jsonl.

    ``on_item(i)`` is called once input ``i`` has been encoded and added to the cache (a
    hook for tests and progress displays); skipped and failed inputs do not call it.

    Raises:
        LockedError: another extraction is writing ``out_dir``.
        StaleCacheError: ``out_dir`` holds features made with other settings.
        ValueError: an unknown dtype, a layer the encoder lacks, or batch_size < 1.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    summary = ExtractSummary()
    t0 = time.perf_counter()
    with exclusive_lock(out_dir / LOCK, what=f"{out_dir}: another extract is writing here",
                        remedy="wait for it to finish or choose another --out folder"):
        writer = FeatureCacheWriter(out_dir, encoder, layers=layers,
                                    window_s=encoder.config.window_s, dtype=dtype,
                                    augment=augment, shard_mb=shard_mb)
        with (out_dir / ERRORS).open("w") as errors, \
                tqdm(total=len(paths), unit="file", disable=not progress, file=sys.stderr,
                     dynamic_ncols=True) as bar:  # errors.jsonl: this run's failures only
            job = _Extraction(encoder, writer, summary, errors, bar, on_item)
            writer.index["chunk_s"] = job.chunk_s
            sources = (_Source(i, str(p), None if ids is None else ids[i])
                       for i, p in enumerate(paths))
            BatchEngine(job, batch_size, isolate=_ITEM_ERRORS).run(sources)
            writer.close()
    summary.seconds = time.perf_counter() - t0
    return summary
