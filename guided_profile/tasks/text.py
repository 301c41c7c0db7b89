"""What the free-text tasks (tweet paraphrasing, dialogue replies) share: a reference text as gold,
replies scored by several metrics, and a summary that averages each of them."""

from __future__ import annotations

from typing import Any, ClassVar

from guided_profile.tasks.base import Task


class TextTask(Task):
    """A task whose gold is a reference text and whose reply is free text of about a tweet's length."""

    answer_max_tokens = 96  # a tweet is at most 280 characters (~70 tokens); a chat reply is shorter
    metric_keys: ClassVar[tuple[str, ...]]  # the per-example metrics the summary averages, in table order
    optional_keys: ClassVar[tuple[str, ...]] = ()  # metrics some examples lack (None): averaged over the rest

    def summarize(self, scores: list[dict[str, Any]]) -> dict[str, Any]:
        """The mean of each metric; an optional one also reports over how many examples (`KEY_n`)."""
        row: dict[str, Any] = {}
        for key in self.metric_keys:
            values = [s[key] for s in scores if s.get(key) is not None]
            row[key] = sum(values) / len(values) if values else None
            if key in self.optional_keys:
                row[f"{key}_n"] = len(values)
        row["n"] = len(scores)
        return row
