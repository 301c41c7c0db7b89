"""`gepa`: DSPy's GEPA behind our interface (dev examples in `parallel` threads, our metric with text
feedback, the prompt model for reflections).  The digest step gets its own instruction proposer told to write one
question; a draft that still is not question-shaped keeps the current guidance question.

A rerun of the same command is cheap: it replays the search, and DSPy's answer cache (on unless
--no-cache), or on another machine the run folder's answers.jsonl (`_answer_journal.py`), answers every
program and proposal call already made, so only the part not yet paid for reaches the model.
"""

from __future__ import annotations

import logging
from typing import Any

import dspy
from dspy.teleprompt import GEPA
from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.optimizers._dspy_logs import quiet_dspy_logs
from guided_profile.optimizers._guidance_shape import as_guidance_question
from guided_profile.optimizers.base import Optimizer, register_optimizer
from guided_profile.optimizers.metric import TaskMetric, to_dspy
from guided_profile.optimizers.plan import CallPlan, ceil_div
from guided_profile.programs.adapter import LenientChatAdapter

logger = logging.getLogger(__name__)

GUIDANCE_RULES = ("This instruction is the guidance question: the assistant answers it about one person's history "
                  "before a profile of that person is written. Write exactly one question ending with '?' (or one "
                  "request ending with ':'), at most 40 words, asking for what in the history best predicts the "
                  "task's answer. Do not answer it and do not add anything else.")


class GuidanceProposer:
    """GEPA's own InstructionProposer, with the guidance rules for the digest step.

    Each component is proposed separately so the digest step alone is told to write a question.
    A failed or malformed proposal is left out of the answer: GEPA then skips the iteration instead
    of scoring an unchanged copy of the program (its metric calls would be spent for nothing), and a
    small reflection model cannot end the run.
    """

    def __init__(self, task_description: str):
        adapter = LenientChatAdapter()
        self.digest = InstructionProposer(adapter=adapter, max_chars=None,
                                          additional_instructions=f"{GUIDANCE_RULES} The task: {task_description}.")
        self.other = InstructionProposer(adapter=adapter)
        self.kept: list[str] = []  # components whose proposal was refused, for the record

    def __call__(self, candidate: dict[str, str], reflective_dataset: Any,
                 components_to_update: list[str]) -> dict[str, str]:
        results = {}
        for name in components_to_update:
            proposer = self.digest if name.startswith("digest") else self.other
            try:
                text = proposer(candidate=candidate, reflective_dataset=reflective_dataset,
                                components_to_update=[name]).get(name)
            except Exception as exc:  # a reply the proposer could not use: keep the current text
                logger.warning("GEPA proposal for %s failed (%s); keeping the current instruction", name, exc)
                text = None
            if text is not None and name.startswith("digest"):
                text = as_guidance_question(text)
            if text is None:
                self.kept.append(name)
            else:
                results[name] = text
        return results


class _GepaProgress:
    """GEPA callback: one progress line per iteration, saying what was proposed and how it fared."""

    def __init__(self, owner: GepaOptimizer, total: int):
        self.owner = owner
        self.total = total
        self.proposed = ""
        self.minibatch = ""
        self.parent: dict[str, str] = {}  # the candidate a proposal starts from

    def on_iteration_start(self, event: dict) -> None:
        self.proposed = self.minibatch = ""
        self.parent = {}

    def on_proposal_start(self, event: dict) -> None:
        self.parent = event["parent_candidate"]

    def on_proposal_end(self, event: dict) -> None:
        # A proposal identical to the current text is no change.
        changed = {n: t for n, t in event["new_instructions"].items() if t != self.parent.get(n)}
        self.proposed = ("; ".join(f"{name}: {text[:100]!r}" for name, text in changed.items())
                         or "nothing usable (current text kept)")

    def on_candidate_rejected(self, event: dict) -> None:
        self.minibatch = f" (minibatch total {event['old_score']:g} -> {event['new_score']:g})"

    def on_valset_evaluated(self, event: dict) -> None:
        self.owner.report(f"{event['iteration']} (candidate {event['candidate_idx']})", None, event["average_score"],
                          "on dev")

    def on_iteration_end(self, event: dict) -> None:
        state = event["state"]
        scores = state.program_full_scores_val_set
        if event["proposal_accepted"]:
            verdict = "accepted"
        else:  # nothing for a minibatch the program already gets right, or a refused proposal
            verdict = "rejected" + self.minibatch if self.proposed else "nothing proposed"
        self.owner.report(event["iteration"], None, None,
                          f"{verdict}; best dev {max(scores):.3f}; metric calls {state.total_num_evals}/{self.total}"
                          + (f"; proposed {self.proposed}" if self.proposed else ""))


