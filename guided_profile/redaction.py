"""Passwords never reach a file: URLs are recorded with their password masked."""

import re

_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]*@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it (scheme://user:password@host) replaced by ***."""
    return _PASSWORD.sub(r"\1***@", text)
