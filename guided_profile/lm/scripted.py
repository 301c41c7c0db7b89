"""An engine that answers by a rule instead of a model: every request kept, no time spent.

Two users: the scripted `--lm fake` (`lm/fake.py`, for dry runs and tests) and the call counter
that measures how many LM calls a program makes per example before an optimizer plans its budget
(`accounting.count_calls`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dspy.lm15 import Message, Response, TextPart, Usage

from guided_profile._dspy_internals import TokenLogprob, TopLogprob

# (system, user message) -> reply text, or {token: logprob} for the first token's alternatives
# (the reply is then the most likely token; the log-probabilities are returned when asked for).
Rule = Callable[[str, str], "str | dict[str, float]"]


class ScriptedEngine:
    """Replies by `rule`; counts prompt tokens as whitespace words so accounting can be tested."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def complete(self, request) -> Response:
        system = request.system if isinstance(request.system, str) else ""
        user = "\n".join(m.text or "" for m in request.messages)
        reply = self.rule(system, user)
        logprobs = None
        if isinstance(reply, dict):
            ranked = sorted(reply.items(), key=lambda kv: -kv[1])
            if request.config.logprobs:
                top = tuple(TopLogprob(token=t, logprob=float(lp)) for t, lp in ranked[: request.config.logprobs])
                logprobs = (TokenLogprob(token=ranked[0][0], logprob=float(ranked[0][1]), top=top),)
            reply = ranked[0][0]
        with self._lock:
            self.requests.append({"system": system, "user": user, "reply": reply,
                                  "logprobs": bool(request.config.logprobs)})
        return Response(id=None, model="fake", message=Message.assistant((TextPart(reply),)), finish_reason="stop",
                        usage=Usage(input_tokens=len((system + " " + user).split()),
                                    output_tokens=len(reply.split()), cache_read_tokens=0), logprobs=logprobs)

    def stream(self, request):
        raise NotImplementedError

    def close(self) -> None:
        pass
