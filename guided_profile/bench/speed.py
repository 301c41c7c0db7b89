"""How fast the machine runs the model: the speeds the ideal floor is priced at, and what they depend on.

Prompt tokens are priced at the best prompt (prefill) rate measured: a long fixed prompt, and the
runs' own history steps.  Generated tokens are priced at the best aggregate decode rate over 1 to
4 concurrent sequences (continuous batching: CPU decoding is bound by memory bandwidth, so several
sequences share one pass over the weights).  The floor takes the best of every measurement, so it
is never flattering to a configuration.
"""

from __future__ import annotations

import os
import platform
import threading
import uuid
from pathlib import Path
from typing import Any

# About 500 tokens of fixed text for the prompt probe.
_PROBE = " ".join(f"item {i} costs {i * 7 % 100} dollars;" for i in range(70))
DECODE_PROBE_TOKENS = 64


def _fresh_body(max_tokens: int, text: str) -> dict[str, Any]:
    nonce = uuid.uuid4().hex  # first in the prompt, so nothing is reused from an earlier request
    return {"messages": [{"role": "user", "content": f"{nonce}\n{text}"}], "max_tokens": max_tokens,
            "temperature": 0.0, "ignore_eos": True}


def measure_speed(engine, repeats: int = 3) -> dict[str, float]:
    """Median prompt and single-sequence generation tokens/s over `repeats` fresh (never cached) requests."""
    prompt_speeds, gen_speeds = [], []
    for _ in range(repeats):
        timings = engine.raw(_fresh_body(128, f"{_PROBE}\nContinue the list."))["timings"]
        prompt_speeds.append(timings["prompt_per_second"])
        gen_speeds.append(timings["predicted_per_second"])
    return {"prompt_tokens_per_s": round(sorted(prompt_speeds)[repeats // 2], 1),
            "generated_tokens_per_s": round(sorted(gen_speeds)[repeats // 2], 1)}


def aggregate_decode(engine, sequences: int) -> float:
    """Generated tokens/s of `sequences` requests decoded at once in the engine's slots.

    Each request's decoding time is llama.cpp's own (`predicted_ms`); the requests run together, so
    the total is divided by the longest of them (a slight overestimate when they start apart: the
    floor then errs low, against us).
    """
    results: list[dict] = []
    lock = threading.Lock()

    def one() -> None:
        timings = engine.raw(_fresh_body(DECODE_PROBE_TOKENS, "Count from 1 to 200, one number a line."))["timings"]
        with lock:
            results.append(timings)

    threads = [threading.Thread(target=one) for _ in range(sequences)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    longest = max(t["predicted_ms"] for t in results) / 1000
    return round(sum(t["predicted_n"] for t in results) / longest, 1) if longest else 0.0


def decode_rates(engine) -> dict[str, float]:
    """Aggregate decode tokens/s for 1..min(4, slots) concurrent sequences, keyed by the count."""
    return {str(n): aggregate_decode(engine, n) for n in range(1, min(4, engine.n_parallel) + 1)}


def run_speed(records: list[dict[str, Any]], min_tokens: int = 8) -> dict[str, float] | None:
    """The model's speed on a run's own requests, from llama.cpp's timings of each step.

    Prompt speed comes from each example's first step (its history, the biggest block computed at
    once); generation speed from steps that generated at least `min_tokens` (a one-token reply
    times mostly the request's setup).  None when the records carry no split timings.
    """
    first = [r["steps"][0] for r in records if r["steps"]]
    computed = sum(s["prompt_tokens"] - s["cached_prompt_tokens"] for s in first)
    prompt_seconds = sum(s.get("prompt_seconds", 0.0) for s in first)
    talkative = [s for r in records for s in r["steps"] if s["completion_tokens"] >= min_tokens]
    generated = sum(s["completion_tokens"] for s in talkative)
    generation_seconds = sum(s.get("generation_seconds", 0.0) for s in talkative)
    if not prompt_seconds or not generation_seconds:
        return None
    return {"prompt_tokens_per_s": round(computed / prompt_seconds, 1),
            "generated_tokens_per_s": round(generated / generation_seconds, 1)}


def floor_speeds(measured: list[dict[str, Any]]) -> dict[str, float]:
    """The best prompt rate and the best generation rate among every measurement of every configuration.

    Each measurement may hold `probe` and `run` speeds (prompt and generated tokens/s) and `decode`
    (aggregate generated tokens/s by concurrent sequences).
    """
    prompt = [m[k]["prompt_tokens_per_s"] for m in measured for k in ("probe", "run") if m.get(k)]
    generated = [m[k]["generated_tokens_per_s"] for m in measured for k in ("probe", "run") if m.get(k)]
    generated += [rate for m in measured for rate in (m.get("decode") or {}).values()]
    return {"prompt_tokens_per_s": max(prompt, default=0.0), "generated_tokens_per_s": max(generated, default=0.0)}


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU's model name and flags (what llama.cpp's kernels choose from), as the kernel reports them."""
    try:
        text = path.read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": []}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)  # the last CPU's; all alike
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return {"model": fields.get("model name", platform.machine()), "flags": sorted(fields.get("flags", "").split())}


def machine() -> dict[str, Any]:
    """What the speeds depend on, recorded beside them."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "cpu": cpu_info(),
            "memory_gib": round(memory / 2**30, 1) if memory else None}
