"""The final step's two ways of answering: generate-and-parse, or choice scoring.

`GenerateAnswer` is the paper's: the model writes a reply and the task parses it (so it can
abstain).  `ScoreChoice` is for tasks whose answer is one of given options: it reads the model's
probability of each option's letter as the first token, once per cyclic rotation of the option
order, and averages them per option.  A small model that prefers a *position* ("B" whatever the
options) then spreads its preference evenly over all options instead of deciding the answer.
Both expose the same inner `predict`, so optimizers see and rewrite the same instruction, and both
lay their prompts out in their `prompt_layout` (`programs.adapter`: where the instruction stands).
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Sequence
from typing import Any

import dspy

from guided_profile.datasets.example import option_letters
from guided_profile.errors import ConfigError
from guided_profile.programs.adapter import DEFAULT_LAYOUT, PROMPT_LAYOUTS, laid_out

ANSWER_MODES = ("generate", "score")
# The command line's default: choice scoring where a task has options (measured better for the embedded
# model: experiments/results/table1-preference.md), generation for free-text tasks.
AUTO = "auto"
TOP_LOGPROBS = 20


def resolve_answer_mode(mode: str, has_options: bool) -> str:
    if mode == AUTO:
        return "score" if has_options else "generate"
    return mode


def answer_config(answer_mode: str, rotations: int | None = None,
                  prompt_layout: str = DEFAULT_LAYOUT) -> dict[str, Any]:
    """How a program answers: what run folders and compiled programs state, what `compare` checks and what
    `build_program` takes.  Rotations exist in score mode only (None in generate mode); the prompt layout in
    both (records and files from before it was a setting used the default)."""
    return {"answer_mode": answer_mode, "rotations": rotations if answer_mode == "score" else None,
            "prompt_layout": check_layout(prompt_layout)}


def check_layout(layout: str) -> str:
    """`layout` if it is one of `PROMPT_LAYOUTS`; else one clear error."""
    if layout not in PROMPT_LAYOUTS:
        raise ConfigError(f"unknown prompt layout {layout!r}; choose from {', '.join(PROMPT_LAYOUTS)}")
    return layout


_scoring = contextvars.ContextVar("scoring", default=False)


class _ExpectedTruncation(logging.Filter):
    """Scoring asks for one token on purpose: DSPy's 'response was truncated' warning is noise there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_scoring.get() and "truncated" in record.getMessage())


logging.getLogger("dspy.clients.lm").addFilter(_ExpectedTruncation())


def lettered(options: Sequence[str]) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(option_letters(len(options)), options, strict=True))


class GenerateAnswer(dspy.Module):
    """Write the answer; options (if any) are shown lettered in their given order."""

    def __init__(self, signature: type[dspy.Signature], max_tokens: int, prompt_layout: str = DEFAULT_LAYOUT):
        super().__init__()
        self.prompt_layout = check_layout(prompt_layout)
        self.predict = dspy.Predict(signature, max_tokens=max_tokens)

    def forward(self, options: Sequence[str] = (), **inputs) -> dspy.Prediction:
        if options:
            inputs["options"] = lettered(options)
        with laid_out(self.prompt_layout):
            return dspy.Prediction(answer=self.predict(**inputs).answer)


def letter_probabilities(logprobs: dict | None, n: int) -> list[float] | None:
    """Probabilities of the letters A.. among the first token's top alternatives, renormalised over
    the letters; a letter outside the top list counts as 0, and all are 0 if none is there.
    None when the reply carries no log-probabilities at all (the endpoint does not give them)."""
    if not logprobs or not logprobs.get("content"):
        return None
    wanted = option_letters(n)
    best: dict[str, float] = {}
    for alt in logprobs["content"][0].get("top_logprobs") or []:
        token = alt["token"].strip()
        if token in wanted:
            best[token] = max(best.get(token, -math.inf), alt["logprob"])
    weights = [math.exp(best[letter]) if letter in best else 0.0 for letter in wanted]
    total = sum(weights)
    return [w / total for w in weights] if total else [0.0] * n


class ScoreChoice(dspy.Module):
    """Choice scoring over `rotations` cyclic rotations of the option order (1 = plain, n = full).

    Rotation k shows option (j + k) mod n at position j, so with n rotations every option is seen
    once in every position.  Ties (e.g. a pure position bias; means are compared to 1e-9) go to the
    option listed first in the example.  A rotation whose first token is no letter at all gives every
    option 0 and is counted in `rotations_without_letter`; if no rotation has a letter, the answer is
    empty (the task counts it unparseable) rather than a tie won by option A.  Without log-probabilities (some remote
    APIs) it falls back to generating one letter and parsing it strictly; `answer_path` says which.
    """

    def __init__(self, signature: type[dspy.Signature], rotations: int = 4, prompt_layout: str = DEFAULT_LAYOUT):
        super().__init__()
        if rotations < 1:
            raise ValueError("rotations must be at least 1")
        self.rotations = rotations
        self.prompt_layout = check_layout(prompt_layout)
        self.predict = dspy.Predict(signature)

    def forward(self, options: Sequence[str] = (), **inputs) -> dspy.Prediction:
        n = len(options)
        if n == 0:
            raise ValueError("choice scoring needs options")
        per_option: list[list[float]] = [[] for _ in range(n)]
        rotations = min(self.rotations, n)
        for k in range(rotations):
            probs = self._rotation(k, options, inputs)
            if probs is None:  # the endpoint gave no log-probabilities
                return self._fallback(options, inputs)
            for position, p in enumerate(probs):
                per_option[(position + k) % n].append(p)
        mean = [round(math.fsum(ps) / rotations, 9) for ps in per_option]  # same sums in any order: exact ties
        best = max(range(n), key=lambda i: (mean[i], -i))
        no_letter = sum(not any(ps[k] for ps in per_option) for k in range(rotations))
        answer = option_letters(n)[best] if mean[best] > 0 else ""
        return dspy.Prediction(answer=answer, choice_probs=[round(p, 4) for p in mean],
                               answer_path="logprobs", rotations_without_letter=no_letter)

    def _rotation(self, k: int, options: Sequence[str], inputs: dict) -> list[float] | None:
        """Letter probabilities by position, when position j shows option (j + k) mod n."""
        n = len(options)
        shown = [options[(j + k) % n] for j in range(n)]
        token = _scoring.set(True)
        try:
            with laid_out(self.prompt_layout):
                prediction = self.predict(**inputs, options=lettered(shown),
                                          config={"max_tokens": 1, "logprobs": True, "top_logprobs": TOP_LOGPROBS})
        finally:
            _scoring.reset(token)
        return letter_probabilities(prediction.get("logprobs"), n)

    def _fallback(self, options: Sequence[str], inputs: dict) -> dspy.Prediction:
        # The reply ("C", "(C)", "Answer: C", "Based on ...") is read by the task's parser, like generate mode's.
        with laid_out(self.prompt_layout):
            reply = self.predict(**inputs, options=lettered(options), config={"max_tokens": 4}).answer.strip()
        return dspy.Prediction(answer=reply, choice_probs=None, answer_path="fallback-generate")


def answer_config_of(program: dspy.Module) -> dict[str, Any]:
    """`answer_config` of a built program, read from its final step."""
    respond = getattr(program, "respond", None)
    layout = getattr(respond, "prompt_layout", DEFAULT_LAYOUT)
    if isinstance(respond, ScoreChoice):
        return answer_config("score", respond.rotations, layout)
    return answer_config("generate", prompt_layout=layout)
