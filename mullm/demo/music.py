"""Music output in the demo: the hook a music decoder plugs into, and a stand-in for tests.

The app takes an optional ``music`` callable::

    music(messages: list[dict], media: dict[str, list]) -> list[GeneratedAudio]

``messages`` is the whole conversation as the model saw it, ending with the assistant's
reply just generated (``{"role", "content"}`` dicts, ``<audio>`` / ``<image>`` markers in
place); ``media`` holds the items those markers stand for (``{"audio": [waveforms at the
model's rate], "image": [paths]}``). It returns zero or more clips; the demo shows each as a
playable audio message with its mode, and the user can attach it to the next turn (the
editing loop). ``mullm demo`` wires ``model.render_music`` when the model has one.

``ToneMusic`` is a stand-in decoder (no model): it answers with a sine tone, so the demo's
music path can be built and tested before a real decoder exists. Its clips say
``mode="stand-in"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from mullm.outputs import GeneratedAudio

MusicHook = Callable[[list[dict], dict[str, list]], list[GeneratedAudio]]


class ToneMusic:
    """A stand-in music decoder: a sine tone whose pitch depends on the reply's text.

    Args:
        trigger: answer only when the last user message contains this word (case
            insensitive); None answers every turn.
        duration_s: length of each tone in seconds.
        sample_rate: Hz of the returned waveform.
    """

    def __init__(self, trigger: str | None = None, duration_s: float = 1.0,
                 sample_rate: int = 16000) -> None:
        if duration_s <= 0 or sample_rate <= 0:
            raise ValueError(f"duration_s ({duration_s}) and sample_rate ({sample_rate}) "
                             "must be > 0")
        self.trigger = trigger.lower() if trigger else None
        self.duration_s = duration_s
        self.sample_rate = sample_rate
        self.calls: list[tuple[list[dict], dict[str, list]]] = []  # what it was given

    def __call__(self, messages: list[dict], media: dict[str, list]) -> list[GeneratedAudio]:
        """One tone (or none when the trigger word is absent); see the module docstring."""
        self.calls.append((messages, media))
        request = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if self.trigger and self.trigger not in request.lower():
            return []
        reply = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" \
            else ""
        # A pitch from the text: different replies sound different, the same reply the same.
        digest = hashlib.sha256(reply.encode("utf-8")).digest()
        semitone = digest[0] % 24
        freq = 220.0 * 2 ** (semitone / 12)
        t = np.arange(int(round(self.duration_s * self.sample_rate))) / self.sample_rate
        fade = np.minimum(1.0, np.minimum(t, self.duration_s - t) / 0.02)  # no clicks
        wave = (0.4 * np.sin(2 * np.pi * freq * t) * fade).astype(np.float32)
        return [GeneratedAudio(wave, self.sample_rate, mode="stand-in", request=request,
                               meta={"decoder": "ToneMusic (stand-in)",
                                     "freq_hz": round(freq, 2)})]


def check_clips(clips: Any) -> list[GeneratedAudio]:
    """Validate what a music hook returned.

    Raises:
        TypeError: not a list of ``GeneratedAudio``, naming what it was.
        ValueError: an empty or non-finite waveform.
    """
    if clips is None:
        return []
    if not isinstance(clips, (list, tuple)) or not all(isinstance(c, GeneratedAudio)
                                                       for c in clips):
        raise TypeError(f"the music hook must return a list of GeneratedAudio, got "
                        f"{type(clips).__name__}")
    for c in clips:
        if c.waveform.size == 0 or not np.isfinite(c.waveform).all():
            raise ValueError("the music hook returned an empty or non-finite waveform")
    return list(clips)


__all__ = ["MusicHook", "ToneMusic", "check_clips"]
