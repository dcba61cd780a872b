"""Music output: output tokens, a projector, and music decoders (M2UGen-style)."""

from __future__ import annotations

from mullm.outputs.types import GeneratedAudio

__all__ = ["GeneratedAudio"]
