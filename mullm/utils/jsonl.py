"""JSON Lines reading whose every error names ``file:line``.

``iter_jsonl`` yields one ``JsonlLine`` per non-blank line. Parsing is deferred to the
``value`` property, so a strict reader just uses ``line.value`` (the first bad line raises)
while a lenient one catches ``DataError`` per line and goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mullm.errors import DataError


@dataclass(frozen=True)
class JsonlLine:
    """One non-blank line of a JSONL file: where it is and its raw text."""

    path: Path
    number: int  # 1-based
    text: str

    @property
    def where(self) -> str:
        """``file:line``, the prefix of every message about this line."""
        return f"{self.path}:{self.number}"

    @property
    def value(self) -> Any:
        """The parsed JSON value.

        Raises:
            DataError: ``file:line: malformed JSON (reason at column c)``.
        """
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{self.where}: malformed JSON ({exc.msg} at column {exc.colno})"
                            ) from None

    @property
    def object(self) -> dict[str, Any]:
        """The parsed value, which must be a JSON object.

        Raises:
            DataError: malformed JSON, or ``file:line: expected a JSON object, got list``.
        """
        value = self.value
        if not isinstance(value, dict):
            raise DataError(f"{self.where}: expected a JSON object, got {type(value).__name__}")
        return value


def iter_jsonl(path: str | os.PathLike, *, complete_only: bool = False) -> Iterator[JsonlLine]:
    """The non-blank lines of a JSONL file, in order, with their line numbers.

    Args:
        path: the file (UTF-8).
        complete_only: stop before a last line that has no final newline: the partial
            record a killed appender leaves behind (it is not a record).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: a line is not UTF-8 (``file:line``).
    """
    path = Path(path)
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if complete_only and not raw.endswith(b"\n"):
                return
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte "
                                f"{exc.start})") from None
            if text.strip():
                yield JsonlLine(path, number, text)
