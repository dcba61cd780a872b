"""Training data: conversation JSONL -> samples (workers load audio) -> padded batches.

* ``ConversationDataset`` reads one or more conversation files (fail fast on the first bad
  row, or record it with ``skip_bad``) and returns, per index, the messages and the decoded
  media (waveforms, or ``Features`` from a feature cache). Decoding happens in
  ``__getitem__``, so DataLoader workers do it in parallel; the dataset holds no model.
* ``Collator`` turns a list of samples into a batch with the model's ``MusicProcessor`` (chat
  template, placeholder expansion, labels on assistant turns only, truncation, padding).
* ``MixtureBatches`` is the batch order: a seeded, resumable, length-grouped mixture of
  sources that every rank slices the same way, so a run restarted at batch ``k`` sees the
  same batches as one that never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mullm.errors import DataError

if TYPE_CHECKING:
    from mullm.model import MusicLLM


@dataclass
class MediaSpec:
    """How one modality's files are decoded (kept apart from the model for the workers)."""

    sample_rate: int
    max_duration_s: float
    min_duration_s: float


def media_specs(model: MusicLLM) -> dict[str, MediaSpec]:
    """Decoding settings of every audio modality of ``model`` (from its processor)."""
    return {name: MediaSpec(s.sample_rate, s.max_duration_s, s.min_duration_s)
            for name, s in model.processor.specs.items() if s.modality == "audio"}


@dataclass
class Source:
    """A conversation file with its filters and mix weight."""

    path: str
    weight: float = 1.0
    split: str | None = None
    tasks: list[str] | None = None
    max_samples: int | None = None


