"""What LM calls cost, read from DSPy's LM history: per example (`UsageMeter`), per model over a whole
optimization (`CallCounter`), and per example before any call is made (`count_calls`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from guided_profile.lm.scripted import ScriptedEngine


@dataclass
class Usage:
    """Counts and seconds of LM calls; records keep it as `usage`, so its fields are a file format."""

    calls: int = 0                # requests the program made (DSPy cache hits included)
    cache_hits: int = 0           # answered from DSPy's answer cache: no model time spent
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens whose KV entries the server reused
    completion_tokens: int = 0
    store_hits: int = 0            # digestions / profiles taken from the profile store instead of the model
    model_seconds: float = 0.0     # the server's own prompt + generation time (in-process models)
    prompt_seconds: float = 0.0    # ... of which computing the prompt (the part not reused)
    generation_seconds: float = 0.0
    truncated: int = 0             # replies cut off at their token limit (one-token scoring calls excluded)
    repetition_stops: int = 0      # replies ended early because they had fallen into a loop (lm/repetition.py)
    empty_replies: int = 0         # replies with no text at all (the step's output is then empty)

    def add(self, other: Usage) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class UsageMeter:
    """Measures the LM calls made inside a `with` block (one example at a time, one thread)."""

    def __init__(self, lm: dspy.BaseLM):
        self.lm = lm
        self.usage = Usage()
        self.steps: list[dict[str, int]] = []

    def __enter__(self) -> UsageMeter:
        self.lm.history.clear()  # we own this LM; clearing keeps the slice below exact and memory flat
        return self

    def __exit__(self, *exc) -> None:
        for entry in self.lm.history:
            step = usage_of([entry])
            self.usage.add(step)
            self.steps.append(step.to_dict())


def usage_of(entries: list[dict]) -> Usage:
    """Total cost of DSPy LM history entries (an entry without usage was a DSPy cache hit)."""
    total = Usage()
    for entry in entries:
        usage = entry.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        response = entry.get("response")
        timings = {}
        if usage:  # a cache hit replays the old response's timings, but took no model time now
            timings = (getattr(response, "provider_data", None) or {}).get("timings", {})
        prompt_seconds, generation_seconds = timings.get("prompt_ms", 0) / 1000, timings.get("predicted_ms", 0) / 1000
        looped = bool(usage and (getattr(response, "provider_data", None) or {}).get("repetition_stop"))
        one_token = (entry.get("kwargs") or {}).get("max_tokens") == 1  # scoring: cut short on purpose
        cut = getattr(response, "finish_reason", None) == "length" and not one_token
        text = getattr(response, "text", None)
        empty = isinstance(text, str) and not text.strip()
        total.add(Usage(calls=1, cache_hits=int(not usage), prompt_tokens=usage.get("prompt_tokens") or 0,
                        cached_prompt_tokens=details.get("cached_tokens") or 0,
                        completion_tokens=usage.get("completion_tokens") or 0,
                        model_seconds=prompt_seconds + generation_seconds, prompt_seconds=prompt_seconds,
                        generation_seconds=generation_seconds, truncated=int(cut),
                        repetition_stops=int(looped), empty_replies=int(empty)))
    return total


def usage_delta(after: Usage, before: Usage) -> Usage:
    return Usage(**{k: v - getattr(before, k) for k, v in after.to_dict().items()})


class CallCounter(BaseCallback):
    """Counts the LM calls of one model (and of its copies, which inherit the callback).

    Read from the LM's history entry of each call, like `UsageMeter`: `n` completions are `n`
    requests, and an entry without usage was answered from DSPy's cache.  The history is left as it
    is (DSPy caps it), so a `UsageMeter` can still measure one example inside an optimization.
    """

    def __init__(self) -> None:
        self.usage = Usage()
        # Tokens a call costs even when DSPy's cache answered it (then taken from the first answer
        # seen in this process, else estimated at 4 characters a token): what a program spends per
        # example should not depend on what an earlier trial happened to ask.
        self.tokens = 0
        self._token_table: dict[str, int] = {}
        self._lms: dict[str, Any] = {}
        self._last: dict[int, Any] = {}
        self._lock = threading.Lock()

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            self._lms[call_id] = instance

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            lm = self._lms.pop(call_id, None)
            history = getattr(lm, "history", None) or []
            entry = history[-1] if history else None
            if entry is None or entry is self._last.get(id(lm)):
                self.usage.add(Usage(calls=1))  # a call that failed before it was recorded
                return
            self._last[id(lm)] = entry
            spent = usage_of([entry])
            n = int((entry.get("kwargs") or {}).get("n") or 1)  # one request for n completions counts n calls
            spent.calls, spent.cache_hits = n * spent.calls, n * spent.cache_hits
            self.usage.add(spent)
            self.tokens += self._tokens_of(entry)

    def _tokens_of(self, entry: dict) -> int:
        usage = entry.get("usage") or {}
        key = json.dumps([entry.get("messages") or entry.get("prompt"), entry.get("kwargs")], sort_keys=True,
                         default=str)
        if usage:
            self._token_table[key] = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
        elif key not in self._token_table:
            text = json.dumps(entry.get("messages") or entry.get("prompt"), default=str)
            self._token_table[key] = (len(text) + len(json.dumps(entry.get("outputs"), default=str))) // 4
        return self._token_table[key]

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(**self.usage.to_dict())


def attach_counter(lm: dspy.BaseLM, tokens_like: CallCounter | None = None) -> CallCounter:
    """A new counter on `lm` (kept by the copies made from it from now on); with `tokens_like`, it prices a
    DSPy cache hit from that counter's table of answers seen, so counters on copies agree on every cost."""
    counter = CallCounter()
    if tokens_like is not None:
        counter._token_table = tokens_like._token_table
    lm.callbacks = [*(getattr(lm, "callbacks", None) or []), counter]
    return counter


def _letters_first(system: str, user: str) -> dict[str, float]:
    return {"A": -0.1, "B": -1.0, "C": -2.0, "D": -3.0, "E": -4.0}


def count_calls(run: Callable[[dspy.BaseLM], object]) -> int:
    """LM calls `run(lm)` makes, answered at once by a scripted engine (no model, no cache).

    Every reply is a letter with log-probabilities, so choice scoring takes its usual path and
    every other step gets a non-empty answer: the count is the one a real model would cause.
    """
    engine = ScriptedEngine(_letters_first)
    run(dspy.LM("fake/probe", engine=engine, cache=False))
    return len(engine.requests)
