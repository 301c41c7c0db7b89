"""Plans before spending: the LM calls an optimization expects, by part, before any call is made."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import dspy

from guided_profile.datasets.example import Example
from guided_profile.lm.accounting import count_calls
from guided_profile.programs.adapter import PersonalAdapter
from guided_profile.programs.retrieved import program_inputs
from guided_profile.tasks.base import Task

FINAL = "final scoring on train (task)"
CONFIRM = "confirm stage (task)"


@dataclass
class CallPlan:
    """Expected LM calls, by named part, and how many of them one trial makes."""

    parts: dict[str, int] = field(default_factory=dict)
    per_trial: int = 0
    trials: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        width = max(len(name) for name in self.parts) if self.parts else 0
        lines = [f"  {name.ljust(width)}  {calls:>6}" for name, calls in self.parts.items()]
        lines.append(f"  {'total'.ljust(width)}  {self.total:>6}")
        lines.append(f"  one trial makes at most {self.per_trial} calls; {self.trials} trials planned")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def calls_per_example(program: dspy.Module, task: Task, example: Example) -> int:
    """LM calls the program makes on one example, counted on a scripted model (no real call).

    Measured rather than derived, so answer modes (choice scoring makes one call per rotation)
    and switches are accounted for without the optimizers knowing about them.
    """
    def run(lm: dspy.BaseLM) -> None:
        with dspy.context(lm=lm, adapter=PersonalAdapter()):
            program.deepcopy()(**program_inputs(program, task, example))

    return count_calls(run)


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b) if b else 0
