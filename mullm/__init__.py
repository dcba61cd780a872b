"""mullm: music language models from configs."""

from __future__ import annotations

__version__ = "0.1.0"


def load(source, overrides=None, **kwargs):  # noqa: ANN001, ANN201 - lazy re-export
    """Load a MusicLLM from a model directory or a config YAML (see ``MusicLLM.load``)."""
    from mullm.model import MusicLLM

    return MusicLLM.load(source, overrides=overrides, **kwargs)


__all__ = ["__version__", "load"]
