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


class OutputError(MullmError, ValueError):
    """An output path that cannot be written (checked before a job starts its work)."""


def one_line(exc: BaseException) -> str:
    """An exception as the one line a command prints after ``mullm CMD: error:``.

    mullm's own errors and ``ValueError`` say what is wrong in their text; anything else
    (an ``OSError`` from the OS, an unexpected exception) is prefixed with its type. Only
    the first line is kept.
    """
    text = str(exc).strip()
    if not isinstance(exc, (MullmError, ValueError)) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text.splitlines()[0]
