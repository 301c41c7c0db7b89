"""What the free-text tasks (tweet paraphrasing, dialogue replies) share: a reference text as gold,
replies scored by several metrics, and a summary that averages each of them."""

from __future__ import annotations

from typing import Any, ClassVar

from guided_profile.tasks.base import Task


class TextTask(Task):
    """A task whose gold is a reference text and whose reply is free text of about a tweet's length."""

    answer_max_tokens = 96  # a tweet is at most 280 characters (~70 tokens); a chat reply is shorter
    # The paper's GPG row for tweets gives the final step the history, the guidance answer and the profile
    # (PC + G + PP); it singles out no other row for dialogue, which takes the same.
    gpg_switches = {"include_context": True, "include_guidance": True, "include_profile": True}
    metric_keys: ClassVar[tuple[str, ...]]  # the per-example metrics the summary averages, in table order
    optional_keys: ClassVar[tuple[str, ...]] = ()  # metrics some examples lack (None): averaged over the rest

    def __init_subclass__(cls, **kwargs: Any):
        """A text task's columns and optimisable metrics follow from its `metric_keys`, the way `summarize`
        reports them: each mean, with `KEY_n` after an optional one; every metric each example has can be
        an objective, the reported one first."""
        super().__init_subclass__(**kwargs)
        if "metric_keys" in cls.__dict__:
            cls.columns = tuple(name for key in cls.metric_keys
                                for name in (key, *((f"{key}_n",) if key in cls.optional_keys else ())))
            always = [key for key in cls.metric_keys if key not in cls.optional_keys]
            cls.per_example_metrics = (cls.objective, *(key for key in always if key != cls.objective))

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
