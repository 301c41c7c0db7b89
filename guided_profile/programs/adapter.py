"""An adapter for small local models: history first, plain replies, robust parsing.

DSPy's ChatAdapter asks for `[[ ## field ## ]]` markers, which 0.5-1.5B models often drop; then
it retries through JSONAdapter, paying a second call for a reply that was usually fine.  Every
step of our programs has exactly one output field, so here the whole reply *is* that field.

The layout also puts the long part every step shares first: a fixed system preamble, then the
person's history, and only then the step's own fields and instruction.  llama.cpp (and remote
APIs with prefix caching) can then reuse the history's KV entries from one step to the next.
The `options-last` prompt layout (a recorded setting, not the default) also moves the answer
step's instruction before its options, so score mode's rotations share all but the options.
GPG's profile step may also be formatted as the next turn of the digestion's conversation
(`programs.conversation`: `--profile-step continued`), so the digestion's reply is not read again.
Signatures with several outputs (e.g. an optimizer's own proposal programs) fall back to
ChatAdapter's format unchanged.

Optimizers run the program and their own proposal programs under one `dspy.context`:
`ProgramAdapter` routes our steps to `PersonalAdapter` and the rest to `LenientChatAdapter`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from dspy.adapters.chat_adapter import ChatAdapter
from dspy.signatures.signature import Signature
from dspy.utils.exceptions import AdapterParseError

from guided_profile._dspy_internals import RepliesHookAdapter
from guided_profile.programs.conversation import PriorTurn, continuing, prior_turn

PREAMBLE = "You are a careful assistant who studies one person's history and answers briefly and exactly."
HISTORY_FIELD = "history"
OPTIONS_FIELD = "options"
# Where a step with options states its instruction: at the end, before the reply request (the default, and
# every prompt before the setting existed), or before the options, so prompts that differ only in their
# options (score mode's rotations) share everything up to them and a prefix cache recomputes only the options.
INSTRUCTION_LAST = "instruction-last"
OPTIONS_LAST = "options-last"
PROMPT_LAYOUTS = (INSTRUCTION_LAST, OPTIONS_LAST)
DEFAULT_LAYOUT = INSTRUCTION_LAST
_layout: ContextVar[str] = ContextVar("prompt_layout", default=DEFAULT_LAYOUT)
FIELD_MARKER = re.compile(r"\[\[\s*##\s*\w+\s*##\s*\]\]")  # DSPy's "[[ ## answer ## ]]"
# A small model sometimes narrates instead of answering: 'In their voice, they would reply: "Sure!"'.
_NARRATED = re.compile(r'^[^"\n]{0,200}\bwould (?:reply|say|respond|write|answer)\b[^"\n]{0,40}:\s*"(?P<quote>.+)"\s*$',
                       re.IGNORECASE | re.DOTALL)


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


@contextmanager
def laid_out(layout: str) -> Iterator[None]:
    """Lay out the prompts formatted inside in `layout`.  The answer step owns the setting and says so around
    its own calls, so whichever adapter the caller chose (a run's, an optimizer's) formats them alike."""
    token = _layout.set(layout)
    try:
        yield
    finally:
        _layout.reset(token)


class PersonalAdapter(RepliesHookAdapter):
    """History-first prompts and whole-reply parsing for single-output signatures."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("use_json_adapter_fallback", False)
        super().__init__(**kwargs)

    @staticmethod
    def _single_output(signature: type[Signature]) -> str | None:
        outputs = list(signature.output_fields)
        return outputs[0] if len(outputs) == 1 else None

    def format(self, signature: type[Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]):
        output = self._single_output(signature)
        if output is None:
            return super().format(signature, demos, inputs)
        turn = prior_turn()
        if turn is not None:
            return self._continued(turn, signature, inputs)
        messages = [{"role": "system", "content": PREAMBLE}]
        for demo in demos:
            if all(k in demo for k in signature.input_fields) and output in demo:
                messages.append({"role": "user", "content": self.user_content(signature, demo)})
                messages.append({"role": "assistant", "content": str(demo[output])})
        messages.append({"role": "user", "content": self.user_content(signature, inputs)})
        return messages

    def _continued(self, turn: PriorTurn, signature: type[Signature], inputs: dict[str, Any]) -> list[dict]:
        """The prior step's own messages, its reply as the assistant's turn, then a user turn with only what
        this step adds: the fields the conversation does not show yet, and the instruction (this step's own demos
        have no place in it: `GuidedProfile` refuses them).  The messages up to the reply are the prior step's
        prompt and output, so a prefix cache computes only the new turn."""
        with continuing(None):  # the prior step as it was formatted when it ran
            messages = self.format(turn.signature, list(turn.demos), turn.inputs)
        messages.append({"role": "assistant", "content": turn.reply})
        messages.append({"role": "user", "content": self.user_content(signature, inputs, shown=turn.shown)})
        return messages

    def user_content(self, signature: type[Signature], inputs: dict[str, Any],
                     shown: Collection[str] = ()) -> str:
        """History block first (shared by every step), then the step's fields and instruction; in the
        options-last layout the options come after the instruction, just before the reply request.  Fields
        in `shown` (already in the conversation) are left out."""
        names = sorted((n for n in signature.input_fields if n not in shown), key=lambda n: n != HISTORY_FIELD)
        instruction, request = signature.instructions.strip(), self._reply_request(signature)
        if _layout.get() == OPTIONS_LAST and OPTIONS_FIELD in names:
            names.remove(OPTIONS_FIELD)
            tail = [instruction, self._field_block(signature, OPTIONS_FIELD, inputs), request]
        else:
            tail = [f"{instruction}\n{request}"]
        return "\n\n".join([*(self._field_block(signature, name, inputs) for name in names), *tail])

    @staticmethod
    def _field_block(signature: type[Signature], name: str, inputs: dict[str, Any]) -> str:
        field = signature.input_fields[name]
        desc = field.json_schema_extra.get("desc", "") if field.json_schema_extra else ""
        header = _title(name) + (f" ({desc})" if desc and not desc.startswith("${") else "")
        return f"{header}:\n{inputs.get(name, '')}"

    def _reply_request(self, signature: type[Signature]) -> str:
        output = self._single_output(signature)
        out_field = signature.output_fields[output]
        out_desc = out_field.json_schema_extra.get("desc", "") if out_field.json_schema_extra else ""
        request = f"Reply with only the {_title(output).lower()}"
        return request + (f" ({out_desc})." if out_desc and not out_desc.startswith("${") else ".")

    def prepare_outputs(self, signature: type[Signature], outputs: list) -> list:
        # DSPy raises on an empty reply before `parse` sees it; for a single-output step an empty reply is
        # an answer the task scores as unparseable (and `Usage.empty_replies` counts), not a failed example
        # that a rerun would retry.
        if self._single_output(signature) is not None:
            outputs = [({**o, "text": o.get("text") or " "} if isinstance(o, dict) else (o or " ")) for o in outputs]
        return outputs

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        output = self._single_output(signature)
        if output is None:
            return super().parse(signature, completion)
        text = FIELD_MARKER.sub("", completion).strip()
        # A reply that echoes the field's name ("Profile: ...") still carries the value after it.
        text = re.sub(rf"^\s*{re.escape(_title(output))}\s*:\s*", "", text, flags=re.IGNORECASE)
        narrated = _NARRATED.match(text)
        if narrated:
            text = narrated["quote"].strip()
        return {output: text}


