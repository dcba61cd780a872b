"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a part.

One implementation for the whole package: write a temporary file in the destination's
folder, fsync it, ``os.replace`` it over the destination, fsync the folder. The temporary
name starts with a dot and keeps the destination's suffix, so tools that pick a format from
the suffix (soundfile, safetensors) write the right thing, and folder scans that skip hidden
files never see it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entry table so a rename in it survives a power cut.

    Silently does nothing where folders cannot be opened (Windows): there the rename itself
    is as durable as the platform allows.
    """
    with contextlib.suppress(OSError):
        fd = os.open(str(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The caller creates and writes the temporary file by any means (``open``,
    ``safetensors.torch.save_file``, ``soundfile.write``). On normal exit the file is
    fsynced, moved over ``path`` with ``os.replace`` and the folder is fsynced. On an
    exception the temporary file is removed, ``path`` is left as it was and the exception
    propagates.

    Raises:
        FileNotFoundError: the caller's block did not create the temporary file, or the
            destination folder does not exist.
    """
    path = Path(path)
    # Not created here (mkstemp would make it 0600): writers create it with the usual mode.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: the atomic write of {path} created no file")
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w",
                encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds.

    ``mode`` is ``"w"`` (text, ``encoding``) or ``"wb"`` (bytes). See ``atomic_path``.

    Raises:
        ValueError: ``mode`` is not a write mode ("w" or "wb").
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode {mode!r}: expected 'w' or 'wb'")
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding
                                        ) as f:
        yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see ``atomic_path``)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically (see ``atomic_path``)."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
