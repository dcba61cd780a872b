"""Checks every reader of user files makes first: the file exists, is a file, is not empty;
and loading ``.npy`` arrays without pickles. Errors name the path and use the caller's
exception type (AudioError, ImageError, DataError ...)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def check_input_file(path: str | os.PathLike, kind: str, error: type[Exception]) -> Path:
    """Return ``path`` as a Path when it is a non-empty regular file.

    Args:
        path: the file.
        kind: what it should be, for messages ("audio", "image", "video frame").
        error: the exception type to raise.

    Raises:
        error: ``PATH: audio file not found``, ``PATH: not a regular file (expected an
            audio file)`` or ``PATH: file is empty (0 bytes)``.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: {kind} file not found")
    if not path.is_file():
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise error(f"{path}: not a regular file (expected {article} {kind} file)")
    if path.stat().st_size == 0:
        raise error(f"{path}: file is empty (0 bytes)")
    return path


def load_npy(path: str | os.PathLike, error: type[Exception], kind: str = ".npy") -> np.ndarray:
    """``np.load`` a non-empty ``.npy`` file, never unpickling objects.

    Raises:
        error: the file is missing, empty or not a readable array (see
            ``check_input_file``; ``kind`` names it in the not-found message).
    """
    path = check_input_file(path, kind, error)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise error(f"{path}: not a readable .npy array ({exc})") from exc
