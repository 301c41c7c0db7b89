"""Writing the files a run keeps: whole or not at all, and with no secret in them.

A file rewritten in place (a run's config.json, summary.json) that a kill or a full disk cuts short
breaks every later resume, so whole files are written to a temporary file beside the target and
renamed over it (a rename within a folder is atomic).  Appended lines (records.jsonl) are flushed
and synced one by one, so a kill loses at most the line being written, which the reader skips.
Every text passes through `redact` first: an error message or a command line may quote a URL with
a password in it, and nothing that reaches a file may carry one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from guided_profile.errors import OutputError
from guided_profile.redaction import redact


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (redacted), atomically."""
    path = Path(path)
    try:
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(redact(text))
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def write_json(path: Path, data: Any, **dumps: Any) -> None:
    """`write_text` of `json.dumps(data, **dumps)` (indent 2 unless told otherwise)."""
    write_text(path, json.dumps(data, **{"indent": 2, **dumps}))


def append_line(path: Path, text: str) -> None:
    """Append `text` (redacted) as one line and sync it, so a finished record survives a kill."""
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(redact(text).replace("\n", " ") + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputError(f"{path}: cannot append: {exc.strerror or exc}") from exc
