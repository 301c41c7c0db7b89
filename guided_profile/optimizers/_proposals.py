"""How the Optuna search asks the prompt model for new guidance questions: from failures.

Like GEPA's reflection, a proposal is grounded in what goes wrong: the prompt model sees train users
the hand-written program answers badly, with the question asked, the right answer, the program's
answer and the guidance answer it worked from, so a new question can aim at what the old one missed
instead of rephrasing it.  Proposals must still be one question (`_guidance_shape`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.programs.answer import lettered

if TYPE_CHECKING:
    from guided_profile.optimizers.base import Optimizer


class ProposeGuidance(dspy.Signature):
    """You design the guidance question of a personalization system. Before the system writes a profile of a person,
    it asks one question about the person's history and uses the answer to write the profile. Study the examples
    (each a history, what was asked, the right answer, and, where shown, what the system answered and the answer
    its current guidance question got) and write one new guidance question whose answer would bring out what
    predicts the right answers. Write a single question ending with '?' (or a single request ending with ':'), at
    most 40 words, different from the current one."""

    task: str = dspy.InputField(desc="what the system must predict")
    current_question: str = dspy.InputField(desc="the guidance question used now")
    examples: str = dspy.InputField(desc="histories, what was asked about each, the right answer, what went wrong")
    guidance_question: str = dspy.OutputField(desc="one new guidance question")


@dataclass(frozen=True)
class Shown:
    """A train example as the prompt model sees it, with the current program's answers when known."""

    example: Example
    reply: str | None = None
    guidance: str | None = None
    score: float | None = None


def failures_first(optimizer: Optimizer, program: dspy.Module, examples: list[Example]) -> list[Shown]:
    """`examples` run through `program`, worst first: only the wrong answers when there are any (for text
    tasks, every example, lowest objective first), so each proposal's batch holds failures the current
    question does not help with."""
    shown = []
    for tried, _ in optimizer.attempts(program, examples):
        right = (tried.metrics or {}).get("accuracy", tried.score)
        shown.append((right, tried.score, Shown(tried.example, tried.reply, tried.kept.get("guidance"), tried.score)))
    ranked = sorted(shown, key=lambda item: (item[0], item[1]))
    return [s for right, _, s in ranked if right < 1] or [s for _, _, s in ranked]


def propose(task: Any, current: str, batch: list[Shown], lm: dspy.BaseLM) -> str:
    """One proposal from the prompt model (its text as written); a failed call is a refused proposal."""
    try:
        with dspy.context(lm=lm):
            return dspy.Predict(ProposeGuidance)(task=task.description, current_question=current,
                                                 examples=example_text(task, batch)).guidance_question
    except Exception as exc:  # an unusable reply costs one call, not the run
        return f"(failed: {type(exc).__name__})"


def example_text(task: Any, shown: list[Shown], max_history_chars: int = 800) -> str:
    blocks = []
    for i, s in enumerate(shown, 1):
        ex = s.example
        inputs = task.inputs(ex)
        history = inputs["history"][-max_history_chars:]
        asked = inputs["question"] + (f"\n{lettered(ex.options)}" if ex.options else "")
        block = f"Example {i}\nHistory:\n{history}\nAsked: {asked}\nRight answer: {ex.gold[:300]}"
        if s.reply is not None:
            block += f"\nThe system answered: {s.reply[:300]} (score {s.score:.2f})"
        if s.guidance:
            block += f"\nIts guidance answer was: {s.guidance[:300]}"
        blocks.append(block)
    return "\n\n".join(blocks)
