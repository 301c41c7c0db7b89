"""The retriever interface, and the registry that maps retriever names to implementations."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from guided_profile.errors import ConfigError
from guided_profile.retrieval._ranking import check_k, top_k


class Retriever(ABC):
    """Chooses which history items a program sees for one query.

    Every retriever is built from plain settings (`get_retriever(name, **settings)`) and used through
    `select`; subclasses set `name` and implement `scores`.  `to_dict()` is what a run config or a
    compiled program records, and `get_retriever(**retriever.to_dict())` builds the same retriever.
    """

    name: ClassVar[str]

    def select(self, items: Sequence[str], query: str, k: int) -> list[int]:
        """The indices of the k items most relevant to `query`, in their original order.

        Args:
            items: the history, oldest first (`Example.history`).
            query: what the items are chosen for (`Task.retrieval_query(example)`).
            k: how many items to keep, at least 1.  A history of k items or fewer is kept whole.

        Returns:
            Increasing indices into `items`, so the kept history still reads oldest first.  Of
            equally relevant items the more recent is kept.

        Raises:
            ConfigError: `k` is not a whole number of at least 1.
        """
        k = check_k(k)
        if k >= len(items):
            return list(range(len(items)))  # nothing to choose: skip the scoring (and any embedding)
        return top_k(self.scores(items, query), k)

    @abstractmethod
    def scores(self, items: Sequence[str], query: str) -> Sequence[float]:
        """One relevance score per item; higher is more relevant."""

    def settings(self) -> dict[str, Any]:
        """The settings that change what is selected, as JSON values (not where a cache lives)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The name and settings, for a run config, a record or a compiled program."""
        return {"name": self.name, **self.settings()}


RETRIEVERS: dict[str, type[Retriever]] = {}


def register_retriever(cls: type[Retriever]) -> type[Retriever]:
    """Class decorator: make a retriever available by its `name`."""
    RETRIEVERS[cls.name] = cls
    return cls


def get_retriever(name: str, **settings: Any) -> Retriever:
    """The retriever registered as `name`, built from `settings` (e.g. `get_retriever("bm25", k1=1.2)`).

    Raises:
        ConfigError: the name is not registered, or a setting is not one the retriever takes.
    """
    return retriever_class(name, settings)(**settings)


def retriever_class(name: str, settings: Mapping[str, Any] | None = None) -> type[Retriever]:
    """The class registered as `name`, once `settings` are known to be ones it takes: a configuration
    can be checked without building the retriever (a dense one would open its cache).

    Raises:
        ConfigError: the name is not registered, or a setting is not one the retriever takes.
    """
    import guided_profile.retrieval  # noqa: F401  (registers the built-in retrievers)

    if name not in RETRIEVERS:
        raise ConfigError(f"unknown retriever {name!r}; registered retrievers: {', '.join(sorted(RETRIEVERS))}")
    cls = RETRIEVERS[name]
    accepted = takes(cls)
    unknown = sorted(set(settings or {}) - set(accepted))
    if unknown:
        raise ConfigError(f"retriever {name!r} takes no setting {', '.join(map(repr, unknown))}; "
                          f"its settings: {', '.join(accepted) or 'none'}")
    return cls


def takes(cls: type[Retriever]) -> list[str]:
    """The keyword settings a retriever's constructor accepts (not object's *args)."""
    return [p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
