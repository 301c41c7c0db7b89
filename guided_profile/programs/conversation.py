"""GPG's profile step as the continuation of the digestion's conversation (`--profile-step continued`).

The profile step reads the history and the guidance answer.  Formatted `separate` (the default, and every
prompt before the setting existed) it is a prompt of its own: the history again, the guidance answer as an
input field, its instruction.  Formatted `continued` it is the next turn of the digestion's conversation:
the digestion's own messages, its reply as the assistant's turn, then a user turn holding only the profile
instruction.  The step still sees the history and the guidance answer, but a prefix cache (llama.cpp)
reuses everything through the digestion's reply and computes only the profile instruction.

The step that continues states its prior turn with `continuing(...)`; `PersonalAdapter` formats the prior
turn from the digestion step it is given, so an optimizer's rewritten guidance question is the one shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import dspy

from guided_profile.errors import ConfigError

SEPARATE = "separate"
CONTINUED = "continued"
PROFILE_STEPS = (SEPARATE, CONTINUED)
DEFAULT_PROFILE_STEP = SEPARATE


def check_profile_step(value: str) -> str:
    """`value` if it is one of `PROFILE_STEPS`; else one clear error."""
    if value not in PROFILE_STEPS:
        raise ConfigError(f"unknown profile step {value!r}; choose from {', '.join(PROFILE_STEPS)}")
    return value


@dataclass(frozen=True)
class PriorTurn:
    """The step a continued step follows: its signature, demos and inputs (what its prompt was made
    from) and its reply (the text the conversation shows as the assistant's turn).

    Args:
        signature: the prior step's signature, as it is now (an optimizer may have rewritten it).
        demos: the prior step's demos, shown in its prompt as earlier turns.
        inputs: the prior step's inputs, e.g. {"history": ...}.
        reply: the prior step's output as the program kept it (from the model, DSPy's cache or the store).
    """

    signature: type[dspy.Signature]
    demos: tuple[Any, ...]
    inputs: dict[str, Any]
    reply: str

    @classmethod
    def of(cls, step: dspy.Predict, reply: str, **inputs: Any) -> PriorTurn:
        """The prior turn made by `step` on `inputs`: its prompt is formatted from the step actually used."""
        return cls(step.signature, tuple(step.demos), dict(inputs), reply)

    @property
    def shown(self) -> set[str]:
        """The fields the conversation already shows: the prior step's inputs and its reply."""
        return {*self.signature.input_fields, *self.signature.output_fields}

    def describe(self) -> str:
        """What the continued prompt adds besides the history and the reply (which a store key holds
        already): the prior step's instruction and demos."""
        demos = json.dumps([dict(d) for d in self.demos], sort_keys=True, default=str) if self.demos else ""
        return f"[continues] {self.signature.instructions}" + (f"\n[demos] {demos}" if demos else "")


_prior: ContextVar[PriorTurn | None] = ContextVar("prior_turn", default=None)


@contextmanager
def continuing(turn: PriorTurn | None) -> Iterator[None]:
    """Format the steps called inside as the continuation of `turn` (None: as prompts of their own)."""
    token = _prior.set(turn)
    try:
        yield
    finally:
        _prior.reset(token)


def prior_turn() -> PriorTurn | None:
    """The turn the step being formatted continues, if any."""
    return _prior.get()
