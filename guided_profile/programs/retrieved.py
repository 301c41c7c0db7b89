"""Retrieval as a program's first step: which history items its steps see (issue 21).

A program may carry a `Retrieval` (a retriever by name and settings, k, and which steps see the
retrieved items).  It is part of the program, not of the data: the same examples feed programs that
retrieve differently, a compiled program carries its retrieval, and an optimizer can change it per
trial.  Why an attribute and not a wrapping module: a wrapper would rename every step
(`program.digest.predict`), so saved states, compiled programs' shapes and the optimizers' step names
would all change; an attribute changes nothing for a program without retrieval.

A program that retrieves takes two more inputs, the history's raw `items` and the retriever's
`query` (`task.inputs(example, raw=True)`; `program_inputs` asks for them only when needed), keeps
the items the retriever picks, in their original order, and numbers them with the task's rule, the
`max_history_chars` cut coming after retrieval.  `steps` is the switch: `all` steps see the kept
items, or only the `digest`ion and the profile (the final step reads the history as without
retrieval), or only the `answer`ing step.  Its prediction states what was kept (`retrieval`), which
records keep.

Without a retrieval (`--retriever recent` and no `--k`: the default of tasks that declare no other,
`Task.default_retrieval`) a program reads the history exactly as before: same prompts, same records.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.programs.compiled_schema import MACHINE_SETTINGS
from guided_profile.programs.stored import store_in_use
from guided_profile.retrieval import Retriever, retriever_class
from guided_profile.retrieval._embedding_cache import FILENAME as EMBEDDINGS
from guided_profile.retrieval._ranking import check_k
from guided_profile.tasks.base import ProgramInputs, Task, numbered_history

STEPS = ("all", "digest", "answer")  # which steps see the retrieved items
RAW_INPUTS = ("items", "query")  # what `task.inputs(example, raw=True)` adds for a retrieving program
WHOLE_HISTORY = ("recent", "none")  # retrievers that may go without k: every item, as before retrieval


@dataclass(frozen=True)
class Retrieval:
    """Which history items a program's steps see, from plain settings.

    Args:
        retriever: a registered retriever's name (`guided_profile.retrieval`: recent, none, bm25, dense).
        k: how many items to keep (at least 1); None keeps every item (only for `recent` and `none`:
            today's history, cut by characters only).
        settings: the retriever's own settings, e.g. {"k1": 1.2} for bm25.
        steps: which steps see the kept items: `all`, `digest` (digestion and profile; the final step
            reads the history as without retrieval) or `answer` (the reverse).
    """

    retriever: str = "recent"
    k: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    steps: str = "all"

    def __post_init__(self) -> None:
        retriever_class(self.retriever, self.settings)  # an unknown name or setting fails here, before any work
        for name in sorted(set(self.settings) & set(MACHINE_SETTINGS)):
            raise ConfigError(f"retriever setting {name!r} is not a run setting: the embedding cache lives beside "
                              "the profile store (--store) and the encoder is the retriever's own")
        if self.k is not None:
            check_k(self.k)
        elif self.retriever not in WHOLE_HISTORY:
            raise ConfigError(f"retriever {self.retriever!r} needs k, the number of history items to keep "
                              "(--k N)")
        if self.steps not in STEPS:
            raise ConfigError(f"retrieval steps must be one of {', '.join(STEPS)}, got {self.steps!r}")
        if self.k is None:
            object.__setattr__(self, "steps", "all")  # every step reads every item: one spelling of today's history
        # the defaults too, so a record states the k1 and b a bm25 run used even when nobody gave them
        object.__setattr__(self, "settings", default_settings(self.retriever) | dict(self.settings))

    @property
    def active(self) -> bool:
        """False when the steps would read exactly today's history (every item, cut by characters only)."""
        return self.k is not None

    def to_dict(self) -> dict[str, Any]:
        """What run configs, records and compiled programs state (`from_dict` reads it back)."""
        return {"retriever": {"name": self.retriever, **self.settings}, "k": self.k, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Retrieval:
        """The retrieval `to_dict` wrote; None (a config or file made before retrieval) is today's."""
        if data is None:
            return cls()
        retriever = data.get("retriever") if isinstance(data, Mapping) else None
        if not isinstance(retriever, Mapping) or not isinstance(retriever.get("name"), str):
            raise ConfigError(f"retrieval {data!r}: expected {{\"retriever\": {{\"name\": ...}}, \"k\": ..., "
                              "\"steps\": ...}")
        settings = {key: value for key, value in retriever.items() if key != "name"}
        return cls(retriever["name"], data.get("k"), settings, data.get("steps", "all"))


class RetrievalStep:
    """A `Retrieval` bound to the task's history budget: what a program runs before its first LM step."""

    def __init__(self, retrieval: Retrieval, max_history_chars: int):
        self.retrieval = retrieval
        self.max_history_chars = max_history_chars

    def __call__(self, history: str, items: Sequence[str] | None,
                 query: str | None) -> tuple[str, str, dict[str, Any]]:
        """(the digestion's history, the final step's history, what records state about the retrieval)."""
        if items is None or query is None:
            raise ConfigError("this program retrieves history items: run it on task.inputs(example, raw=True) "
                              "(programs.retrieved.program_inputs gives the right inputs)")
        kept = _retriever(self.retrieval).select(items, query, self.retrieval.k)
        text, cut = numbered_history([items[i] for i in kept], self.max_history_chars)
        steps = self.retrieval.steps
        digest = text if steps in ("all", "digest") else history
        answer = text if steps in ("all", "answer") else history
        return digest, answer, {**self.retrieval.to_dict(), "kept": kept, "cut": cut}


class RetrievesHistory:
    """What each method's module shares: an optional retrieval step and the histories it hands the steps."""

    retrieve: RetrievalStep | None = None

    def histories(self, history: str, items: Sequence[str] | None,
                  query: str | None) -> tuple[str, str, dict[str, Any]]:
        """(digestion's history, final step's history, prediction fields): both `history` without retrieval."""
        if self.retrieve is None:
            return history, history, {}
        digest, answer, stated = self.retrieve(history, items, query)
        return digest, answer, {"retrieval": stated}


def with_retrieval(program: dspy.Module, task: Task, retrieval: Retrieval | None) -> dspy.Module:
    """`program` with `retrieval` as its first step (none when it is None or today's); returns it."""
    program.retrieve = RetrievalStep(retrieval, task.max_history_chars) if retrieval and retrieval.active else None
    return program


def retrieval_of(program: dspy.Module) -> Retrieval | None:
    """The program's retrieval, or None for one that reads the history as before retrieval."""
    step = getattr(program, "retrieve", None)
    return step.retrieval if step is not None else None


def program_inputs(program: dspy.Module, task: Task, example: Example) -> ProgramInputs:
    """The inputs `program` takes for `example`: the raw items and the query only if it retrieves."""
    return task.inputs(example, raw=retrieval_of(program) is not None)


def compiled_retrieval_field(program: dspy.Module) -> dict[str, Any]:
    """The compiled program file's top-level `"retrieval"` field, or nothing for a program without
    retrieval (so files exported before it existed, and programs without it, stay byte for byte the same).
    `Retrieval.from_dict(payload.get("retrieval"))` reads it back."""
    retrieval = retrieval_of(program)
    return {"retrieval": retrieval.to_dict()} if retrieval is not None else {}


_built: dict[tuple[str, str], Retriever] = {}
_building = threading.Lock()


def _retriever(retrieval: Retrieval) -> Retriever:
    """One retriever per (settings, embedding cache file) and process, shared by the worker threads.

    A retriever that keeps an embedding cache keeps it beside the profile store in use (a custom
    `--store` gets its own), else in the cache folder.
    """
    cls = retriever_class(retrieval.retriever, retrieval.settings)
    store = store_in_use()
    cache = {"cache_path": store.path.with_name(EMBEDDINGS)} if store and "cache_path" in _params(cls) else {}
    key = (json.dumps(retrieval.to_dict(), sort_keys=True), str(cache.get("cache_path", "")))
    with _building:
        if key not in _built:
            _built[key] = cls(**retrieval.settings, **cache)
        return _built[key]


def default_settings(name: str) -> dict[str, Any]:
    """Retriever `name`'s settings when none is given (not where a cache lives, nor a test's stand-in model),
    read from its constructor without building one (dense would load its model)."""
    return {p.name: p.default for p in inspect.signature(retriever_class(name).__init__).parameters.values()
            if p.default is not p.empty and p.name not in MACHINE_SETTINGS}


def _params(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


TODAY = Retrieval()  # what every run did before retrieval existed; an old config without the field means it
