"""One optimization from start to end: plan and budget check, search, final scores, cost."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.metrics.stats import user_means
from guided_profile.optimizers._ledger import CostLedger
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
    return mean_metrics(optimizer, program, examples, [optimizer.metric.objective])[optimizer.metric.objective]


def mean_metrics(optimizer: Optimizer, program: dspy.Module, examples: Sequence[Example],
                 names: Sequence[str]) -> dict[str, float]:
    """Each named metric's mean over `examples`, from one run of each; a failed example scores 0."""
    adapter = ProgramAdapter()
    runs = [attempt(program, optimizer.task, example, lm=optimizer.task_lm, adapter=adapter,
                    objective=optimizer.metric.objective).metrics for example in examples]
    return _means(runs, names)


def _means(runs: Sequence[dict[str, Any] | None], names: Sequence[str],
           users: Sequence[str] | None = None) -> dict[str, float]:
    """Each metric's mean over `runs` (a failed one scores 0); with `users`, over user means, as the confirm
    stage averages (a dialogue persona's turns count once)."""
    means = {}
    for name in names:
        values = [float((m or {}).get(name, 0.0)) for m in runs]
        values = user_means(values, users) if users is not None else values
        means[name] = math.fsum(values) / len(values)
    return means


def final_scores(optimizer: Optimizer, program: dspy.Module, trainset: list[Example],
                 valset: list[Example]) -> dict[str, Any]:
    """The exported program's objective on train and dev, and the task's reported metric beside it when the
    objective is another one (a choice task that maximises gold_probability still reports accuracy).

    With a confirm stage, dev is the exported program's score on the confirm users, taken from the stage's
    runs: the search's own dev score is the best of many on its part of the users, and may belong to a
    candidate that was not exported.
    """
    objective, reported = optimizer.metric.objective, optimizer.task.objective
    names = list(dict.fromkeys((objective, reported)))
    train = mean_metrics(optimizer, program, trainset, names)
    stage = optimizer.info.get("confirm")
    if stage:
        by_id = {ex.example_id: ex for ex in valset}
        confirm = [by_id[i] for i in stage["example_ids"]]
        dev = _means(optimizer.confirm_metrics(program, confirm), names, users=[ex.user_id for ex in confirm])
        dev_on = f"the {stage['n']} confirm users"
    elif optimizer.known_dev_score is not None:
        dev = {name: optimizer.known_dev_score if name == objective else None for name in names}
        dev_on = f"the {len(valset)} dev users (the search's own score)"
    else:
        dev, dev_on = mean_metrics(optimizer, program, valset, names), f"the {len(valset)} dev users"
    scores: dict[str, Any] = {"objective": objective, "train": train[objective], "dev": dev[objective],
                              "dev_on": dev_on}
    if reported != objective:
        scores[reported] = {"train": train[reported], "dev": dev[reported]}
    return scores


def run_optimizer(optimizer: Optimizer, student: dspy.Module, *, trainset: Sequence[Example],
                  valset: Sequence[Example] | None = None, budget: int,
                  log: Callable[[str], None] = print) -> OptimizeResult:
    """Check the budget before any call, search, then score the result on train (and dev if the
    search did not already) and count what every part cost."""
    plan = optimizer.plan(student, trainset=trainset, valset=valset)
    log(f"{optimizer.name}: expected LM calls (upper bounds)\n{plan.describe()}")
    optimizer.check_budget(plan, budget)
    with CostLedger(optimizer.workdir, [optimizer.task_calls, optimizer.prompt_calls]) as ledger:
        compiled = optimizer.compile(student, trainset=trainset, valset=valset)
        scores = final_scores(optimizer, compiled, list(trainset), list(valset or []))
    session = ledger.session()  # this session's calls and seconds, as cost.json states them
    usage = {"calls": session["calls"], "model_calls": session["model_calls"],
             "task": optimizer.task_calls.snapshot().to_dict(), "prompt": optimizer.prompt_calls.snapshot().to_dict(),
             "expected_calls": plan.total, "expected_parts": dict(plan.parts), "budget": budget,
             "all_sessions": ledger.totals()}
    return OptimizeResult(compiled, plan, scores, usage, session["seconds"], dict(optimizer.info))
