"""What each example cost: LM calls, prompt / cached / generated tokens, read from DSPy's LM history."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import dspy


@dataclass
class Usage:
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
        one_token = (entry.get("kwargs") or {}).get("max_tokens") == 1  # scoring: cut short on purpose
        cut = getattr(response, "finish_reason", None) == "length" and not one_token
        text = getattr(response, "text", None)
        empty = isinstance(text, str) and not text.strip()
        total.add(Usage(calls=1, cache_hits=int(not usage), prompt_tokens=usage.get("prompt_tokens") or 0,
                        cached_prompt_tokens=details.get("cached_tokens") or 0,
                        completion_tokens=usage.get("completion_tokens") or 0,
                        model_seconds=prompt_seconds + generation_seconds, prompt_seconds=prompt_seconds,
                        generation_seconds=generation_seconds, truncated=int(cut),
                        empty_replies=int(empty)))
    return total
