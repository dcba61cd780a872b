"""JSON Lines: reading whose every error names ``file:line``, and writing any record.

``iter_jsonl`` yields one ``JsonlLine`` per non-blank line. Parsing is deferred to the
``value`` property, so a strict reader just uses ``line.value`` (the first bad line raises)
while a lenient one catches ``DataError`` per line and goes on. A UTF-8 byte-order mark
before the first line (as spreadsheet programs and Windows editors write) is ignored.

``json_line`` writes one record as UTF-8 text that can always be encoded: a file name that
is not valid UTF-8 reaches Python as a ``str`` holding lone surrogates (PEP 383: byte 0xE9
becomes U+DCE9), which UTF-8 cannot encode; those are written as the JSON escape
``\\udce9``, so the line stays valid UTF-8 and ``json.loads`` gives the same ``str`` back
(``os.fsencode`` then gives the original bytes).
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mullm.errors import DataError
from mullm.utils.text import display_encoding


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


def iter_jsonl(path: str | os.PathLike, *, complete_only: bool = False,
               encoding: str = "utf-8", errors: str = "strict",
               hint: str = "save the file as UTF-8") -> Iterator[JsonlLine]:
    """The non-blank lines of a JSONL file, in order, with their line numbers.

    Args:
        path: the file (UTF-8 unless ``encoding``; a leading UTF-8 BOM is skipped).
        complete_only: stop before a last line that has no final newline: the partial
            record a killed appender leaves behind (it is not a record).
        encoding, errors: how lines are decoded (``errors="surrogateescape"`` keeps bytes
            that are not text, e.g. file names, losslessly).
        hint: what the user can do about a line that does not decode.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: a line does not decode (``file:line``, the byte, the encoding tried).
    """
    path = Path(path)
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if complete_only and not raw.endswith(b"\n"):
                return
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode(encoding, errors)
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not {display_encoding(encoding)} text (byte "
                                f"0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                f"{hint}") from None
            if text.strip():
                yield JsonlLine(path, number, text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_line(obj: Any) -> str:
    """``obj`` as one line of JSON (with its newline) that encodes to UTF-8 whatever its
    strings hold (lone surrogates become ``\\udcXX`` escapes; see the module docstring).

    Raises:
        ValueError: NaN or infinity (not JSON) or a circular structure.
        TypeError: a value JSON cannot hold.
    """
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"
