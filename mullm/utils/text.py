"""Reading the text files users bring (CSV, JSON, lists): byte-order marks, encodings, and
errors that name ``file:line``, the byte and the encoding tried.

Spreadsheet programs save CSVs with a UTF-8 byte-order mark ("CSV UTF-8") or as UTF-16
("Unicode text"); older systems write Windows-1252 or Latin-1. A BOM decides the encoding
whatever was asked (it is unambiguous); otherwise the caller's encoding is used, strictly
for text whose content matters, or with ``errors="surrogateescape"`` for lists of file
names, which then reach the file system as their original bytes (PEP 383).
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from mullm.errors import DataError

# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))

ENCODING_HINT = "name the file's encoding with --encoding (e.g. cp1252 or latin-1)"


def check_encoding(encoding: str) -> str:
    """The codec's canonical name.

    Raises:
        DataError: Python knows no such encoding.
    """
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}; use a Python codec name such as "
                        "utf-8, cp1252 or latin-1") from None


def display_encoding(encoding: str) -> str:
    """How messages name an encoding: "UTF-8" for any spelling of it, else as given."""
    try:
        return "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
    except LookupError:
        return encoding


def decode_text(data: bytes, where: str | os.PathLike, encoding: str = "utf-8",
                errors: str = "strict", hint: str = ENCODING_HINT) -> str:
    """Decode a file's bytes: a BOM wins, else ``encoding``.

    Raises:
        DataError: ``FILE:LINE: not valid ENCODING text (byte 0xE9 at column 7); HINT``.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom):], name
            break
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{where}:{line}: not {display_encoding(encoding)} text (byte "
                        f"0x{data[exc.start]:02x} at column {column}); {hint}") from None
    except LookupError:
        check_encoding(encoding)
        raise


def read_text(path: str | os.PathLike, encoding: str = "utf-8", errors: str = "strict",
              hint: str = ENCODING_HINT) -> str:
    """A whole text file, decoded as ``decode_text`` does.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: the bytes are not text in that encoding (``file:line``).
    """
    return decode_text(Path(path).read_bytes(), path, encoding, errors, hint)
