"""The two rules every retriever shares: what k may be, and which k of the scored items are kept."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from guided_profile.errors import ConfigError


def check_k(k: object) -> int:
    """k as an int, or a ConfigError: keeping no item would prompt the model with an empty history."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"k, the number of history items to retrieve, must be a whole number of at least 1, "
                          f"got {k!r}")
    return int(k)


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """The indices of the k highest scores, in increasing order (the history's own order).

    Of equal scores the later index wins: histories are oldest first, so a tie goes to the more
    recent item, and a query that matches no item keeps exactly what `recent` keeps.
    """
    ranked = sorted(range(len(scores)), key=lambda i: (scores[i], i), reverse=True)
    return sorted(ranked[:k])
