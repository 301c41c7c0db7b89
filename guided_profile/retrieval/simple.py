"""The two retrievers that read no text: `recent` (today's behaviour) and `none` (the whole history)."""

from __future__ import annotations

from collections.abc import Sequence

from guided_profile.retrieval._ranking import check_k
from guided_profile.retrieval.base import Retriever, register_retriever


@register_retriever
class RecentRetriever(Retriever):
    """The last k items: what the programs saw before retrieval existed (before the character budget's cut)."""

    name = "recent"

    def scores(self, items: Sequence[str], query: str) -> list[float]:
        return [float(i) for i in range(len(items))]  # newer is more relevant


@register_retriever
class NoRetrieval(Retriever):
    """The whole history, whatever k: the reference every retriever is measured against."""

    name = "none"

    def select(self, items: Sequence[str], query: str, k: int) -> list[int]:
        check_k(k)  # one rule for k everywhere, so a config that is wrong for one retriever is wrong for all
        return list(range(len(items)))

    def scores(self, items: Sequence[str], query: str) -> list[float]:
        return [0.0] * len(items)
