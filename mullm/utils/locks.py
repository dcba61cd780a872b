"""One kind of lock for every job that must be the only writer of a file or folder.

An exclusive lock that never waits: a second holder is refused at once with a ``LockedError``
naming the lock file and what to do. Built on ``filelock`` (an OS lock on the file, so a
killed holder never leaves a stale lock behind; the empty lock file itself may stay).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mullm.errors import MullmError


class LockedError(MullmError):
    """Another process holds the lock this job needs."""


@contextlib.contextmanager
def exclusive_lock(lock_file: str | os.PathLike, *, what: str, remedy: str) -> Iterator[Path]:
    """Hold ``lock_file`` exclusively for the block, or refuse at once.

    Args:
        lock_file: the lock file (created with its folder if missing).
        what: what the other holder is doing, for the message ("another caption job is
            writing out.jsonl").
        remedy: what the user can do ("wait for it or use another --out").

    Raises:
        LockedError: another process (or another lock object in this one) holds it; the
            message names ``lock_file``, ``what`` and ``remedy``.
    """
    from filelock import FileLock, Timeout

    path = Path(lock_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(f"{what} (it holds the lock {path}); {remedy}") from None
    try:
        yield path
    finally:
        lock.release()
