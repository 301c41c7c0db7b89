"""One optimization from start to end: plan and budget check, search, final scores, cost."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.optimizers.base import Optimizer
from guided_profile.optimizers.plan import CallPlan
from guided_profile.programs.adapter import ProgramAdapter
from guided_profile.programs.attempt import attempt


@dataclass
class OptimizeResult:
    """What an optimization gives: the tuned program, its plan, train and dev scores, what it cost."""

    program: dspy.Module
    plan: CallPlan
    scores: dict[str, float | None]
    usage: dict[str, Any]
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def mean_score(optimizer: Optimizer, program: dspy.Module, examples: Sequence[Example]) -> float:
    """The objective's mean over `examples`; a failed example scores 0, as in DSPy's Evaluate."""
    adapter = ProgramAdapter()
    scores = [attempt(program, optimizer.task, example, lm=optimizer.task_lm, adapter=adapter,
                      objective=optimizer.metric.objective).score for example in examples]
    return sum(scores) / len(examples)


def run_optimizer(optimizer: Optimizer, student: dspy.Module, *, trainset: Sequence[Example],
                  valset: Sequence[Example] | None = None, budget: int,
                  log: Callable[[str], None] = print) -> OptimizeResult:
    """Check the budget before any call, search, then score the result on train (and dev if the
    search did not already) and count what every part cost."""
    plan = optimizer.plan(student, trainset=trainset, valset=valset)
    log(f"{optimizer.name}: expected LM calls (upper bounds)\n{plan.describe()}")
    optimizer.check_budget(plan, budget)
    start = time.perf_counter()
    compiled = optimizer.compile(student, trainset=trainset, valset=valset)
    dev = optimizer.known_dev_score
    if dev is None:
        dev = mean_score(optimizer, compiled, valset)
    train = mean_score(optimizer, compiled, trainset)
    task_usage, prompt_usage = optimizer.task_calls.snapshot(), optimizer.prompt_calls.snapshot()
    calls = task_usage.calls + prompt_usage.calls
    usage = {"calls": calls, "model_calls": calls - task_usage.cache_hits - prompt_usage.cache_hits,
             "task": task_usage.to_dict(), "prompt": prompt_usage.to_dict(), "expected_calls": plan.total,
             "expected_parts": dict(plan.parts), "budget": budget}
    return OptimizeResult(compiled, plan, {"objective": optimizer.metric.objective, "train": train, "dev": dev},
                          usage, round(time.perf_counter() - start, 1), dict(optimizer.info))