class ConversationDataset(torch.utils.data.Dataset):
    """Conversations from one or more JSONL sources; items are decoded on access.

    With ``feature_cache`` (a folder written by ``mullm extract`` with ``encoder``), each
    audio file is resolved to its cache item once, here: by the path the cache recorded
    while the file is unchanged (size and modification time) or gone, by content hash
    otherwise. Cached files are then served as ``Features`` without touching the audio
    (which need not exist any more); the others are decoded as usual.

    Raises:
        DataError: a bad row (file:line, unless ``skip_bad``), a source with no usable
            conversation, audio for a model without an audio modality, or a windowed cache.
        StaleCacheError: the cache was made with other encoder settings.
    """

    def __init__(self, sources: Sequence[Source] | Sequence[str | Path] | str | Path,
                 media: dict[str, MediaSpec], *, skip_bad: bool = False,
                 errors_path: str | Path | None = None, feature_cache: str | None = None,
                 encoder: Any = None,
                 task_prefixes: tuple[str | None, str | None] | None = None) -> None:
        """``task_prefixes`` = (generation, understanding): text put before the first user
        message of ``generate`` conversations and of all others (a model config's
        ``music_output.generation_prefix`` / ``understanding_prefix``)."""
        from mullm.data.schema import read_conversations

        if isinstance(sources, (str, Path)):
            sources = [sources]
        self.sources = [s if isinstance(s, Source) else Source(str(s)) for s in sources]
        self.media = dict(media)
        self.cache = None
        audio_exists = None
        if feature_cache:
            from mullm.features import FeatureCache

            self.cache = FeatureCache(feature_cache, encoder)
            if self.cache.windowing.get("window_s"):
                raise DataError(f"{feature_cache}: windowed feature caches cannot feed "
                                "training; extract whole clips")
            audio_exists = self._cached_or_present
        self.items: list[Any] = []
        self.source_of: list[int] = []
        for si, src in enumerate(self.sources):
            convs = read_conversations(src.path, skip_bad=skip_bad, errors_path=errors_path,
                                       audio_exists=audio_exists)
            kept = [c for c in convs
                    if (src.split is None or c.split == src.split)
                    and (src.tasks is None or c.task in src.tasks)
                    and (c.audio or not c.images)]  # image-only rows need an image modality
            kept = [c for c in kept if any(t["role"] == "assistant" for t in c.turns)]
            if src.max_samples is not None:
                kept = kept[: src.max_samples]
            if not kept:
                what = f" with split={src.split!r}" if src.split else ""
                what += f" and tasks={src.tasks}" if src.tasks else ""
                raise DataError(
                    f"{src.path}: no usable conversation{what} ({len(convs)} rows read; a "
                    f"usable row has an assistant reply and only media the model takes)"
                )
            self.items.extend(kept)
            self.source_of.extend([si] * len(kept))
        if self.items and "audio" not in self.media and any(c.audio for c in self.items):
            raise DataError("the data has audio but the model has no audio modality")
        # Audio path (as the conversations resolve it) -> cache item key, for cached files.
        self.cache_keys: dict[str, str] = {}
        if self.cache is not None:
            for path in {p for c in self.items for p in c.audio_paths()}:
                key = self.cache.key_for_path(path)
                if key is not None:
                    self.cache_keys[str(path)] = key
        self._lengths: list[int] | None = None
        self.task_prefixes = task_prefixes

    def _cached_or_present(self, path: Path) -> bool:
        return path.is_file() or self.cache.knows_path(path)

    def __len__(self) -> int:
        return len(self.items)

    def conversation(self, index: int) -> Any:
        """The ``Conversation`` at ``index``."""
        return self.items[index]

    def load_audio(self, path: Path) -> Any:
        """Cached ``Features`` (L, T, D) when the cache has this file (found by the key
        resolved when the dataset was built: the audio is not read), else the decoded
        waveform tensor (samples,)."""
        from mullm.audio import load_audio
        from mullm.media import Features

        key = self.cache_keys.get(str(path))
        if key is not None:
            return Features(self.cache.get_key(key)[0].float(), name=str(path))
        spec = self.media["audio"]
        wave = load_audio(path, spec.sample_rate, max_duration_s=spec.max_duration_s,
                          min_duration_s=spec.min_duration_s)
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))

    def __getitem__(self, index: int) -> dict[str, Any]:
        conv = self.items[index]
        media: dict[str, list] = {}
        try:
            if conv.audio:
                media["audio"] = [self.load_audio(p) for p in conv.audio_paths()]
        except Exception as exc:
            src = self.sources[self.source_of[index]].path
            raise DataError(f"conversation {conv.id!r} (source {src}): {exc}") from exc
        if conv.images:
            media["image"] = [str(p) for p in conv.image_paths()]
        messages = [dict(t) for t in conv.turns]
        if self.task_prefixes is not None:
            from mullm.outputs.vocab import apply_task_prefix

            generation, understanding = self.task_prefixes
            messages = apply_task_prefix(messages, generation if conv.task == "generate"
                                         else understanding)
        return {"index": index, "id": conv.id, "messages": messages, "media": media,
                "music_caption": conv.target["caption"] if conv.target else None}

    def lengths(self, model: MusicLLM) -> list[int]:
        """Estimated token count per sample (text tokens + media tokens from file headers),
        used to group similar lengths into one batch."""
        if self._lengths is not None:
            return self._lengths
        from mullm.audio import audio_info

        tok = model.tokenizer
        texts = ["\n".join(t["content"] for t in c.turns) for c in self.items]
        text_len = [len(x) for x in tok(texts, add_special_tokens=False)["input_ids"]]
        durations: dict[Path, float] = {}
        out = []
        spliced = "audio" in model.placeholder_ids
        for c, n in zip(self.items, text_len):
            extra = 8 * len(c.turns)  # chat-template tokens per turn, roughly
            if c.audio and spliced:
                enc = model.encoders["audio"]
                for p in c.audio_paths():
                    key = self.cache_keys.get(str(p))
                    if key is not None:  # cached: its frame count is known, no file read
                        frames = int(self.cache.info(key)["frames"])
                    else:
                        if p not in durations:
                            durations[p] = audio_info(p).duration_s
                        frames = enc.num_frames(int(durations[p] * enc.sample_rate))
                    extra += model.adapters["audio"].num_tokens(frames)
            out.append(n + extra)
        self._lengths = out
        return out


class Collator:
    """Samples -> a training batch via a ``MusicProcessor`` (no model: it pickles to the size
    of the tokenizer). Beside the model inputs the batch has ``ids`` and ``indices`` of the
    samples it holds, ``truncated_label_tokens`` (answer tokens ``max_length`` cut) and
    ``dropped_ids`` (samples left out because the cut took their whole answer); when a sample
    has a music target, ``music_captions`` (one caption or None per sample, for the model's
    music-output loss)."""

    def __init__(self, processor: Any, max_length: int | None = None) -> None:
        self.processor = processor
        self.max_length = max_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.processor([s["messages"] for s in samples], [s["media"] for s in samples],
                             max_length=self.max_length)
        kept = [s for i, s in enumerate(samples) if i not in set(out.dropped)]
        batch = dict(out)
        batch["ids"] = [s["id"] for s in kept]
        batch["indices"] = torch.tensor([s["index"] for s in kept], dtype=torch.long)
        batch["truncated_label_tokens"] = out.truncated_label_tokens
        batch["dropped_ids"] = [samples[i]["id"] for i in out.dropped]
        captions = [s.get("music_caption") for s in kept]
        if any(captions):
            batch["music_captions"] = captions
        return batch


