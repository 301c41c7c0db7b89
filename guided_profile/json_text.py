"""JSON from files a person may have edited: every way the text can fail to parse is a `json.JSONDecodeError`.

`json.loads` raises `RecursionError` for a document nested deeper than Python's stack allows (a few thousand
`[` in a row), which no reader expects and which would end a run in a traceback; here it is one more decode
error, reported like the others with the file and the line.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """`json.loads(text, **kwargs)`, raising only `json.JSONDecodeError` for text that is not JSON it can read."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError as exc:
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError("nested too deeply to read", doc, 0) from exc
