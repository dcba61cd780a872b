"""mullm: music language models from configs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mullm.config import ModelConfig
    from mullm.model import MusicLLM

from mullm._version import __version__
from mullm.config import resolve_model_source


def load(source: str | Path | ModelConfig, overrides: list[str] | None = None,
         **kwargs: Any) -> MusicLLM:
    """Load a MusicLLM from a model directory, a config YAML, or a shipped config's name
    (``mullm.load("offline-default")``); see ``MusicLLM.load``."""
    from mullm.model import MusicLLM

    return MusicLLM.load(source, overrides=overrides, **kwargs)


__all__ = ["__version__", "load", "resolve_model_source"]
