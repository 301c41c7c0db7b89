"""Where this package keeps what it makes once and reuses: model weights, DSPy's answer cache, the
profile store, WordNet.  A module of its own at the bottom of the layers, so the package's
`__init__`, the metrics and the models all ask one place without importing each other."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GUIDED_PROFILE_CACHE"


def cache_dir() -> Path:
    """$GUIDED_PROFILE_CACHE, else $XDG_CACHE_HOME/guided-profile, else ~/.cache/guided-profile."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "guided-profile"
