"""DSPy's own instruction optimizers behind our interface: MIPROv2, GEPA and COPRO.

Each wrapper only sets DSPy's optimizer up (instructions only, no demos; one thread; our metric;
the prompt model for proposals) and keeps a rewritten guidance question question-shaped:

* MIPROv2: malformed digest candidates are dropped from its pool before the Optuna trials.
* GEPA: the digest step gets its own instruction proposer told to write one question; a draft
  that still is not question-shaped keeps the current guidance.
* COPRO: of its scored candidates, the best one whose guidance is question-shaped is returned.

A rerun of the same command is cheap: DSPy's answer cache (on unless --no-cache) answers every
program and proposal call already made, so only the part not yet paid for reaches the model.
"""

from __future__ import annotations

import logging
from typing import Any

import dspy
from dspy.teleprompt import COPRO, GEPA
from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer

from guided_profile._dspy_internals import HookedMIPROv2
from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.optimizers._guidance_shape import as_guidance, digest_name, question_shaped
from guided_profile.optimizers.base import Optimizer, register_optimizer
from guided_profile.optimizers.metric import TaskMetric, to_dspy
from guided_profile.optimizers.plan import CallPlan, ceil_div
from guided_profile.programs.adapter import LenientChatAdapter

logger = logging.getLogger(__name__)

GUIDANCE_RULES = ("This instruction is the guidance question: the assistant answers it about one person's history "
                  "before a profile of that person is written. Write exactly one question ending with '?' (or one "
                  "request ending with ':'), at most 40 words, asking for what in the history best predicts the "
                  "task's answer. Do not answer it and do not add anything else.")


