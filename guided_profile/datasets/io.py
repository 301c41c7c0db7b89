"""Reading data files so that every way they can fail is a `DataError` naming the file and the line."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guided_profile import json_text
from guided_profile.errors import DataError
from guided_profile.files import irregular


def _open(path: Path):
    """The file for reading bytes; anything but a regular file is refused first, because opening a
    named pipe or a device blocks (or never ends) instead of failing."""
    path = Path(path)
    kind = irregular(path)
    if kind:
        raise DataError(path, f"is {kind}; expected a data file")
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_text(path: Path) -> str:
    """The whole file as text (gzip if it ends in .gz; a UTF-8 byte-order mark is dropped)."""
    try:
        with _open(path) as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(path, f"cannot read file: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(path, f"line {line}: not UTF-8 text (invalid byte at offset {exc.start})") from exc


def read_json(path: Path, unique_keys: bool = False) -> Any:
    """One whole JSON document.  With `unique_keys`, an object that names a key twice is refused with
    the key named: a parser keeps the last value silently, and for a file keyed by id that loses a record."""
    text = read_text(path)

    def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise DataError(path, f"key {key!r} appears twice in one object; keep one")
            seen[key] = value
        return seen

    try:
        return json_text.loads(text, object_pairs_hook=refuse_duplicates if unique_keys else None)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) for every line, streamed: review dumps can be gigabytes."""
    try:
        with _open(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise DataError(path, f"line {lineno}: not UTF-8 text (invalid byte at column {exc.start + 1})"
                                    ) from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(path, f"cannot read file: {getattr(exc, 'strerror', None) or exc}") from exc
