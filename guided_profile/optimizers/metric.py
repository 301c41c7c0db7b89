"""The task's objective as DSPy's optimizers call it, and our examples as they take them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dspy

from guided_profile.datasets.example import Example, option_letters
from guided_profile.errors import ConfigError
from guided_profile.programs.retrieved import program_inputs
from guided_profile.tasks.base import Task


def to_dspy(task: Task, examples: Sequence[Example], program: dspy.Module | None = None) -> list[dspy.Example]:
    """Our examples as DSPy optimizers take them: the program's inputs (with the raw history items if
    `program` retrieves), the gold answer, the id."""
    out = []
    for ex in examples:
        inputs = program_inputs(program, task, ex) if program is not None else task.inputs(ex)
        out.append(dspy.Example(**inputs, answer=ex.gold, example_id=ex.example_id).with_inputs(*inputs))
    return out


class TaskMetric:
    """The task's objective as DSPy optimizers call it, with text feedback for GEPA.

    `__call__` takes DSPy's (gold, pred, trace) and GEPA's extra (pred_name, pred_trace); the score
    is `objective` of `task.score_prediction` on the original example, found by its id.  The
    objective defaults to the task's reported one; `Task.default_objective(answer_mode)` is what
    `optimize` uses (the gold option's probability in score mode: smooth, so a search on a few
    users compares candidates by more than luck).
    """

    def __init__(self, task: Task, examples: Sequence[Example] = (), objective: str | None = None):
        self.task = task
        self.objective = objective or task.objective
        self.by_id: dict[str, Example] = {}
        self.remember(examples)
        self.on_score: Callable[[float], None] | None = None  # progress hook, set by an optimizer

    def remember(self, examples: Sequence[Example]) -> None:
        """Make `examples` findable by id: DSPy hands the metric its own copies, which carry only the id."""
        self.by_id.update((ex.example_id, ex) for ex in examples)

    def example(self, gold: Any) -> Example:
        key = gold.example_id if hasattr(gold, "example_id") else gold["example_id"]
        if key not in self.by_id:
            raise KeyError(f"example {key!r} is not in the metric's examples")
        return self.by_id[key]

    def score(self, gold: Any, pred: Any) -> float:
        answer = getattr(pred, "answer", None) if pred is not None else None
        if answer is None:
            return 0.0
        metrics = self.task.score_prediction(self.example(gold), pred)
        if self.objective not in metrics:  # e.g. gold_probability of a program that answers in generate mode
            raise ConfigError(f"objective {self.objective!r}: the program's replies give no such metric "
                              f"(they give {', '.join(sorted(metrics))}); choose another --objective")
        return float(metrics[self.objective])

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                 pred_trace: Any = None) -> float:
        value = self.score(gold, pred)
        if self.on_score is not None:
            self.on_score(value)
        return value

    def feedback(self, gold: Any, pred: Any, pred_name: str | None = None) -> str:
        """What went wrong, in words a reflecting model can use: the gold answer and the reply."""
        example = self.example(gold)
        answer = (getattr(pred, "answer", None) or "").strip()
        details = self.task.score(example, answer, pred.get("profile") if pred is not None else None)
        value = self.score(gold, pred) if pred is not None and answer else 0.0
        lines = [f"Score {value:.2f} ({self.objective})."]
        if example.options:
            labelled = zip(option_letters(len(example.options)), example.options, strict=True)
            gold_text = dict(labelled).get(example.gold, "")
            lines.append(f"The right answer was {example.gold} ({gold_text}); the program replied {answer!r}"
                         f" ({details.get('outcome', 'scored')}).")
        else:
            lines.append(f"The reference answer was: {example.gold[:400]!r}; the program replied {answer[:400]!r}.")
        lines += self.task.feedback_notes(example, answer)
        if pred is not None and pred_name:
            if pred_name.startswith("digest") and pred.get("guidance"):
                lines.append(f"The guidance question was answered with: {pred.get('guidance')[:300]!r}. A better "
                             "question makes this answer bring out what predicts the right answer.")
            elif pred_name.startswith("write_profile") and pred.get("profile"):
                lines.append(f"The profile written was: {pred.get('profile')[:300]!r}.")
        return " ".join(lines)

    def gepa(self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
             pred_trace: Any = None) -> dspy.Prediction:
        score = self(gold, pred, trace)
        return dspy.Prediction(score=score, feedback=self.feedback(gold, pred, pred_name))
