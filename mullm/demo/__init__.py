"""The Gradio chat demo (``mullm demo``): multi-turn chat about audio and images with one model.

Modules: ``settings`` (limits and generation settings), ``media`` (uploads: checks,
decoding, what the model hears), ``spectrogram`` (pictures of it), ``session`` (one
conversation's state), ``chat`` (the turn logic: long clips, streaming, stop, music),
``music`` (the music-output hook and a stand-in decoder), ``export`` (JSONL in the
conversation schema) and ``app`` (the Gradio page and a safe launch). See docs/demo.md.
"""

from __future__ import annotations

from typing import Any

from mullm.demo.music import MusicHook, ToneMusic
from mullm.demo.settings import DemoConfig, TurnSettings, load_demo_config


def build_demo(*args: Any, **kwargs: Any) -> Any:
    """``mullm.demo.app.build_demo`` (imported on first use: it imports gradio), which
    returns a ``DemoApp``; see there for the arguments."""
    from mullm.demo.app import build_demo as build

    return build(*args, **kwargs)


__all__ = ["DemoConfig", "MusicHook", "ToneMusic", "TurnSettings", "build_demo",
           "load_demo_config"]
