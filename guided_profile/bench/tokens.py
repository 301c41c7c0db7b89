"""Where a run's tokens go, step by step, and the ideal floor those steps could not go below.

A step's prompt holds the person's history, re-encoded model outputs (the digestion in the profile
step, the profile in the answer step), the question with its options, and instructions (the step's
own instruction plus everything a layout adds: preamble, chat template, field headers).  Content is
counted by tokenizing each piece alone; instructions are the rest of the prompt.  Cached tokens are
a prefix of the prompt: they are taken off the front in layout order (the lead before the history,
the history, outputs, options, the remaining instructions; in the options-last prompt layout the
instructions before the options), so only computed tokens are attributed.

The ideal layout, independent of this project's prompts: per user, the history once, each step's
own instruction once, the question and options once, every output generated once and never read
again (it stays in the model's cache), and one token per rotation to score the options.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from guided_profile.lm.repetition import first_loop_end
from guided_profile.programs.adapter import DEFAULT_LAYOUT, OPTIONS_LAST
from guided_profile.programs.answer import lettered

CATEGORIES = ("history", "instructions", "outputs", "options", "generated")
DEFAULT_CHARS_PER_TOKEN = 4.0


class TokenCounter:
    """Tokens of a text: the model's own tokenizer when the engine exposes one, else an estimate
    calibrated on the run's generated text (llama.cpp counts those tokens exactly)."""

    def __init__(self, count: Callable[[str], int] | None = None, chars_per_token: float = DEFAULT_CHARS_PER_TOKEN):
        self._count = count
        self.chars_per_token = chars_per_token
        self._seen: dict[str, int] = {}

    @property
    def name(self) -> str:
        if self._count is not None:
            return "model tokenizer"
        return f"estimate: {self.chars_per_token:.2f} characters a token (the run's generated text)"

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        if text not in self._seen:
            self._seen[text] = self._count(text) if self._count else round(len(text) / self.chars_per_token)
        return self._seen[text]


def make_counter(engine: Any, records: list[dict]) -> TokenCounter:
    """The engine's tokenizer if it answers, else an estimate from the records' digestions and profiles."""
    count = getattr(engine, "count_tokens", None)
    if count is not None:
        try:
            count("tokenizer check")
            return TokenCounter(count)
        except Exception:  # no tokenizer route (e.g. the server does not listen): estimate instead
            pass
    chars = tokens = 0
    for record in records:
        for kind, step in zip(step_kinds(record), record["steps"], strict=False):
            if kind in ("digest", "profile") and step.get("completion_tokens"):
                chars += len(record.get("guidance" if kind == "digest" else "profile") or "")
                tokens += step["completion_tokens"]
    return TokenCounter(None, chars / tokens if chars and tokens else DEFAULT_CHARS_PER_TOKEN)


def step_kinds(record: dict) -> list[str]:
    """Each LM call's step, in order: digestion, profile (when the program writes one), then answers."""
    before = ["digest", "profile"] if record.get("profile") is not None else ["digest"]
    return (before + ["answer"] * len(record["steps"]))[: len(record["steps"])]


def content_tokens(record: dict, count: TokenCounter) -> dict[str, int]:
    """Tokens of each piece of content an example's prompts can hold."""
    inputs = record["inputs"]
    options = inputs.get("options") or []
    question = inputs.get("question", "") + ("\n" + lettered(options) if options else "")
    return {"history": count(inputs.get("history", "")), "options": count(question),
            "guidance": count(record.get("guidance") or ""), "profile": count(record.get("profile") or "")}


def step_content(kind: str, content: dict[str, int], switches: dict[str, bool]) -> dict[str, int]:
    """History, re-encoded outputs and options in one step's prompt (GPG's steps; see `programs.modules`)."""
    if kind == "digest":
        return {"history": content["history"], "outputs": 0, "options": 0}
    if kind == "profile":
        return {"history": content["history"], "outputs": content["guidance"], "options": 0}
    outputs = content["guidance"] * switches["include_guidance"] + content["profile"] * switches["include_profile"]
    return {"history": content["history"] * switches["include_context"], "outputs": outputs,
            "options": content["options"]}


