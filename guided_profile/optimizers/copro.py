"""`copro`: DSPy's COPRO behind our interface (our metric, the prompt model for proposals).  Of its
scored candidates, the best one whose guidance question is one question (or request) is returned.

A rerun of the same command is cheap: it replays the search, and DSPy's answer cache (on unless
--no-cache), or on another machine the run folder's answers.jsonl (`_answer_journal.py`), answers every
program and proposal call already made, so only the part not yet paid for reaches the model.
"""

from __future__ import annotations

import threading

import dspy
from dspy.teleprompt import COPRO

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.optimizers._dspy_logs import quiet_dspy_logs
from guided_profile.optimizers._guidance_shape import digest_name, question_shaped
from guided_profile.optimizers.base import Optimizer, register_optimizer
from guided_profile.optimizers.metric import TaskMetric, to_dspy
from guided_profile.optimizers.plan import CallPlan


@register_optimizer
class CoproOptimizer(Optimizer):
    """COPRO: breadth proposals per step, each scored on dev, refined for depth rounds."""

    name = "copro"
    summary = ("DSPy COPRO: the prompt model proposes `breadth` instructions per step, each is scored on the dev set, "
               "and `depth` rounds refine the best ones")
    defaults = {"breadth": 3, "depth": 1, "init_temperature": 1.4}

    def _candidates(self, steps: int) -> int:
        """Candidates COPRO scores: depth k re-scores all (k + 1) * breadth candidates of each step."""
        b, d = self.settings["breadth"], self.settings["depth"]
        return steps * b * d * (d + 1) // 2

    def _plan(self, program: dspy.Module, trainset: list[Example], valset: list[Example], c: int) -> CallPlan:
        n_dev = len(valset)
        s = self.settings
        b, d, p = s["breadth"], s["depth"], len(program.predictors())
        if b < 2:
            raise ConfigError("copro: breadth must be at least 2")
        candidates = self._candidates(p)
        plan = CallPlan(trials=candidates)
        plan.parts["first proposals (prompt)"] = p * (b - 1)
        if d > 1:
            plan.parts["refined proposals (prompt)"] = (d - 1) * p * b
        plan.parts["candidates on dev (task)"] = candidates * n_dev * c
        plan.per_trial = n_dev * c
        plan.notes.append("COPRO scores candidates on the dev set only (it proposes without examples)")
        return plan

    def _search(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
                metric: TaskMetric) -> dspy.Module:
        quiet_dspy_logs()
        s = self.settings
        n = len(valset)
        state = {"count": 0, "sum": 0.0, "trial": 0}
        total = self._candidates(len(program.predictors()))

        lock = threading.Lock()  # the dev examples of one candidate are scored in parallel threads

        def on_score(value: float) -> None:  # COPRO scores each candidate on all of the dev set in turn
            with lock:
                state["count"] += 1
                state["sum"] += value
                if state["count"] == n:
                    state["trial"] += 1
                    self.report(state["trial"], total, state["sum"] / n)
                    state["count"], state["sum"] = 0, 0.0

        metric.on_score = on_score
        try:
            quiet = self.prompt_lm.copy()  # COPRO prints the prompt model's last call after every candidate
            quiet.inspect_history = lambda *args, **kwargs: None
            optimizer = COPRO(prompt_model=quiet, metric=metric, breadth=s["breadth"], depth=s["depth"],
                              init_temperature=s["init_temperature"])
            compiled = optimizer.compile(program, trainset=to_dspy(self.task, valset, program),
                                         eval_kwargs={"num_threads": self.parallel, "display_progress": False})
        finally:
            metric.on_score = None
        candidates = getattr(compiled, "candidate_programs", [])
        self.info["candidates"] = [{"instruction": c["instruction"], "dev_score": c["score"] / 100} for c in candidates]
        name = digest_name(program)
        if name is not None and candidates:
            start = dict(program.named_predictors())[name].signature.instructions

            def acceptable(text: str) -> bool:  # the task's own guidance question may be a request ending in '.'
                return text == start or question_shaped(text)

            shaped = [c for c in candidates
                      if acceptable(dict(c["program"].named_predictors())[name].signature.instructions)]
            self.info["dropped_guidance_question_candidates"] = len(candidates) - len(shaped)
            candidates = shaped
            compiled = shaped[0]["program"] if shaped else program  # none usable: the starting program
        if candidates:
            self.known_dev_score = candidates[0]["score"] / 100  # DSPy's Evaluate scores in percent
            self.ranked = [c["program"] for c in candidates]  # COPRO sorts them best first
        for attr in ("candidate_programs", "total_calls"):
            if hasattr(compiled, attr):
                delattr(compiled, attr)
        return compiled
