"""Exception types shared by every part of mullm.

Each subclasses ``ValueError`` as well so callers that only know the standard library can
still catch bad input (INTERFACES.md, Errors).
"""

from __future__ import annotations


class MullmError(Exception):
    """Base class for every error mullm raises on purpose."""


class ConfigError(MullmError, ValueError):
    """A config key, value or combination that cannot work."""


class AudioError(MullmError, ValueError):
    """An audio (or image) input that cannot be decoded or fails validation."""


class ModelLoadError(MullmError, ValueError):
    """A model directory, checkpoint or weight file that cannot be loaded as asked."""


class DataError(MullmError, ValueError):
    """A manifest or conversation row that is malformed."""
