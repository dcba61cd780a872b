"""The captioning engine: tracks -> segment captions -> whole-track captions, on the shared
windowed batching engine (``mullm.utils.batching``).

- every track is read window by window (``mullm.audio.iter_audio_windows``: bounded memory,
  every second covered), and the windows of all tracks are batched together through the
  model (left padding, KV cache, media encoded once at prefill);
- a track longer than one window gets a whole-track caption made by the LLM from its
  segment captions, in text (``summary="llm"``: groups of ``SUMMARY_GROUP`` segments, then
  a summary of the group summaries, in rounds), or the segment captions joined with time
  stamps (``summary="concat"``); see docs/captioning.md;
- a bad file, or a generation that fails for one track, becomes a record with ``error``
  set and the job goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mullm.caption.inputs import CaptionItem
from mullm.caption.settings import (
    DEFAULT_PROMPT,
    SUMMARY_GROUP,
    SUMMARY_PROMPT,
    CaptionJobError,
    CaptionSettings,
)
from mullm.errors import AudioError, DataError
from mullm.utils.batching import BatchEngine, BatchJob, Unit

if TYPE_CHECKING:
    import numpy as np
    from transformers import GenerationConfig

    from mullm.model import MusicLLM

SEGMENT, SUMMARY = "segment", "summary"


def _generate_text(model: MusicLLM, conversations: list[list[dict]], media: list[dict] | None,
                   generation_config: GenerationConfig, seed: int | None) -> list[str]:
    """The one place the caption engine calls the model: one reply text per conversation.

    ``media`` holds one ``{"audio": [waveform]}`` per conversation, or None (text only).
    """
    return list(model.generate_text(conversations, media, generation_config=generation_config,
                                    seed=seed))


@dataclass
class _Track:
    """One track's captions while it is being worked on."""

    item: CaptionItem
    duration_s: float = 0.0
    segments: dict[int, tuple[float, float, str]] = field(default_factory=dict)
    silent: list[bool] = field(default_factory=list)
    error: str | None = None
    summary_texts: list[str | None] | None = None  # None until its segments are captioned


@dataclass
class _Segment:
    """One window of a track: a unit of the segment lane."""

    index: int
    start_s: float
    end_s: float
    wave: np.ndarray


@dataclass
class _SummaryPrompt:
    """Captions to summarise: a unit of the summary lane; ``slot`` is its place in the
    track's current round."""

    lines: list[str]
    slot: int


def _fmt_time(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}:{sec:02d}"


def _short_error(exc: BaseException) -> str:
    try:
        text = str(exc).strip() or type(exc).__name__
    except Exception:  # an exception whose message itself fails must still be recorded
        text = f"{type(exc).__name__} (its message could not be read)"
    if not isinstance(exc, (AudioError, DataError)):
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0][:500]