class MixtureBatches(torch.utils.data.Sampler):
    """Resumable batch order: ``start`` skips batches by arithmetic, never by loading them.

    Each pass ("epoch") draws from every source in proportion to its weight (a source with
    weight w of a total W gets round(N * w / W) samples, N = samples with weight > 0, cycling
    its own shuffled order), shuffles, optionally groups by length (sorted inside windows of
    ``50 * batch`` samples, batch order shuffled), and cuts global batches of
    ``batch_size * world_size * accum``. Each global batch is yielded as ``accum``
    micro-batches; in micro-batch a, rank r takes slice ``a * world_size + r``. So the samples
    of one optimiser step do not depend on how they are split over ranks and accumulation.
    ``start`` counts micro-batches. Everything comes from ``np.random.default_rng([seed,
    epoch])``.
    """

    def __init__(self, source_of: Sequence[int], weights: Sequence[float], batch_size: int,
                 seed: int, lengths: Sequence[int] | None = None, rank: int = 0,
                 world_size: int = 1, start: int = 0, group_window: int = 50,
                 accum: int = 1) -> None:
        self.source_of = np.asarray(source_of, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
        self.start = start
        self.group_window = group_window
        self.accum = accum
        self.global_batch = batch_size * world_size * accum
        if start % accum:
            raise ValueError(f"start={start} must be a multiple of accum={accum}")
        self.by_source = [np.flatnonzero(self.source_of == s) for s in range(len(self.weights))]
        active = [s for s, w in enumerate(self.weights) if w > 0 and len(self.by_source[s])]
        if not active:
            raise DataError("no data source with weight > 0 has samples")
        n = sum(len(self.by_source[s]) for s in active)
        total_w = sum(self.weights[s] for s in active)
        self.counts = {s: max(1, round(n * self.weights[s] / total_w)) for s in active}
        per_epoch = sum(self.counts.values())
        # A tiny dataset still yields full batches: repeat the pass until one fits.
        self.repeats = max(1, math.ceil(self.global_batch / per_epoch))
        self.batches_per_epoch = (per_epoch * self.repeats) // self.global_batch

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches of one pass."""
        rng = np.random.default_rng([self.seed, epoch])
        parts = []
        for _ in range(self.repeats):
            for s, k in self.counts.items():
                pool = self.by_source[s]
                reps = math.ceil(k / len(pool))
                order = np.concatenate([rng.permutation(pool) for _ in range(reps)])[:k]
                parts.append(order)
        idx = rng.permutation(np.concatenate(parts))
        usable = self.batches_per_epoch * self.global_batch
        if self.lengths is not None:
            window = self.group_window * self.global_batch
            grouped = []
            for a in range(0, len(idx), window):
                chunk = idx[a:a + window]
                grouped.append(chunk[np.argsort(-self.lengths[chunk], kind="stable")])
            idx = np.concatenate(grouped)
        idx = idx[:usable]
        batches = [idx[i:i + self.global_batch] for i in range(0, usable, self.global_batch)]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def global_batch_at(self, position: int) -> np.ndarray:
        """The global batch number ``position`` of the endless stream."""
        epoch, offset = divmod(position, self.batches_per_epoch)
        return self.epoch_batches(epoch)[offset]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start // self.accum, self.batches_per_epoch)
        while True:
            batches = self.epoch_batches(epoch)
            for b in batches[offset:]:
                for a in range(self.accum):
                    lo = (a * self.world_size + self.rank) * self.batch_size
                    yield [int(i) for i in b[lo:lo + self.batch_size]]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:
        return self.batches_per_epoch


def sequential_batches(n: int, batch_size: int) -> list[list[int]]:
    """Fixed batches 0..n-1 in order (evaluation)."""
    return [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]
