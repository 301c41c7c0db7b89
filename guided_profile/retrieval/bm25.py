"""BM25 over one person's history, scored by the `bm25s` library (Lucene's BM25 variant).

A maintained library rather than a hand-written scorer, so our numbers are the ones a LaMP user gets
from the usual tools.  Each history is its own corpus: the idf says which words are rare *for this
person*.  Words are lowercased, English stop words dropped, no stemming (`bm25s.tokenize`'s defaults).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from types import ModuleType

from guided_profile.errors import ConfigError
from guided_profile.retrieval.base import Retriever, register_retriever

STOPWORDS = "en"


@functools.cache
def _bm25s() -> ModuleType:
    """bm25s, imported on first use, with its logger quieted once: bm25s sets it to DEBUG on import, so once
    anything gives the root logger a handler, every index built (one per example) would print a line."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@register_retriever
class BM25Retriever(Retriever):
    """The k items BM25 scores highest against the query.

    Args:
        k1: term-frequency saturation (> 0); 1.5 is bm25s's and Lucene's default.
        b: length normalisation, from 0 (none) to 1 (full); 0.75 as in Lucene.
    """

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        if isinstance(k1, bool) or not isinstance(k1, int | float) or k1 <= 0:
            raise ConfigError(f"bm25 setting k1 must be a number above 0, got {k1!r}")
        if isinstance(b, bool) or not isinstance(b, int | float) or not 0 <= b <= 1:
            raise ConfigError(f"bm25 setting b must be a number from 0 to 1, got {b!r}")
        self.k1, self.b = float(k1), float(b)

    def settings(self) -> dict[str, float]:
        return {"k1": self.k1, "b": self.b}

    def scores(self, items: Sequence[str], query: str) -> list[float]:
        bm25s = _bm25s()
        corpus = bm25s.tokenize(list(items), stopwords=STOPWORDS, show_progress=False)
        terms = bm25s.tokenize([query], stopwords=STOPWORDS, return_ids=False, show_progress=False)[0]
        if not corpus.vocab or not terms:
            return [0.0] * len(items)  # bm25s cannot index or ask with no word at all; every item ties
        model = bm25s.BM25(k1=self.k1, b=self.b)
        model.index(corpus, show_progress=False)
        return [float(s) for s in model.get_scores(terms)]
