"""The paper's methods as DSPy modules, built from a task's signatures.

Every module takes the same two inputs (`history`, `question`: text the task prepared) and returns
a `dspy.Prediction` with `answer`, plus `guidance` / `profile` when it made them, so the runner,
metrics and optimizers treat all methods alike.
"""

from __future__ import annotations

import dspy

from guided_profile.programs.signatures import Digest, WriteProfile, respond_signature
from guided_profile.tasks.base import Task

STEP_MAX_TOKENS = 256  # digestion and profile: the paper's are a line or two; this only stops run-on replies


def _respond(task: Task, *, history: bool, guidance: bool, profile: bool) -> dspy.Predict:
    """The final step, seeing only the parts it is switched to see."""
    signature = respond_signature(task.answer_instruction, history=history, guidance=guidance, profile=profile,
                                  answer_desc=task.answer_desc)
    return dspy.Predict(signature, max_tokens=task.answer_max_tokens)


class DirectAnswer(dspy.Module):
    """DG: answer the question directly, with or without the raw history (the paper's baselines)."""

    def __init__(self, task: Task, with_context: bool = True):
        super().__init__()
        self.with_context = with_context
        self.respond = _respond(task, history=with_context, guidance=False, profile=False)

    def forward(self, history: str, question: str) -> dspy.Prediction:
        inputs = {"question": question} | ({"history": history} if self.with_context else {})
        return dspy.Prediction(answer=self.respond(**inputs).answer)


class ProfileThenAnswer(dspy.Module):
    """PG: write an unguided profile from the history, then answer from history + profile."""

    def __init__(self, task: Task):
        super().__init__()
        self.write_profile = dspy.Predict(
            WriteProfile.delete("guidance").with_instructions(task.profile_instruction), max_tokens=STEP_MAX_TOKENS)
        self.respond = _respond(task, history=True, guidance=False, profile=True)

    def forward(self, history: str, question: str) -> dspy.Prediction:
        profile = self.write_profile(history=history).profile
        answer = self.respond(history=history, profile=profile, question=question).answer
        return dspy.Prediction(profile=profile, answer=answer)


class GuidedProfile(dspy.Module):
    """GPG: digest the history by answering the guidance question, write a profile guided by that
    answer, then answer the question from the parts the switches let through (history, guidance,
    profile: the paper's ablation grid)."""

    def __init__(self, task: Task, include_context: bool = True, include_guidance: bool = False,
                 include_profile: bool = True):
        super().__init__()
        self.include_context = include_context
        self.include_guidance = include_guidance
        self.include_profile = include_profile
        self.digest = dspy.Predict(Digest.with_instructions(task.guidance), max_tokens=STEP_MAX_TOKENS)
        self.write_profile = dspy.Predict(WriteProfile.with_instructions(task.guided_profile_instruction),
                                          max_tokens=STEP_MAX_TOKENS)
        self.respond = _respond(task, history=include_context, guidance=include_guidance, profile=include_profile)

    @property
    def switches(self) -> dict[str, bool]:
        return {"include_context": self.include_context, "include_guidance": self.include_guidance,
                "include_profile": self.include_profile}

    def forward(self, history: str, question: str) -> dspy.Prediction:
        guidance = self.digest(history=history).guidance
        steps = {"guidance": guidance}
        if self.include_profile:
            steps["profile"] = self.write_profile(history=history, guidance=guidance).profile
        inputs = {"question": question}
        if self.include_context:
            inputs["history"] = history
        if self.include_guidance:
            inputs["guidance"] = guidance
        if self.include_profile:
            inputs["profile"] = steps["profile"]
        return dspy.Prediction(**steps, answer=self.respond(**inputs).answer)
