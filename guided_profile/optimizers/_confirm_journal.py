"""The confirm stage's scores, kept in the run folder (`confirm.jsonl`) as each is paid for.

The stage scores the hand-written program and three finalists on 40+ users: about an hour on a CPU.
DSPy's answer cache lets a rerun on the same machine skip finished calls, but the cache stays on that
machine, and a run folder may be resumed on another one (a cloud worker, a fresh CI box).  So each
(configuration, user) score is written here as it arrives, one JSON line, and a rerun pays only for
the pairs not yet kept.  A line is reused only under the same model, task, objective and example
content: another experiment sent to the same folder never reads it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.evaluation import read_records
from guided_profile.files import append_line
from guided_profile.tasks.base import Task

FILENAME = "confirm.jsonl"
FIELDS = frozenset({"context", "configuration", "example", "score"})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _problem(record: dict[str, Any]) -> str | None:
    missing = FIELDS - record.keys()
    if missing:
        return f"not a confirm score (no {', '.join(sorted(missing))})"
    return None if isinstance(record["score"], int | float) else "not a confirm score (its score is not a number)"


class ConfirmJournal:
    """(configuration, example) -> (objective score, every metric), read from and appended to `workdir`'s
    `confirm.jsonl`; in memory only without a `workdir`.  Safe to `keep` from several threads."""

    def __init__(self, workdir: Path | str | None, *, task: Task, lm: dspy.BaseLM, objective: str):
        self.path = Path(workdir) / FILENAME if workdir is not None else None
        self.task = task
        self.context = _digest({"task": task.name, "objective": objective, "model": lm.model,
                                "decoding": {k: lm.kwargs.get(k) for k in ("temperature", "max_tokens")},
                                "step_max_tokens": task.step_max_tokens()})
        self._kept: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        for record in read_records(self.path, repair=True, check=_problem) if self.path is not None else []:
            if record.get("context") == self.context:
                self._kept[(record["configuration"], record["example"])] = (record["score"], record.get("metrics"))

    def get(self, configuration: str, example: Example) -> tuple[float, dict[str, Any] | None] | None:
        return self._kept.get((_digest(configuration), self._example_key(example)))

    def keep(self, configuration: str, example: Example, score: float, metrics: dict[str, Any] | None) -> None:
        key = (_digest(configuration), self._example_key(example))
        with self._lock:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                append_line(self.path, json.dumps({"context": self.context, "configuration": key[0],
                                                   "example": key[1], "example_id": example.example_id,
                                                   "score": score, "metrics": metrics}))
            self._kept[key] = (score, metrics)

    def _example_key(self, example: Example) -> str:
        return _digest({"id": example.example_id, **self.task.as_read(example)})