class Captioner(BatchJob[_Track]):
    """Captions tracks with a ``MusicLLM``: windows batched across tracks, a whole-track
    summary per long track, and one record per track through ``on_record``.

    Raises:
        CaptionJobError: the model has no audio modality.
        ValueError: a batch size < 1, or settings that cannot work (naming the flag).
    """

    lanes = (SEGMENT, SUMMARY)

    def __init__(self, model: MusicLLM, prompt: str = DEFAULT_PROMPT, batch_size: int = 8,
                 settings: CaptionSettings | None = None, model_name: str | None = None
                 ) -> None:
        if "audio" not in model.config.modalities:
            raise CaptionJobError("the model has no audio modality; captioning needs one "
                                  f"(it has {sorted(model.config.modalities)})")
        if batch_size < 1:
            raise ValueError(f"--batch-size={batch_size}: must be >= 1")
        self.model = model
        self.prompt = prompt
        self.batch_size = batch_size
        self.settings = settings or CaptionSettings()
        self.settings.validate()
        enc_cfg = model.config.modalities["audio"].encoder
        self.sample_rate = int(model.encoders["audio"].sample_rate)
        if self.settings.window_s:
            # A window given for this job: its hop defaults to the window, not the config's.
            self.window_s = float(self.settings.window_s)
            self.hop_s = float(self.settings.hop_s or self.window_s)
        else:
            self.window_s = float(enc_cfg.window_s or enc_cfg.max_duration_s)
            self.hop_s = float(self.settings.hop_s or enc_cfg.hop_s or self.window_s)
        if self.hop_s > self.window_s:
            raise ValueError(f"hop {self.hop_s} s > window {self.window_s} s would skip audio")
        self.min_duration_s = float(enc_cfg.min_duration_s)
        self.model_name = model_name or str(model.config.llm.name_or_path)
        self._on_record: Callable[[dict[str, Any]], None] | None = None

    def run(self, items: list[CaptionItem], on_record: Callable[[dict[str, Any]], None]
            ) -> None:
        """Caption ``items``; ``on_record`` receives each finished record (any order),
        exactly once per item."""
        self._on_record = on_record
        try:
            BatchEngine(self, self.batch_size).run(_Track(item) for item in items)
        finally:
            self._on_record = None

    # -------------------------------------------------------------- records
    def generation_record(self) -> dict[str, Any]:
        """The ``generation`` field: settings with the resolved window and hop."""
        g = self.settings.record()
        g["window_s"], g["hop_s"] = self.window_s, self.hop_s
        return g

    def _record(self, track: _Track) -> dict[str, Any]:
        gen = self.generation_record()
        warnings = []
        if track.error is None and track.silent and all(track.silent):
            warnings.append("silent: the audio is below -60 dBFS throughout; the caption "
                            "describes silence or is unreliable")
        gen["warnings"] = warnings
        segs = [] if track.error else [
            {"start_s": round(s, 3), "end_s": round(e, 3), "caption": c}
            for _, (s, e, c) in sorted(track.segments.items())]
        caption = None
        if track.error is None:
            caption = track.summary_texts[0] if track.summary_texts else segs[0]["caption"]
        return {"id": track.item.id, "path": track.item.path, "caption": caption,
                "segments": segs, "error": track.error,
                "duration_s": round(track.duration_s, 3) if track.duration_s else None,
                "model": self.model_name, "prompt": self.prompt, "generation": gen}

    # -------------------------------------------------------------- BatchJob
    def read(self, track: _Track) -> Iterator[_Segment]:
        """The track's windows, decoded lazily. A last window shorter than the encoder's
        minimum joins the previous one (a little longer than the window) instead of being
        captioned alone."""
        import numpy as np

        from mullm.audio import audio_info, is_silent, iter_audio_windows

        track.duration_s = audio_info(track.item.path).duration_s
        min_samples = self.min_duration_s * self.sample_rate
        pending: _Segment | None = None
        for w in iter_audio_windows(track.item.path, self.sample_rate, self.window_s,
                                    self.hop_s, min_duration_s=self.min_duration_s):
            if pending is not None and len(w.wave) < min_samples:
                extra = round(max(0.0, w.end_s - pending.end_s) * self.sample_rate)
                if extra:
                    pending.wave = np.concatenate([pending.wave, w.wave[len(w.wave) - extra:]])
                pending.end_s = max(pending.end_s, w.end_s)
                continue
            if pending is not None:
                track.silent.append(is_silent(pending.wave))
                yield pending
            pending = _Segment(len(track.silent), w.start_s, w.end_s, w.wave)
        if pending is not None:
            track.silent.append(is_silent(pending.wave))
            yield pending

    def run_batch(self, lane: str, payloads: list[Any], number: int) -> list[str]:
        """Segments: the prompt with each window; summaries: text only."""
        # A per-batch seed derived from the job seed: deterministic for the same inputs
        # and batch size, and batches do not all draw the same random numbers.
        seed = self.settings.seed
        seed = None if seed is None else seed + 1_000_003 * number
        if lane == SEGMENT:
            conversations = [[{"role": "user", "content": self.prompt}] for _ in payloads]
            media: list[dict] | None = [{"audio": [p.wave]} for p in payloads]
        else:
            conversations = [[{"role": "user", "content": SUMMARY_PROMPT.format(
                segments="\n".join(p.lines))}] for p in payloads]
            media = None
        return _generate_text(self.model, conversations, media, self.settings.generation,
                              seed)

    def store(self, track: _Track, unit: Unit, result: str) -> None:
        """Keep a segment caption, or a summary in its slot of the current round."""
        p = unit.payload
        if unit.lane == SEGMENT:
            track.segments[p.index] = (p.start_s, p.end_s, result)
        else:
            track.summary_texts[p.slot] = result  # type: ignore[index]

    def follow_up(self, track: _Track) -> list[tuple[str, _SummaryPrompt]]:
        """After the segments: nothing (one segment, or ``concat``) or the first summary
        round; after a round of several summaries: a round summarising those."""
        if track.summary_texts is None:
            lines = [f"[{_fmt_time(s)}-{_fmt_time(e)}] {c}"
                     for _, (s, e, c) in sorted(track.segments.items())]
            if not lines:
                raise AudioError(f"{track.item.path}: no audio window to caption")
            if len(lines) == 1:
                return []
            if self.settings.summary == "concat":
                track.summary_texts = ["\n".join(lines)]
                return []
            return self._summary_round(track, lines)
        if len(track.summary_texts) == 1:
            return []
        return self._summary_round(track, [f"[part {i + 1}] {x}"
                                           for i, x in enumerate(track.summary_texts)])

    @staticmethod
    def _summary_round(track: _Track, lines: list[str]) -> list[tuple[str, _SummaryPrompt]]:
        groups = [lines[i:i + SUMMARY_GROUP] for i in range(0, len(lines), SUMMARY_GROUP)]
        track.summary_texts = [None] * len(groups)
        return [(SUMMARY, _SummaryPrompt(group, slot)) for slot, group in enumerate(groups)]

    def finish(self, track: _Track) -> None:
        """Hand the track's record to ``on_record``."""
        self._on_record(self._record(track))  # type: ignore[misc]

    def fail(self, track: _Track, error: BaseException, unit: Unit | None) -> None:
        """Hand the track's error record to ``on_record``, saying which step failed."""
        if unit is None:
            track.error = _short_error(error)
        elif unit.lane == SEGMENT:
            p = unit.payload
            track.error = (f"generation failed on {_fmt_time(p.start_s)}-{_fmt_time(p.end_s)}"
                           f": {_short_error(error)}")
        else:
            track.error = f"summary failed: {_short_error(error)}"
        self._on_record(self._record(track))  # type: ignore[misc]
