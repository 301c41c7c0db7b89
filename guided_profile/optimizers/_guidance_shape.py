"""What a guidance question must look like, and how a proposal is made one (or refused).

Every optimizer's proposals pass through here, so a rewritten guidance question is one short question (or
request) whichever optimizer wrote it.
"""

from __future__ import annotations

import re

import dspy

MAX_GUIDANCE_CHARS = 400


def question_shaped(text: str | None) -> bool:
    """A guidance question is one short question ('?') or request (':'), as the paper's are."""
    text = (text or "").strip()
    return bool(text) and text[-1] in "?:" and len(text) <= MAX_GUIDANCE_CHARS


def clean_proposal(text: str | None) -> str:
    """A proposed instruction without quotes, labels or surrounding blank lines."""
    text = (text or "").strip().strip("`").strip()
    text = re.sub(r"^(?:new |proposed |improved )?(?:instruction|guidance question|question)\s*:\s*", "", text,
                  flags=re.IGNORECASE)
    return text.strip().strip('"').strip("'").strip()


def as_guidance_question(text: str | None) -> str | None:
    """A proposal as a guidance question, or None.

    Small proposer models often write the question and then comment on it; the first sentence
    ending with '?' is then the question.  Anything else that is not question-shaped is refused.
    """
    text = clean_proposal(text)
    if question_shaped(text):
        return text
    match = re.match(r"\s*([^?\n]{10,}?\?)(?=\s|$)", text)
    if match and question_shaped(clean_proposal(match.group(1))):
        return clean_proposal(match.group(1))
    return None


def digest_name(program: dspy.Module) -> str | None:
    names = [name for name, _ in program.named_predictors()]
    return "digest" if "digest" in names else None


def set_instruction(program: dspy.Module, name: str, text: str) -> None:
    predictor = dict(program.named_predictors())[name]
    predictor.signature = predictor.signature.with_instructions(text)
