"""The one record every task is turned into, and the split every task shares."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "dev", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
DATA_ROOT_ENV = "GUIDED_PROFILE_DATA"


def option_letters(n: int) -> list[str]:
    """The labels of `n` options, "A", "B", ...: what choice tasks show, score and store as gold."""
    return [chr(ord("A") + i) for i in range(n)]


@dataclass(frozen=True)
class Example:
    """One question for one person.

    `history` is that person's raw items (purchases, tweets, replies), oldest first.
    For choice tasks `options` holds the candidate answers and `gold` the label of the right one
    ("A".."D"); for text tasks `gold` is the reference text.  `meta` carries what is reported
    but never shown to a program (e.g. the held-out product, the true persona).
    """

    example_id: str
    user_id: str
    history: tuple[str, ...]
    query: str
    gold: str
    options: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def user_split(user_id: str, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> str:
    """Which split a user belongs to.

    Decided by a hash of (seed, user id) alone, so a user's split never depends on the order of
    the file, on which other users were filtered out, or on the Python version.
    """
    digest = hashlib.sha256(f"{seed}:{user_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "dev"
    return "test"


def split_examples(examples: Iterable[Example], split: str, seed: int = 0) -> list[Example]:
    """Examples of one split ("train", "dev", "test" or "all"), in their original order."""
    if split == "all":
        return list(examples)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or 'all'")
    return [ex for ex in examples if user_split(ex.user_id, seed) == split]


def subsample(examples: list[Example], limit: int, seed: int) -> list[Example]:
    """A seeded sample of `limit` examples, kept in their original order (all when limit is 0): the
    train / dev examples an optimizer sees."""
    if not limit or limit >= len(examples):
        return list(examples)
    keep = set(random.Random(seed).sample(range(len(examples)), limit))
    return [ex for i, ex in enumerate(examples) if i in keep]


def data_root() -> Path | None:
    """Where the real data sets live: $GUIDED_PROFILE_DATA, else ../shared/data if it exists."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env)
    for candidate in (Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def samples_dir() -> Path:
    """The small sample files committed with the project (used when no --data is given)."""
    return Path(__file__).resolve().parents[2] / "datasets"
