"""The paper's methods as DSPy modules, built from a task's signatures.

Every module takes the same inputs (`history`, `question`: text the task prepared, and `options`
for choice tasks) and returns a `dspy.Prediction` with `answer`, plus `guidance` / `profile` when
it made them, so the runner, metrics and optimizers treat all methods alike.  `answer_mode`
chooses how the final step answers and `prompt_layout` how its prompt is laid out (see
`programs.answer`); GPG's `profile_step` whether its profile step continues the digestion's
conversation (`programs.conversation`).  A module given a retrieval (`programs.retrieved.with_retrieval`) also takes
the history's raw `items` and the retriever's `query`, and its steps read the items it keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from guided_profile.errors import ConfigError
from guided_profile.programs.adapter import DEFAULT_LAYOUT
from guided_profile.programs.answer import ANSWER_MODES, GenerateAnswer, ScoreChoice
from guided_profile.programs.conversation import (
    DEFAULT_PROFILE_STEP,
    SEPARATE,
    PriorTurn,
    check_profile_step,
    continuing,
)
from guided_profile.programs.retrieved import RetrievesHistory
from guided_profile.programs.signatures import Digest, WriteProfile, respond_signature
from guided_profile.programs.stored import StoredStep
from guided_profile.tasks.base import Task

# A profile update's cap (programs/update.py); digestion and profile caps are the task's (`Task.step_max_tokens`).
STEP_MAX_TOKENS = 256


def answer_step(task: Task, *, history: bool, guidance: bool, profile: bool, answer_mode: str = "generate",
                rotations: int | None = 4, prompt_layout: str = DEFAULT_LAYOUT) -> dspy.Module:
    """The final step, seeing only the parts it is switched to see."""
    if answer_mode not in ANSWER_MODES:
        raise ConfigError(f"unknown answer mode {answer_mode!r}; choose from {', '.join(ANSWER_MODES)}")
    if answer_mode == "score" and not task.has_options:
        raise ConfigError(f"task {task.name!r} has no options to score: use --answer-mode generate")
    if prompt_layout != DEFAULT_LAYOUT and not task.has_options:  # a recorded layout must change something
        raise ConfigError(f"task {task.name!r} has no options to move: use --prompt-layout {DEFAULT_LAYOUT}")
    signature = respond_signature(task.answer_instruction, history=history, guidance=guidance, profile=profile,
                                  options=task.has_options, answer_desc=task.answer_desc)
    if answer_mode == "score":
        return ScoreChoice(signature, rotations=rotations, prompt_layout=prompt_layout)
    return GenerateAnswer(signature, max_tokens=task.answer_max_tokens, prompt_layout=prompt_layout)


class DirectAnswer(RetrievesHistory, dspy.Module):
    """DG: answer the question directly, with or without the raw history (the paper's baselines)."""

    def __init__(self, task: Task, with_context: bool = True, **answer_options):
        super().__init__()
        self.with_context = with_context
        self.respond = answer_step(task, history=with_context, guidance=False, profile=False, **answer_options)

    def forward(self, history: str, question: str, options: Sequence[str] = (), items: Sequence[str] | None = None,
                query: str | None = None) -> dspy.Prediction:
        _, history, retrieval = self.histories(history, items, query)
        context = {"history": history} if self.with_context else {}
        answer = self.respond(question=question, options=options, **context)
        return dspy.Prediction(**answer, **retrieval) if retrieval else answer


class ProfileThenAnswer(RetrievesHistory, dspy.Module):
    """PG: write an unguided profile from the history, then answer from history + profile."""

    def __init__(self, task: Task, **answer_options):
        super().__init__()
        self.write_profile = StoredStep(WriteProfile.delete("guidance").with_instructions(task.profile_instruction),
                                        kind="profile", max_tokens=task.profile_max_tokens)
        self.respond = answer_step(task, history=True, guidance=False, profile=True, **answer_options)

    def forward(self, history: str, question: str, options: Sequence[str] = (), items: Sequence[str] | None = None,
                query: str | None = None) -> dspy.Prediction:
        digest_history, answer_history, retrieval = self.histories(history, items, query)
        profile = self.write_profile(history=digest_history).profile
        answer = self.respond(history=answer_history, profile=profile, question=question, options=options)
        return dspy.Prediction(profile=profile, **answer, **retrieval)


class GuidedProfile(RetrievesHistory, dspy.Module):
    """GPG: digest the history by answering the guidance question, write a profile guided by that
    answer, then answer the question from the parts the switches let through (history, guidance,
    profile: the paper's ablation grid).  A switch left unset takes the task's main GPG row
    (`task.gpg_switches`: history + profile for preference, + guidance too for paraphrasing).
    `profile_step` formats the profile step `separate` (a prompt of its own) or `continued` (the next turn
    of the digestion's conversation); the final step never sees the digestion's conversation."""

    def __init__(self, task: Task, include_context: bool | None = None, include_guidance: bool | None = None,
                 include_profile: bool | None = None, profile_step: str = DEFAULT_PROFILE_STEP, **answer_options):
        super().__init__()
        self.profile_step = check_profile_step(profile_step)
        given = {"include_context": include_context, "include_guidance": include_guidance,
                 "include_profile": include_profile}
        switches = task.gpg_switches | {k: v for k, v in given.items() if v is not None}
        self.include_context = switches["include_context"]
        self.include_guidance = switches["include_guidance"]
        self.include_profile = switches["include_profile"]
        self.digest = StoredStep(Digest.with_instructions(task.guidance_question), kind="digest",
                                 max_tokens=task.digest_max_tokens)
        self.write_profile = StoredStep(WriteProfile.with_instructions(task.guided_profile_instruction),
                                        kind="profile", max_tokens=task.profile_max_tokens)
        self.respond = answer_step(task, history=self.include_context, guidance=self.include_guidance,
                                   profile=self.include_profile, **answer_options)

    @property
    def switches(self) -> dict[str, bool]:
        return {"include_context": self.include_context, "include_guidance": self.include_guidance,
                "include_profile": self.include_profile}

    def forward(self, history: str, question: str, options: Sequence[str] = (), items: Sequence[str] | None = None,
                query: str | None = None) -> dspy.Prediction:
        history, answer_history, retrieval = self.histories(history, items, query)
        guidance = self.digest(history=history).guidance
        steps = {"guidance": guidance, **retrieval}
        if self.include_profile:
            steps["profile"] = self._profile(history, guidance)
        inputs = {"question": question, "options": options}
        if self.include_context:
            inputs["history"] = answer_history
        if self.include_guidance:
            inputs["guidance"] = guidance
        if self.include_profile:
            inputs["profile"] = steps["profile"]
        return dspy.Prediction(**steps, **self.respond(**inputs))

    def _profile(self, history: str, guidance: str) -> str:
        """The profile from the history and the guidance answer; continued, the prompt shows both as the
        digestion's own turn (formatted from `self.digest` as it is now), so the prefix cache keeps them."""
        if self.profile_step == SEPARATE:
            return self.write_profile(history=history, guidance=guidance).profile
        if self.write_profile.demos:
            raise ConfigError("a continued profile step has no place for its own demos; use --profile-step separate")
        with continuing(PriorTurn.of(self.digest, guidance, history=history)):
            return self.write_profile(history=history, guidance=guidance).profile
