"""The three GPG steps as DSPy signatures.

Each task fills in the instructions: the digestion step's instructions ARE the task's guidance
question, so any DSPy optimizer that rewrites instructions rewrites the guidance question too.
Field names and descriptions are shared by every step so the history block of every prompt is
byte-identical (see `PersonalAdapter`).
"""

from __future__ import annotations

import dspy

HISTORY_DESC = "the person's past items, oldest first"


class Digest(dspy.Signature):
    """Answer the guidance question about the person's history."""

    history: str = dspy.InputField(desc=HISTORY_DESC)
    guidance: str = dspy.OutputField(desc="a short answer to the question")


class WriteProfile(dspy.Signature):
    """Write a short profile of the person."""

    history: str = dspy.InputField(desc=HISTORY_DESC)
    guidance: str = dspy.InputField(desc="what the person's history shows, in brief")
    profile: str = dspy.OutputField(desc="a short profile of the person")


class Respond(dspy.Signature):
    """Answer the question for this person."""

    history: str = dspy.InputField(desc=HISTORY_DESC)
    guidance: str = dspy.InputField(desc="what the person's history shows, in brief")
    profile: str = dspy.InputField(desc="a short profile of the person")
    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="one per line, each with its letter")
    answer: str = dspy.OutputField()


def respond_signature(instructions: str, *, history: bool, guidance: bool, profile: bool, options: bool = False,
                      answer_desc: str = "") -> type[dspy.Signature]:
    """`Respond` with only the inputs the final step is switched to see."""
    signature = Respond.with_instructions(instructions)
    for name, keep in (("history", history), ("guidance", guidance), ("profile", profile), ("options", options)):
        if not keep:
            signature = signature.delete(name)
    if answer_desc:
        signature = signature.with_updated_fields("answer", desc=answer_desc)
    return signature
