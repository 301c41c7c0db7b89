"""Secrets never reach a file: every text written goes through `redact` (see `guided_profile.files`).

Redaction is by shape and by value.  By shape: the password (or lone token) in a URL's user part,
`key=` / `token=` style query parameters, bearer tokens and OpenAI-style `sk-` keys.  By value: the
value of every environment variable whose name says it is a secret (`*_API_KEY`, `*_TOKEN`, ...),
wherever it appears, since an error message may quote a key in a shape no pattern foresaw.
"""

import os
import re

MASK = "***"


def _user_part(match: re.Match) -> str:
    """scheme://user:password@ keeps the user (maybe empty) and masks the password; scheme://token@ masks all."""
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}{colon}{MASK}@" if colon else f"{match.group(1)}{MASK}@"


# A URL's user part runs to the last @ before the path: a raw @, ? or # in a password included (a query
# holding an @ before any path is masked too, the safe side).
_URL_USER_PART = re.compile(r"(\b[a-zA-Z][\w+.-]*://)([^/\s]*)@")
_SHAPES = [
    (_URL_USER_PART, _user_part),
    (re.compile(r"([?&](?:api[_-]?key|key|token|access_token|password|secret)=)[^&\s\"']+", re.IGNORECASE),
     rf"\g<1>{MASK}"),
    (re.compile(r"(\bBearer\s+)[\w.~+/=-]{8,}"), rf"\g<1>{MASK}"),
    (re.compile(r"\bsk-[\w-]{8,}"), f"sk-{MASK}"),
]
_SECRET_NAMES = ("_API_KEY", "_TOKEN", "_SECRET", "PASSWORD", "API_KEY", "_KEY")
_MIN_SECRET = 6  # shorter values ("1", "true") would mask ordinary words


def has_user_part(url: str) -> bool:
    """Whether the URL `url` carries a user part (credentials): exactly what `redact` would mask in it."""
    return _URL_USER_PART.match(url) is not None


def redact(text: str) -> str:
    """`text` with every secret it holds replaced by ***."""
    for name, value in os.environ.items():
        if name.upper().endswith(_SECRET_NAMES) and len(value) >= _MIN_SECRET and value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_json(value: object) -> object:
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string in it redacted, keys included."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_json(k): redact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value
