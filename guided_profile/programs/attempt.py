"""One program on one example, and the one rule for which errors stop everything.

Run folders (`evaluation.evaluate`), an optimization's final scores (`optimizers/runner.py`) and the
Optuna search's dev scores all run a program through `attempt`, so they agree on what a failure is:

* an error of the set-up (`GuidedProfileError`: a broken or locked profile store, a configuration,
  a metric that lacks its data) is the same for every example: it stops everything, said once;
* anything else raised while the program runs or its reply is scored (a failed or refused LM call,
  a timeout, a reply DSPy cannot parse) is this example's failure: a run records it with its error
  and retries it on resume, an optimizer's mean scores it 0 (as DSPy's Evaluate does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dspy

from guided_profile.datasets.example import Example
from guided_profile.errors import GuidedProfileError
from guided_profile.lm.accounting import Usage, UsageMeter
from guided_profile.lm.transport import unreachable
from guided_profile.programs.retrieved import RAW_INPUTS, program_inputs
from guided_profile.programs.stored import using_store
from guided_profile.store import ProfileStore
from guided_profile.tasks.base import ProgramInputs, Task

STOPS_EVERYTHING = (GuidedProfileError,)
KEPT_FIELDS = ("guidance", "profile", "choice_probs", "answer_path", "rotations_without_letter", "retrieval")

T = TypeVar("T")


@dataclass
class Attempt:
    """What one program did on one example: its reply and metrics, or its error, and what it cost.

    Args:
        example: the example run.
        inputs: the program's keyword arguments, and whether the history was cut.
        objective: the name of the task's objective among `metrics`.
        seconds: the program's wall time (scoring excluded).
        usage: the LM calls and tokens the program made, with `store_hits` counted in.
        steps: each LM call's own usage, in order.
        error: `"Type: message"` of this example's failure, else None.
        reply: the program's answer (None on failure).
        metrics: `task.score` of the reply (None on failure).
        kept: the prediction's other fields that records keep (guidance, profile, choice scoring's details,
            and a retrieving program's `retrieval`: retriever, k, steps, the kept items' indices).
        unreachable: the error says the model's server was never reached (`lm.transport.unreachable`).
    """

    example: Example
    inputs: ProgramInputs
    objective: str
    seconds: float
    usage: Usage
    steps: list[dict[str, Any]]
    error: str | None = None
    reply: str | None = None
    metrics: dict[str, Any] | None = None
    kept: dict[str, Any] = field(default_factory=dict)
    unreachable: bool = False

    @property
    def score(self) -> float:
        """The objective's value; a failed example scores 0."""
        return 0.0 if self.metrics is None else float(self.metrics[self.objective])

    def record(self) -> dict[str, Any]:
        """The attempt as a run folder's record (`records.jsonl`): this key order and these names are its format."""
        ex = self.example
        record: dict[str, Any] = {"example_id": ex.example_id, "user_id": ex.user_id,
                                  "history_cut": self.inputs.history_cut, "inputs": recorded_inputs(self.inputs),
                                  "gold": ex.gold,
                                  "seconds": self.seconds, "usage": self.usage.to_dict(), "steps": self.steps,
                                  "error": self.error}
        if self.metrics is not None:
            record.update(self.kept)
            record["reply"] = self.reply
            record["metrics"] = self.metrics
        return record


def recorded_inputs(inputs: ProgramInputs) -> dict[str, Any]:
    """The inputs as records keep them: without a retrieving program's raw `items` and `query` (the example's
    own history and the task's query; the record's `retrieval` says which items were kept), so records stay
    small and compare on resume with `task.inputs(example)` whatever the program retrieved."""
    return {key: value for key, value in inputs.items() if key not in RAW_INPUTS}


def attempt(program: dspy.Module, task: Task, example: Example, *, lm: dspy.BaseLM, adapter: dspy.Adapter,
            store: ProfileStore | None = None, objective: str | None = None) -> Attempt:
    """Run `program` on `example` with `lm` and `adapter` (and the profile store, if given), and score it;
    `score` is `objective`'s value (default the task's reported objective)."""
    inputs = program_inputs(program, task, example)
    start = time.perf_counter()
    with UsageMeter(lm) as meter, dspy.context(lm=lm, adapter=adapter), using_store(store, example.user_id) as use:
        prediction, error = _guarded(lambda: program(**inputs))
    seconds = round(time.perf_counter() - start, 3)
    done = Attempt(example, inputs, objective or task.objective, seconds, meter.usage, meter.steps, _describe(error),
                   unreachable=unreachable(error))
    done.usage.store_hits = len(use.hits) if use is not None else 0
    if prediction is not None:
        done.metrics, error = _guarded(lambda: task.score_prediction(example, prediction))
        done.error = _describe(error)
    if done.metrics is not None:
        done.reply = prediction.answer
        done.kept = {key: prediction.get(key) for key in KEPT_FIELDS if key in prediction}
    return done


def _guarded(call: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """`call()`'s value, or None and this example's error; a set-up error is raised (see the module's rule)."""
    try:
        return call(), None
    except STOPS_EVERYTHING:
        raise  # the set-up is broken for every example alike: stop and say so once
    except Exception as exc:  # one failing call must not end the run
        return None, exc


def _describe(error: Exception | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"
