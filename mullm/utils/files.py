"""Checks every reader of user files makes first: the file exists, is a file, is not empty;
loading ``.npy`` arrays without pickles; and the check every writer makes before it starts:
the output path can be written. Errors name the path and use the caller's exception type
(AudioError, ImageError, DataError, OutputError ...)."""

from __future__ import annotations

import errno
import os
import secrets
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
        if path.is_symlink():
            raise error(f"{path}: {_link_problem(path)}; expected {_article(kind)} {kind} "
                        "file")
        raise error(f"{path}: {kind} file not found")
    if not path.is_file():
        raise error(f"{path}: not a regular file (expected {_article(kind)} {kind} file)")
    if path.stat().st_size == 0:
        raise error(f"{path}: file is empty (0 bytes)")
    return path


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _link_problem(path: Path) -> str:
    """Why a symbolic link leads nowhere: a loop, or a target that does not exist."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop (-> {target})"
        return f"broken symbolic link (-> {target}: {exc.strerror})"
    return f"symbolic link (-> {target})"


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


def check_output_path(path: str | os.PathLike, *, folder: bool = False, flag: str = "--out",
                      error: type[Exception] = OSError) -> Path:
    """Check that ``path`` can be written, before any expensive work (loading a model).

    A missing folder is fine if it can be created where it would go: the nearest existing
    folder above it is checked by creating and removing a probe file there (permission
    bits alone do not tell, e.g. for root or on a read-only mount). Nothing is left behind.

    Args:
        path: the output file, or the output folder when ``folder``.
        flag: the option that named it, for messages.
        error: the exception type to raise.

    Raises:
        error: one line naming the option, the path, the problem and what would work:
            the path is a folder where a file is wanted (or a file where a folder is), a
            file stands where a folder must be, or the folder cannot be written.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise error(f"{flag} {path}: is a folder; give a file path")
    if folder and path.exists() and not path.is_dir():
        raise error(f"{flag} {path}: is a file; give a folder")
    parent = path if folder else path.parent
    existing = Path(os.path.abspath(parent))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"{flag} {path}: {existing} is a file, not a folder; choose another path")
    probe = existing / f".mullm-write-test-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise error(f"{flag} {path}: cannot write in {existing} ({exc.strerror}); choose a "
                    "folder you can write to") from None
    os.close(fd)
    os.unlink(probe)
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise error(f"{flag} {path}: the file is read-only; make it writable or choose "
                    "another path")
    return path