def split_step(step: dict, content: dict[str, int], lead: int, prompt_layout: str = DEFAULT_LAYOUT) -> dict[str, int]:
    """One step's computed prompt tokens by category (cached tokens taken off the front), and its generated."""
    instructions = max(0, step["prompt_tokens"] - sum(content.values()))
    lead = min(lead, instructions)
    tail = [("options", content["options"]), ("instructions", instructions - lead)]
    if prompt_layout == OPTIONS_LAST:  # the instruction is read before the options (the question's tokens aside)
        tail.reverse()
    layout = [("instructions", lead), ("history", content["history"]), ("outputs", content["outputs"]), *tail]
    cached = step["cached_prompt_tokens"]
    computed = dict.fromkeys(CATEGORIES, 0)
    for category, size in layout:
        reused = min(cached, size)
        cached -= reused
        computed[category] += size - reused
    computed["generated"] = step["completion_tokens"]
    return computed


def lead_tokens(records: Iterable[dict]) -> int:
    """Prompt tokens before the history that every user's first step shares (preamble, template): the
    fewest any first step reused from the user before (0 without prompt caching)."""
    reused = [r["steps"][0]["cached_prompt_tokens"] for r in records if r["steps"]]
    return min((n for n in reused if n > 0), default=0)


def breakdown(records: list[dict], count: TokenCounter, switches: dict[str, bool],
              prompt_layout: str = DEFAULT_LAYOUT) -> dict[str, dict[str, int]]:
    """Computed tokens per step kind and category, summed over the records (plus `calls` and `cached`)."""
    lead = lead_tokens(records)
    total: dict[str, dict[str, int]] = {}
    for record in records:
        content = content_tokens(record, count)
        for kind, step in zip(step_kinds(record), record["steps"], strict=True):
            row = total.setdefault(kind, dict.fromkeys((*CATEGORIES, "cached", "calls"), 0))
            for category, n in split_step(step, step_content(kind, content, switches), lead, prompt_layout).items():
                row[category] += n
            row["cached"] += step["cached_prompt_tokens"]
            row["calls"] += 1
    return total


def ideal_floor(runs: list[list[dict]], contents: dict[str, dict[str, int]], instructions: dict[str, int], *,
                scored: bool, rotations: int) -> dict[str, Any]:
    """Tokens of the ideal layout, per step kind and in total, for the examples every run has.

    `contents` are `content_tokens` per example (history and options are the same in every run),
    `instructions` each step's own instruction in tokens.  Generated tokens per step are the fewest
    any run needed for that example's step (batching and adapters change outputs; the floor takes
    the shortest), a runaway counted only up to where the repetition stop would have ended it
    (`needed_tokens`).  In score mode each rotation costs one prompt token and the answer generates nothing.
    """
    by_example = [{r["example_id"]: r for r in run if not r.get("error")} for run in runs]
    shared = sorted(set.intersection(*(set(d) for d in by_example)) & set(contents)) if by_example else []
    per_kind = {k: dict.fromkeys(CATEGORIES, 0) for k in ("digest", "profile", "answer")}
    for eid in shared:
        kinds = step_kinds(by_example[0][eid])
        per_kind["digest"]["history"] += contents[eid]["history"]  # read once, by the first step
        per_kind["answer"]["options"] += contents[eid]["options"] + (rotations if scored else 0)
        for kind in dict.fromkeys(kinds):
            per_kind[kind]["instructions"] += instructions.get(kind, 0)
            if kind == "answer" and scored:
                continue
            index = kinds.index(kind)
            per_kind[kind]["generated"] += min(needed_tokens(d[eid], kind, index) for d in by_example
                                               if len(d[eid]["steps"]) > index)
    prompt = sum(v for row in per_kind.values() for k, v in row.items() if k != "generated")
    generated = sum(row["generated"] for row in per_kind.values())
    return {"n": len(shared), "per_step": per_kind, "prompt_tokens": prompt, "generated_tokens": generated}


OUTPUT_FIELD = {"digest": "guidance", "profile": "profile"}  # where a record keeps each step's output text


def needed_tokens(record: dict, kind: str, index: int) -> int:
    """The generated tokens of the record's step `index` that were needed: all of them, but for a digestion
    or profile that loops, those before the repetition stop would have ended it (its share of the text)."""
    tokens = record["steps"][index]["completion_tokens"]
    text = record.get(OUTPUT_FIELD.get(kind, "")) or ""
    end = first_loop_end(text) if text else None
    return tokens if end is None else min(tokens, math.ceil(tokens * end / len(text)))


def floor_seconds(floor: dict[str, Any], speeds: dict[str, float]) -> float:
    """The ideal layout's tokens at the best measured speeds."""
    if not speeds["prompt_tokens_per_s"] or not speeds["generated_tokens_per_s"]:
        return float("nan")
    return round(floor["prompt_tokens"] / speeds["prompt_tokens_per_s"]
                 + floor["generated_tokens"] / speeds["generated_tokens_per_s"], 1)