PROGRAM_INPUTS = {"history", "guidance", "profile", "question", "options"}
PROGRAM_OUTPUTS = {"guidance", "profile", "answer"}


def is_program_signature(signature: type[Signature]) -> bool:
    """True for the steps of our programs (they take only our fields and give one of ours)."""
    outputs = set(signature.output_fields)
    return len(outputs) == 1 and outputs <= PROGRAM_OUTPUTS and set(signature.input_fields) <= PROGRAM_INPUTS


class LenientChatAdapter(ChatAdapter):
    """DSPy's ChatAdapter for the prompt model, forgiving replies that drop the field markers.

    Small proposer models often write the instruction without `[[ ## field ## ]]`; ChatAdapter
    would then pay a second call through JSONAdapter and, if that fails too, raise inside the
    optimizer and end the run.  Here a reply without markers is taken whole as the first output
    field (later fields are left empty), which is what such a reply means.
    """

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("use_json_adapter_fallback", False)
        super().__init__(**kwargs)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        try:
            return super().parse(signature, completion)
        except AdapterParseError:
            names = list(signature.output_fields)
            text = FIELD_MARKER.sub("", completion).strip()
            if not text:
                raise
            values = {name: "" for name in names}
            values[names[0]] = text
            for name in names:  # outputs typed other than str cannot be filled from free text
                if signature.output_fields[name].annotation not in (str, None) and not values[name]:
                    raise
            return values


class ProgramAdapter(PersonalAdapter):
    """PersonalAdapter for the program's own steps, DSPy's chat format for everything else.

    DSPy optimizers run the program and their proposer under one `dspy.context`; routing by
    signature keeps the program's prompts byte-identical to `guided-profile run` while the prompt
    model's proposal signatures get DSPy's default (chat) format.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.other = LenientChatAdapter()

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        if is_program_signature(signature):
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        return self.other(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        if is_program_signature(signature):
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        return await self.other.acall(lm, lm_kwargs, signature, demos, inputs)
