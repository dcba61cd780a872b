"""Music output: output tokens, a projector, and music decoders (M2UGen-style).

``GeneratedAudio`` is the clip type the decoders, ``generate-music`` and the demo share. The
rest is imported on first use (``mullm.config`` reads ``mullm.outputs.config`` and must stay
light): ``MusicOutput`` (the bridge a ``MusicLLM`` holds), ``strip_output_tokens``,
``output_token_text``. See docs/music-output.md.
"""

from __future__ import annotations

from typing import Any

from mullm.outputs.types import GeneratedAudio

_LAZY = {"MusicOutput": "mullm.outputs.bridge", "strip_output_tokens": "mullm.outputs.tokens",
         "output_token_text": "mullm.outputs.tokens", "render_music": "mullm.outputs.render"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mullm.outputs' has no attribute {name!r}")


__all__ = ["GeneratedAudio", "MusicOutput", "output_token_text", "render_music",
           "strip_output_tokens"]
