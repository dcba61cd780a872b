"""What a music-output path returns, shared by the decoders, the batch job and the demo."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class GeneratedAudio:
    """One generated clip.

    Attributes:
        waveform: mono samples (N,), float32 in [-1, 1].
        sample_rate: samples per second of ``waveform``.
        mode: how the decoder was conditioned: "projector" (the LLM's output-token states
            through the trained projector), "text" (a text prompt) or "stand-in" (a test
            decoder, no model).
        request: the text the clip answers (the user's request or the reply).
        meta: anything else worth recording with the clip (decoder name, guidance scale,
            seed, duration asked for ...).
    """

    waveform: np.ndarray
    sample_rate: int
    mode: str
    request: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wave = np.asarray(self.waveform, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"GeneratedAudio.waveform must be mono (N,), got {wave.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"GeneratedAudio.sample_rate={self.sample_rate} must be > 0")
        self.waveform = wave

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.waveform) / self.sample_rate


__all__ = ["GeneratedAudio"]
