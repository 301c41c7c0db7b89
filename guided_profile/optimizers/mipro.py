"""`mipro`: DSPy's MIPROv2 behind our interface, instructions only (no demos, dev examples in
`parallel` threads, our metric, the prompt model for proposals).  Malformed digest candidates are
dropped from its pool before the Optuna trials, so a rewritten guidance question stays one question.

A rerun of the same command is cheap: it replays the search, and DSPy's answer cache (on unless
--no-cache), or on another machine the run folder's answers.jsonl (`_answer_journal.py`), answers every
program and proposal call already made, so only the part not yet paid for reaches the model.
"""

from __future__ import annotations

import dspy

from guided_profile._dspy_internals import HookedMIPROv2
from guided_profile.datasets.example import Example
from guided_profile.optimizers._dspy_logs import quiet_dspy_logs
from guided_profile.optimizers._guidance_shape import as_guidance_question
from guided_profile.optimizers.base import Optimizer, register_optimizer
from guided_profile.optimizers.metric import TaskMetric, to_dspy
from guided_profile.optimizers.plan import CallPlan, ceil_div


@register_optimizer
class MiproOptimizer(Optimizer):
    """MIPROv2 over the instructions only: DSPy's data- and program-aware proposals, chosen by TPE on dev."""

    name = "mipro"
    summary = ("DSPy MIPROv2, instructions only: the prompt model proposes candidates per step from the data and "
               "program, Optuna's TPE picks the combination over the dev set")
    defaults = {"num_candidates": 3, "num_trials": 6, "minibatch_size": 25, "minibatch_full_eval_steps": 5,
                "init_temperature": 1.0, "view_data_batch_size": 10}

    def _minibatch(self, n_dev: int) -> bool:
        return n_dev > self.settings["minibatch_size"]

    def _keep_question_shaped(self, program: dspy.Module, candidates: dict[int, list[str]]) -> dict[int, list[str]]:
        """Drop digest candidates that are not one question (index 0, the hand-written guidance question, stays)."""
        names = [name for name, _ in program.named_predictors()]
        if "digest" in names:
            i = names.index("digest")
            kept: list[str] = []
            for text in candidates[i]:
                text = as_guidance_question(text) if kept else text
                if text is not None and text not in kept:
                    kept.append(text)
            self.info["dropped_guidance_question_candidates"] = len(candidates[i]) - len(kept)
            candidates[i] = kept
        self.info["candidates"] = {names[i]: list(c) for i, c in candidates.items()}
        return candidates

    def _plan(self, program: dspy.Module, trainset: list[Example], valset: list[Example], c: int) -> CallPlan:
        n_train, n_dev = len(trainset), len(valset)
        s = self.settings
        k, t, p = s["num_candidates"], s["num_trials"], len(program.predictors())
        b = s["view_data_batch_size"]
        summary = 2 + min(9, max(0, ceil_div(n_train, b) - 1))
        plan = CallPlan(trials=t)
        plan.parts["bootstrap traces (task)"] = max(0, k - 1) * n_train * c  # k - 1 sets: none is labels-only
        plan.parts["data summary (prompt)"] = summary
        plan.parts["proposals (prompt)"] = p * k * 3  # describe program, describe step, write instruction
        if self._minibatch(n_dev):
            mb, steps = s["minibatch_size"], s["minibatch_full_eval_steps"]
            fulls = t // steps + 1 + (1 if t % steps else 0)
            plan.parts["default program on dev (task)"] = n_dev * c
            plan.parts["trials on minibatches (task)"] = t * mb * c
            plan.parts["full dev evaluations (task)"] = fulls * n_dev * c
            plan.per_trial = mb * c
        else:
            plan.parts["default program on dev (task)"] = n_dev * c
            plan.parts["trials on dev (task)"] = t * n_dev * c
            plan.per_trial = n_dev * c
        plan.notes.append("bootstrapping stops early once it has its traces; repeated prompts are DSPy cache hits")
        return plan

    def _search(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
                metric: TaskMetric) -> dspy.Module:
        quiet_dspy_logs()
        s = self.settings
        optimizer = HookedMIPROv2(filter_candidates=self._keep_question_shaped, on_trial=self.report, metric=metric,
                                  prompt_model=self.prompt_lm, task_model=self.task_lm, max_bootstrapped_demos=0,
                                  max_labeled_demos=0, auto=None, num_candidates=s["num_candidates"],
                                  num_threads=self.parallel, seed=self.seed, init_temperature=s["init_temperature"],
                                  verbose=False, track_stats=True)
        compiled = optimizer.compile(program, trainset=to_dspy(self.task, trainset, program),
                                     valset=to_dspy(self.task, valset, program), num_trials=s["num_trials"],
                                     minibatch=self._minibatch(len(valset)),
                                     minibatch_size=min(s["minibatch_size"], len(valset)),
                                     minibatch_full_eval_steps=s["minibatch_full_eval_steps"],
                                     view_data_batch_size=s["view_data_batch_size"])
        score = getattr(compiled, "score", None)  # the full dev score of the returned program, in percent
        fully_scored = getattr(compiled, "candidate_programs", [])  # those scored on all of dev, best first
        self.ranked = [compiled, *(c["program"] for c in fully_scored if c["program"] is not compiled)]
        self.known_dev_score = None if score is None else float(score) / 100
        for attr in ("trial_logs", "score", "prompt_model_total_calls", "total_calls", "mb_candidate_programs",
                     "candidate_programs"):
            if hasattr(compiled, attr):
                delattr(compiled, attr)
        return compiled
