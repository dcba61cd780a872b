"""mullm: music language models from configs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mullm.config import ModelConfig
    from mullm.model import MusicLLM

__version__ = "0.1.0"


def resolve_model_source(source: str | Path | ModelConfig) -> str | Path | ModelConfig:
    """What ``MusicLLM.load`` takes for ``source``: a model directory or a config object as
    given, a YAML path, or the file of a shipped config named by ``source``.

    ``"offline-default"`` -> ``.../configs/models/offline-default.yaml``. An existing path
    always wins over a name; neither raises ``ModelLoadError`` with the known names.
    """
    from mullm.config import ModelConfig, resolve_config_path
    from mullm.errors import ConfigError, ModelLoadError

    if isinstance(source, ModelConfig) or Path(source).expanduser().exists():
        return source
    try:
        return resolve_config_path(source)
    except ConfigError as exc:
        raise ModelLoadError(f"{source!r} is not a model directory. {exc}") from None


def load(source: str | Path | ModelConfig, overrides: list[str] | None = None,
         **kwargs: Any) -> MusicLLM:
    """Load a MusicLLM from a model directory, a config YAML, or a shipped config's name
    (``mullm.load("offline-default")``); see ``MusicLLM.load``."""
    from mullm.model import MusicLLM

    return MusicLLM.load(source, overrides=overrides, **kwargs)


__all__ = ["__version__", "load", "resolve_model_source"]
