"""Every answer a DSPy optimizer's search was given, kept in its run folder (`answers.jsonl`), so the search
resumes on another machine.

DSPy's optimizers (GEPA, MIPROv2, COPRO) keep their state in memory (GEPA's checkpoint is a pickle, which
we never load): a rerun repeats the search, and DSPy's answer cache answers every call already made, so
only what is new is paid.  That cache lives in one machine's cache folder, though, and a search of several
hours may have to go on elsewhere (a preempted cloud worker, a fresh CI box).  So, for the search, DSPy's
cache is wrapped: every answer it stores or finds (an earlier run's) is also appended here as a JSON line
under DSPy's own cache key, and a call the cache cannot answer is looked up here.  Only plain JSON answers
are kept (DSPy 3.4 stores its lm15 results so; nothing is unpickled), and none the file would hold redacted
(one quoting something shaped like a secret): a resume would read another answer.  The Optuna search
needs none of this: its study holds every score.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy

from guided_profile.evaluation import read_records
from guided_profile.files import append_line
from guided_profile.redaction import redact

FILENAME = "answers.jsonl"


class AnswerJournal:
    """DSPy's cache (`inner`) with the answers of `path` behind it; everything else is `inner`'s."""

    def __init__(self, path: Path, inner: Any):
        self.path = Path(path)
        self.inner = inner
        self._kept = {r["key"]: r["answer"] for r in read_records(self.path, repair=True, check=_problem)}
        self._lock = threading.Lock()
        self._not_kept = 0  # answers that are not plain JSON: a new machine pays them again

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        key = self._key(request, ignored_args_for_cache_key)
        found = self.inner.get(request, ignored_args_for_cache_key)
        if found is not None:
            self._keep(key, found)  # this machine's cache had it (an earlier run): the folder keeps it too
            return found
        kept = self._kept.get(key) if key is not None else None
        if kept is None:
            return None
        # Through the cache, so the answer comes back marked and shaped as any other cache hit.
        self.inner.put(request, copy.deepcopy(kept), ignored_args_for_cache_key)
        return self.inner.get(request, ignored_args_for_cache_key)

    def put(self, request: dict[str, Any], value: Any, ignored_args_for_cache_key: list[str] | None = None,
            enable_memory_cache: bool = True) -> None:
        key = self._key(request, ignored_args_for_cache_key)
        kept = self._kept.get(key) if key is not None else None
        if kept is not None:  # a second answer to one request (two threads asked at once): the first one stays,
            value = copy.deepcopy(kept)  # in the cache as in the file, so every later read and every replay agree
        self.inner.put(request, value, ignored_args_for_cache_key, enable_memory_cache)
        self._keep(key, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _key(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None) -> str | None:
        """DSPy's cache key, or None where DSPy's own cache cannot make one (it then keeps nothing either)."""
        try:
            return self.inner.cache_key(request, ignored_args_for_cache_key)
        except Exception:  # DSPy's get and put catch the same, and go on uncached
            return None

    def _keep(self, key: str | None, value: Any) -> None:
        if key is None or key in self._kept:
            return
        try:
            line = json.dumps({"key": key, "answer": value})
        except (TypeError, ValueError):
            self._not_kept += 1  # not plain data: DSPy's cache alone keeps it
            return
        if redact(line) != line:
            return  # the file would hold it redacted, and a resume would read another answer: paid again instead
        with self._lock:
            if key not in self._kept:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                append_line(self.path, line)
                self._kept[key] = json.loads(line)["answer"]


def _problem(record: dict[str, Any]) -> str | None:
    return None if isinstance(record.get("key"), str) and "answer" in record else "not an answer (no key or answer)"


@contextlib.contextmanager
def answers_kept_in(workdir: Path | str | None) -> Iterator[None]:
    """Within the block, DSPy's cache also keeps its answers in `workdir`/answers.jsonl and reads them back
    (nothing changes without a `workdir`, or with DSPy's cache off)."""
    if workdir is None:
        yield
        return
    inner = dspy.cache
    journal = dspy.cache = AnswerJournal(Path(workdir) / FILENAME, inner)
    try:
        yield
    finally:
        dspy.cache = inner
        if journal._not_kept:
            warnings.warn(f"{journal.path}: {journal._not_kept} answers were not plain JSON and are kept only in "
                          "DSPy's cache on this machine; a resume elsewhere pays for them again", stacklevel=3)
