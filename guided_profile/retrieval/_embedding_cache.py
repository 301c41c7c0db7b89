"""A persistent cache of text embeddings, so a history is embedded once across runs, methods and trials.

One SQLite file of its own (default `embeddings.sqlite` beside the profile store's default
`profiles.sqlite`, in the cache folder), in WAL mode like the store, so several processes can share
it.  A row is keyed by the sha256 of the model name and the text: the same tweet in two people's
histories, or in two runs, is embedded once.  Vectors are raw little-endian float32 bytes, never
pickled: reading the cache can never run code.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from guided_profile.paths import cache_dir
from guided_profile.store import SQLiteFile

FILENAME = "embeddings.sqlite"
VECTOR_DTYPE = np.dtype("<f4")
_BATCH = 500  # keys per SELECT: well under SQLite's limit on bound parameters

SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,        -- sha256 of (model, text)
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,        -- dim float32 values, little-endian
    created REAL NOT NULL
);
"""


def default_path() -> Path:
    return cache_dir() / FILENAME


def embedding_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x1f{text}".encode()).hexdigest()


class EmbeddingCache(SQLiteFile):
    """Vectors by (model, text) in the SQLite file at `path` (default: `default_path()`)."""

    schema = SCHEMA
    label = "embedding cache"
    unusable_hint = "delete it (it only saves time: every vector is computed again)"
    failing_hint = "delete it to start afresh"

    def __init__(self, path: str | Path | None = None, timeout: float = 30.0):
        super().__init__(path if path is not None else default_path(), timeout)

    def get(self, model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vector of each text that has one (texts without are left out)."""
        by_key = {embedding_key(model, text): text for text in texts}
        keys = list(by_key)
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _BATCH):
            batch = keys[start:start + _BATCH]
            rows = self._run(f"SELECT key, vector FROM embeddings WHERE key IN ({','.join('?' * len(batch))})",
                             batch)
            found.update({by_key[key]: np.frombuffer(blob, dtype=VECTOR_DTYPE) for key, blob in rows})
        return found

    def put(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Keep one vector per text (rows of `vectors`, in the order of `texts`)."""
        now = time.time()
        rows = [(embedding_key(model, text), model, len(vector), np.asarray(vector, dtype=VECTOR_DTYPE).tobytes(),
                 now) for text, vector in zip(texts, vectors, strict=True)]
        self._run("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows, many=True)

    def count(self) -> int:
        return self._run("SELECT COUNT(*) FROM embeddings")[0][0]