def _quiet_dspy_logs() -> None:
    """DSPy optimizers log every candidate at INFO; our progress line says what matters."""
    for name in ("dspy.teleprompt", "dspy.evaluate", "dspy.propose", "gepa"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Proposers pass optional fields their signature may not have; DSPy warns about each call.
    logging.getLogger("dspy.predict.predict").setLevel(logging.ERROR)


# -- MIPROv2 ---------------------------------------------------------------------------------------

@register_optimizer
class MiproOptimizer(Optimizer):
    name = "mipro"
    summary = ("DSPy MIPROv2, instructions only: the prompt model proposes candidates per step from the data and "
               "program, Optuna's TPE picks the combination over the dev set")
    defaults = {"num_candidates": 3, "num_trials": 6, "minibatch_size": 25, "minibatch_full_eval_steps": 5,
                "init_temperature": 1.0, "view_data_batch_size": 10}

    def _minibatch(self, n_dev: int) -> bool:
        return n_dev > self.settings["minibatch_size"]

    def _keep_question_shaped(self, program: dspy.Module, candidates: dict[int, list[str]]) -> dict[int, list[str]]:
        """Drop digest candidates that are not one question (index 0, the hand-written guidance, stays)."""
        names = [name for name, _ in program.named_predictors()]
        if "digest" in names:
            i = names.index("digest")
            kept: list[str] = []
            for text in candidates[i]:
                text = as_guidance(text) if kept else text
                if text is not None and text not in kept:
                    kept.append(text)
            self.info["dropped_guidance_candidates"] = len(candidates[i]) - len(kept)
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
        _quiet_dspy_logs()
        s = self.settings
        optimizer = HookedMIPROv2(filter_candidates=self._keep_question_shaped, on_trial=self.report, metric=metric,
                                  prompt_model=self.prompt_lm, task_model=self.task_lm, max_bootstrapped_demos=0,
                                  max_labeled_demos=0, auto=None, num_candidates=s["num_candidates"], num_threads=1,
                                  seed=self.seed, init_temperature=s["init_temperature"], verbose=False,
                                  track_stats=True)
        compiled = optimizer.compile(program, trainset=to_dspy(self.task, trainset),
                                     valset=to_dspy(self.task, valset), num_trials=s["num_trials"],
                                     minibatch=self._minibatch(len(valset)),
                                     minibatch_size=min(s["minibatch_size"], len(valset)),
                                     minibatch_full_eval_steps=s["minibatch_full_eval_steps"],
                                     view_data_batch_size=s["view_data_batch_size"])
        score = getattr(compiled, "score", None)  # the full dev score of the returned program, in percent
        self.known_dev_score = None if score is None else float(score) / 100
        for attr in ("trial_logs", "score", "prompt_model_total_calls", "total_calls", "mb_candidate_programs",
                     "candidate_programs"):
            if hasattr(compiled, attr):
                delattr(compiled, attr)
        return compiled


# -- GEPA ------------------------------------------------------------------------------------------

class GuidanceProposer:
    """GEPA's own InstructionProposer, with the guidance rules for the digest step.

    Each component is proposed separately so the digest step alone is told to write a question;
    a failed or malformed proposal keeps the component's current text (GEPA then tries another
    component or minibatch), so a small reflection model cannot end the run.
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
                text = as_guidance(text)
            if text is None:
                self.kept.append(name)
                text = candidate[name]
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
        # GuidanceProposer hands back the current text when it refuses a proposal: that is no change.
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
        else:  # GEPA proposes nothing for a minibatch the program already gets right
            verdict = "rejected" + self.minibatch if self.proposed else "nothing proposed"
        self.owner.report(event["iteration"], None, None,
                          f"{verdict}; best dev {max(scores):.3f}; metric calls {state.total_num_evals}/{self.total}"
                          + (f"; proposed {self.proposed}" if self.proposed else ""))


@register_optimizer
class GepaOptimizer(Optimizer):
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
        _quiet_dspy_logs()
        s = self.settings
        proposer = GuidanceProposer(self.task.description)
        optimizer = GEPA(metric=metric.gepa, max_metric_calls=s["max_metric_calls"],
                         reflection_minibatch_size=s["reflection_minibatch_size"],
                         candidate_selection_strategy=s["candidate_selection_strategy"], reflection_lm=self.prompt_lm,
                         instruction_proposer=proposer, use_merge=s["use_merge"], num_threads=1,
                         seed=self.seed, track_stats=True, warn_on_score_mismatch=False,
                         gepa_kwargs={"callbacks": [_GepaProgress(self, s["max_metric_calls"])]})
        compiled = optimizer.compile(program, trainset=to_dspy(self.task, trainset), valset=to_dspy(self.task, valset))
        results = compiled.detailed_results
        self.info["candidates"] = [dict(c.items()) for c in results.to_dict()["candidates"]]
        self.info["dev_scores"] = list(results.val_aggregate_scores)
        self.known_dev_score = results.val_aggregate_scores[results.best_idx]
        self.info["kept_current_text"] = proposer.kept
        del compiled.detailed_results  # holds every candidate program: not part of the result
        return compiled


# -- COPRO -----------------------------------------------------------------------------------------

@register_optimizer
class CoproOptimizer(Optimizer):
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
        _quiet_dspy_logs()
        s = self.settings
        n = len(valset)
        state = {"count": 0, "sum": 0.0, "trial": 0}
        total = self._candidates(len(program.predictors()))

        def on_score(value: float) -> None:  # COPRO scores each candidate on all of the dev set in turn
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
            compiled = optimizer.compile(program, trainset=to_dspy(self.task, valset),
                                         eval_kwargs={"num_threads": 1, "display_progress": False})
        finally:
            metric.on_score = None
        candidates = getattr(compiled, "candidate_programs", [])
        self.info["candidates"] = [{"instruction": c["instruction"], "dev_score": c["score"] / 100} for c in candidates]
        name = digest_name(program)
        if name is not None and candidates:
            start = dict(program.named_predictors())[name].signature.instructions

            def acceptable(text: str) -> bool:  # the task's own guidance may be a request ending in '.'
                return text == start or question_shaped(text)

            shaped = [c for c in candidates
                      if acceptable(dict(c["program"].named_predictors())[name].signature.instructions)]
            self.info["dropped_guidance_candidates"] = len(candidates) - len(shaped)
            candidates = shaped
            compiled = shaped[0]["program"] if shaped else program  # none usable: the starting program
        if candidates:
            self.known_dev_score = candidates[0]["score"] / 100  # DSPy's Evaluate scores in percent
        for attr in ("candidate_programs", "total_calls"):
            if hasattr(compiled, attr):
                delattr(compiled, attr)
        return compiled