@register_optimizer
class GepaOptimizer(Optimizer):
    """GEPA: reflective rewrites of one step at a time from failed train minibatches, a Pareto front on dev."""

    name = "gepa"
    summary = ("DSPy GEPA: runs minibatches of train, reflects on failures with feedback (the gold answer and the "
               "reply) to rewrite one step's instruction, keeps a Pareto front over dev")
    defaults = {"max_metric_calls": 200, "reflection_minibatch_size": 3, "candidate_selection_strategy": "pareto",
                "use_merge": False}

    def _plan(self, program: dspy.Module, trainset: list[Example], valset: list[Example], c: int) -> CallPlan:
        n_dev = len(valset)
        s = self.settings
        m, mb = s["max_metric_calls"], s["reflection_minibatch_size"]
        if m <= n_dev:
            raise ConfigError(f"gepa: max_metric_calls={m} leaves nothing after the first dev evaluation "
                              f"({n_dev} examples); raise it above {n_dev}")
        iterations = ceil_div(m - n_dev, mb) + 1  # each iteration spends at least one minibatch
        plan = CallPlan(trials=iterations)
        plan.parts["seed program on dev (task)"] = n_dev * c
        plan.parts["iterations: minibatches and dev re-evaluations (task)"] = (m - n_dev + 2 * mb + n_dev) * c
        plan.parts["reflections (prompt)"] = iterations
        plan.per_trial = (2 * mb + n_dev) * c + 1
        plan.notes.append(f"GEPA stops at {m} metric calls (program runs); it may finish the iteration in flight")
        return plan

    def _search(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
                metric: TaskMetric) -> dspy.Module:
        quiet_dspy_logs()
        s = self.settings
        proposer = GuidanceProposer(self.task.description)
        optimizer = GEPA(metric=metric.gepa, max_metric_calls=s["max_metric_calls"],
                         reflection_minibatch_size=s["reflection_minibatch_size"],
                         candidate_selection_strategy=s["candidate_selection_strategy"], reflection_lm=self.prompt_lm,
                         instruction_proposer=proposer, use_merge=s["use_merge"], num_threads=self.parallel,
                         seed=self.seed, track_stats=True, warn_on_score_mismatch=False,
                         gepa_kwargs={"callbacks": [_GepaProgress(self, s["max_metric_calls"])]})
        compiled = optimizer.compile(program, trainset=to_dspy(self.task, trainset, program),
                                     valset=to_dspy(self.task, valset, program))
        results = compiled.detailed_results
        self.info["candidates"] = [dict(c.items()) for c in results.to_dict()["candidates"]]
        self.info["dev_scores"] = list(results.val_aggregate_scores)
        self.known_dev_score = results.val_aggregate_scores[results.best_idx]
        order = sorted(range(len(results.candidates)), key=lambda i: -results.val_aggregate_scores[i])
        self.ranked = [compiled, *(results.candidates[i] for i in order if i != results.best_idx)]
        self.info["kept_current_text"] = proposer.kept
        del compiled.detailed_results  # holds every candidate program: not part of the result
        return compiled
