"""What a task declares, and the registry that maps task names to tasks.

A task is data for the programs: instructions (the guidance question among them), how an
`Example` becomes the two text inputs every program takes, how a reply is scored, and where its
data lives.  Programs, the runner and optimizers only ever talk to this interface, so adding a
task is one module under `tasks/` and its class in `tasks/__init__.py:BUILT_IN` (the README's
"Adding a task" lists the steps).
"""

from __future__ import annotations

import inspect
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from guided_profile.datasets.example import Example, option_letters
from guided_profile.errors import ConfigError

UNFITTED_MAX_TOKENS = 256  # the digestion and profile caps every run used before caps were fitted

DEFAULT_MAX_HISTORY_CHARS = 6000  # about 1,500 tokens: leaves room for profile, question and reply


def history_chars_for_window(context_tokens: int) -> int:
    """The history budget for a model with a `context_tokens` window: half the window, counted at 3
    characters a token (English runs nearer 4, so the estimate errs on the side of fitting); the
    other half is for instructions, guidance, profile, options and the reply."""
    return context_tokens // 2 * 3


_LINE_BREAKS = re.compile(r"\s*[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]\s*")


def one_line(item: str) -> str:
    """An item with every line break (and the spaces around it) turned into one space.

    A history is one numbered line per item: a title or tweet holding a blank line would otherwise
    end its entry early and could plant a paragraph that reads like an instruction.  Spaces inside a
    line are kept as written (tweets use them, and records of earlier runs must read the same).
    """
    return _LINE_BREAKS.sub(" ", item)


def cut_history(items: Iterable[str], max_chars: int) -> tuple[list[str], bool]:
    """Keep the most recent items whose lines fit in `max_chars`; older items are dropped first.

    The newest item is always kept (shortened to `max_chars` if it alone is too long), so no
    example ever goes to the model without history.  Returns the kept items and whether any cut
    happened.
    """
    items = list(items)
    kept: list[str] = []
    used, shortened = 0, False
    for item in reversed(items):
        cost = len(item) + 6  # numbering and newline
        if kept and used + cost > max_chars:
            break
        if cost > max_chars:  # only ever the newest item, alone
            item, shortened = item[: max(1, max_chars - 6)], True
        kept.append(item)
        used += cost
    kept.reverse()
    return kept, shortened or len(kept) < len(items)


def numbered_history(items: Iterable[str], max_chars: int) -> tuple[str, bool]:
    """Items as the numbered lines every step reads, cut by `cut_history`; also says whether it was cut.

    One function for the task's history and a retriever's kept items, so retrieval changes which items
    a step sees and nothing else about how they read (the character cut comes after retrieval).
    """
    kept, was_cut = cut_history(map(one_line, items), max_chars)
    return "\n".join(f"{i}. {item}" for i, item in enumerate(kept, 1)), was_cut


def history_items(text: str) -> list[str]:
    """The items of a `numbered_history` text (as records keep it), without their numbers."""
    return [re.sub(r"^\d+\. ", "", line, count=1) for line in text.splitlines()]


def whole_number(name: str, value: object, minimum: int = 1) -> int:
    """A task option that must be a whole number >= `minimum` (e.g. from --task-option KEY=VALUE)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"task option {name} must be a whole number of at least {minimum}, got {value!r}")
    return value


class ProgramInputs(dict):
    """A program's keyword arguments (`program(**inputs)`; records keep them as this plain dict), plus
    `history_cut`: whether the history was cut to fit, which every record states, read here so the
    history is built once."""

    def __init__(self, fields: dict[str, Any], *, history_cut: bool):
        super().__init__(fields)
        self.history_cut = history_cut


class Task(ABC):
    """One personalization task. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    guidance_question: ClassVar[str]             # the paper's hand-written guidance question (the digest step's)
    profile_instruction: ClassVar[str]           # unguided profile (PG)
    guided_profile_instruction: ClassVar[str]    # profile steered by the guidance (GPG)
    answer_instruction: ClassVar[str]
    answer_desc: ClassVar[str] = ""
    answer_max_tokens: ClassVar[int] = 128
    # Token caps of the digestion and profile steps.  Each task also declares caps fitted on its measured
    # outputs (experiments/token_caps.py: runaways stop there, no output that ended by itself is cut), used
    # with the task option stop_runaways=true together with the engine's repetition stop: off by default
    # until a paired accuracy check on real users says they change nothing but cost (issue 20).
    digest_max_tokens: ClassVar[int] = UNFITTED_MAX_TOKENS
    profile_max_tokens: ClassVar[int] = UNFITTED_MAX_TOKENS
    fitted_max_tokens: ClassVar[dict[str, int]] = {}
    has_options: ClassVar[bool] = False          # answers are one of `example.options` (choice scoring applies)
    gpg_switches: ClassVar[dict[str, bool]]      # the final step's inputs in the paper's main GPG row
    objective: ClassVar[str]                     # the summary metric tables report (and text tasks optimise)
    columns: ClassVar[tuple[str, ...]]           # summary keys tables show as metric columns, in order
    per_example_metrics: ClassVar[tuple[str, ...]]  # what `score` gives per example that `--objective` may name
    data_subdir: ClassVar[str]                   # real data, relative to the data root
    sample_subdir: ClassVar[str]                 # committed sample, relative to datasets/
    cold_start_fallback: ClassVar[str] = "dg-no-pc"  # answers users with too short a history (issue 21)
    # What `run`, `compare` and `optimize` retrieve when --retriever is not given: (retriever, k), k None for
    # every item; a task changes it only on dev evidence (experiments/results/retrieval.md).
    default_retrieval: ClassVar[tuple[str, int | None]] = ("recent", None)

    def __init__(self, seed: int = 0, max_history_chars: int = DEFAULT_MAX_HISTORY_CHARS,
                 stop_runaways: bool = False, min_history_items: int = 1, include_empty_history: bool = False):
        whole_number("max_history_chars", max_history_chars)
        self.min_history_items = whole_number("min_history_items", min_history_items, minimum=0)
        if not isinstance(include_empty_history, bool):
            raise ConfigError(f"task option include_empty_history must be true or false, got {include_empty_history!r}")
        self.include_empty_history = include_empty_history
        if not isinstance(stop_runaways, bool):
            raise ConfigError(f"task option stop_runaways must be true or false, got {stop_runaways!r}")
        self.stop_runaways = stop_runaways
        for step, cap in (self.fitted_max_tokens if stop_runaways else {}).items():
            setattr(self, f"{step}_max_tokens", cap)
        self.seed = seed
        self.max_history_chars = max_history_chars

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The settings `--task-option` accepts, with their defaults: read from the constructors, so a
        task's listing cannot drift from what it takes."""
        options: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for param in inspect.signature(init).parameters.values():
                if param.name not in ("self", "seed") and param.default is not param.empty:
                    options[param.name] = param.default
        return options

    def step_max_tokens(self) -> dict[str, int]:
        """Each generating step's token cap, as run configs record them."""
        return {"digest": self.digest_max_tokens, "profile": self.profile_max_tokens, "answer": self.answer_max_tokens}

    @abstractmethod
    def load(self, path: Path) -> tuple[list[Example], dict[str, int]]:
        """All examples built from the data at `path`, and counts of what was skipped and why."""

    def history_text(self, example: Example) -> tuple[str, bool]:
        """The history as numbered lines, cut by `cut_history`; also says whether it was cut."""
        return numbered_history(example.history, self.max_history_chars)

    def is_cold_start(self, example: Example) -> bool:
        """Whether the person has fewer history items than `min_history_items`: such an example is
        answered by `cold_start_fallback` and reported in a row of its own, never prompted with an
        empty profile."""
        return len(example.history) < self.min_history_items

    def question_text(self, example: Example) -> str:
        return example.query

    def retrieval_query(self, example: Example) -> str:
        """What a retriever matches the history items against (`guided_profile.retrieval`).

        By default the example's own query as the data has it: the tweet to rewrite (LaMP-7, without
        the "Paraphrase the following tweet" prefix every example shares), the partner's last
        utterance (dialogue).
        """
        return example.query

    def inputs(self, example: Example, raw: bool = False) -> ProgramInputs:
        """The keyword arguments every program's forward takes, and whether the history was cut to fit.

        With `raw`, also the history's `items` (one line each, uncut) and the retriever's `query`: what
        a program that retrieves needs (`programs/retrieved.py`).  Without, the inputs are those runs
        recorded before retrieval existed, so their records still match on resume.
        """
        history, was_cut = self.history_text(example)
        fields = {"history": history, "question": self.question_text(example), "options": example.options}
        if raw:
            fields |= {"items": [one_line(item) for item in example.history], "query": self.retrieval_query(example)}
        return ProgramInputs(fields, history_cut=was_cut)

    def as_read(self, example: Example) -> dict[str, Any]:
        """The example as the programs read it and are scored against (`inputs` and `gold`), as JSON gives it
        back: what a kept record or score is checked against before reuse, so that an edited data file or a
        task option that changes the history text (`max_history_chars`) or the gold never reuses one."""
        return json.loads(json.dumps({"inputs": self.inputs(example), "gold": example.gold}))

    @abstractmethod
    def score(self, example: Example, answer: str, profile: str | None = None) -> dict[str, Any]:
        """Per-example metrics for a reply; must hold the objective's per-example value.

        `profile` is the profile the program wrote, if any, for tasks that can also judge it.
        """

    @abstractmethod
    def summarize(self, scores: list[dict[str, Any]]) -> dict[str, Any]:
        """Aggregate per-example metrics (each a dict from `score`) into the task's table row: `n` and every
        key of `columns`, in that order (and any extra keys tables do not show)."""

    def score_prediction(self, example: Example, prediction: Any) -> dict[str, Any]:
        """`score` of a program's prediction (its answer and profile); choice tasks also read its
        option probabilities.  What records keep as `metrics` and optimizers read their objective from."""
        return self.score(example, prediction.answer, prediction.get("profile"))

    def objectives(self, answer_mode: str) -> tuple[str, ...]:
        """The per-example metrics an optimizer can maximise (`--objective`) in `answer_mode`."""
        return self.per_example_metrics

    def default_objective(self, answer_mode: str) -> str:
        """What optimizers maximise unless told otherwise: the task's reported objective."""
        return self.objective

    def check_objective(self, objective: str, answer_mode: str) -> str:
        """`objective`, if this task can optimise it in `answer_mode`; else one clear error."""
        allowed = self.objectives(answer_mode)
        if objective not in allowed:
            raise ConfigError(f"objective {objective!r} is not a per-example metric of task {self.name!r} in "
                              f"{answer_mode} mode; choose one of {', '.join(allowed)}")
        return objective

    def metric(self, example: Example, answer: str, profile: str | None = None) -> float:
        """The reported objective for one example, from the reply alone."""
        return float(self.score(example, answer, profile)[self.objective])

    def feedback_notes(self, example: Example, answer: str) -> list[str]:
        """Task-specific remarks on a reply for a reflecting optimizer (GEPA), beyond the gold and the score."""
        return []


def gold_probability(choice_probs: Sequence[float], gold: str) -> float:
    """The gold option's share of score mode's letter probabilities (one per option, in letter order): also
    how a report reads the objective from records written before it was a metric."""
    return choice_probs[option_letters(len(choice_probs)).index(gold)]


def gold_margin(choice_probs: Sequence[float], gold: str) -> float:
    """The gold option's probability minus the best other option's: above 0 exactly when the answer is right
    (ties aside), so smooth like the probability yet measured where accuracy decides.  On the committed dev
    runs it orders programs as accuracy does somewhat more often than the probability, within the users' noise
    (experiments/objective_check.py)."""
    index = option_letters(len(choice_probs)).index(gold)
    return choice_probs[index] - max(p for i, p in enumerate(choice_probs) if i != index)


class ChoiceTask(Task):
    """A task whose answer is one of a few lettered options (the paper's preference prediction)."""

    objective = "accuracy"
    per_example_metrics = ("accuracy",)
    columns = ("accuracy", "correct", "incorrect", "abstain", "unparseable")  # gold_probability: score mode only
    answer_desc = "the letter of one option"
    answer_max_tokens = 32
    has_options = True

    def parse_choice(self, example: Example, reply: str) -> tuple[str | None, str]:
        """(label, how) from a free reply.

        `how` is "letter" (a leading letter such as "B", "(B)", "B. ...", "Answer: B", or a letter
        named as the choice: "the best option is B", "I would choose (B)"), "text" (the reply quotes
        one option, or several where one contains the others), "abstain" (it apologises, as the paper
        counts it, or names no option) or "unparseable" (empty, or names several unrelated options).
        Letters must be capitals, so the article in "a pair of gloves" is never read as option A.
        """
        text = reply.strip()
        if not text:
            return None, "unparseable"
        if "sorry" in text.lower():
            return None, "abstain"
        letters = "".join(option_letters(len(example.options)))
        for pattern in (rf"^\W*(?:(?i:answer|option|choice)\s*:?\s*)?\(?([{letters}])(?:[.):,]|\s*$)",
                        rf"\b(?i:answer|option|choice)(?:\s+(?i:is|would be))?\s*:?\s*\(?([{letters}])\b",
                        rf"\b(?i:choose|pick|select|go with)\s+(?:(?i:option)\s+)?\(?([{letters}])\b"):
            match = re.search(pattern, text)
            if match:
                return match.group(1), "letter"
        lowered = text.lower()
        named = {letter: option.lower() for letter, option in zip(letters, example.options, strict=True)
                 if option.lower() in lowered}
        # "Pipette tips" names the option "Pipette" too: keep only options no other named option contains.
        kept = [letter for letter, option in named.items()
                if not any(option in other and option != other for other in named.values())]
        if len(kept) == 1:
            return kept[0], "text"
        return (None, "unparseable") if kept else (None, "abstain")

    def retrieval_query(self, example: Example) -> str:
        """The question and every option, one a line: the options (product titles) carry the words a
        relevant past purchase shares, and every option is there, so retrieval favours none of them."""
        return "\n".join((example.query, *example.options))

    def score(self, example: Example, answer: str, profile: str | None = None) -> dict[str, Any]:
        label, how = self.parse_choice(example, answer)
        correct = label == example.gold
        if how in ("abstain", "unparseable"):
            outcome = how
        else:
            outcome = "correct" if correct else "incorrect"
        return {"parsed": label, "parse": how, "outcome": outcome, "accuracy": float(correct)}

    def score_prediction(self, example: Example, prediction: Any) -> dict[str, Any]:
        """`score`, plus in score mode the probability the program gave the gold option
        (`gold_probability`, rotation-averaged and renormalised over the letters): a smooth objective
        that separates two programs on the same users long before their 0/1 accuracies do."""
        metrics = super().score_prediction(example, prediction)
        probs = prediction.get("choice_probs")
        if probs:
            metrics["gold_probability"] = gold_probability(probs, example.gold)
            metrics["gold_margin"] = gold_margin(probs, example.gold)
        elif prediction.get("answer_path") == "fallback-generate":
            # No log-probabilities (the fake model, some endpoints): the one letter generated carries all the
            # mass, so score mode's objectives exist on every path instead of stopping a search midway.
            metrics["gold_probability"] = metrics["accuracy"]
            metrics["gold_margin"] = 2 * metrics["accuracy"] - 1
        return metrics

    def objectives(self, answer_mode: str) -> tuple[str, ...]:
        return ("gold_probability", "gold_margin", "accuracy") if answer_mode == "score" else ("accuracy",)

    def default_objective(self, answer_mode: str) -> str:
        """In score mode the gold option's probability (smooth), in generate mode accuracy (all there is)."""
        return "gold_probability" if answer_mode == "score" else "accuracy"

    def summarize(self, scores: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(scores)
        counts = {k: sum(s["outcome"] == k for s in scores) for k in ("correct", "incorrect", "abstain", "unparseable")}
        row = {"n": n, "accuracy": counts["correct"] / n if n else None, **counts}
        if scores and all("gold_probability" in s for s in scores):  # score mode; older records lack it
            row["gold_probability"] = sum(s["gold_probability"] for s in scores) / n
        return row


TASKS: dict[str, type[Task]] = {}


REQUIRED_ATTRIBUTES = ("name", "description", "guidance_question", "profile_instruction", "guided_profile_instruction",
                       "answer_instruction", "gpg_switches", "objective", "per_example_metrics", "columns",
                       "data_subdir", "sample_subdir")


def register_task(cls: type[Task]) -> type[Task]:
    """Make a task available by its `name` (also usable as a class decorator).  A task missing one of the
    declarations every program, table and loader reads is refused here, not at its first run."""
    missing = [attr for attr in REQUIRED_ATTRIBUTES if not hasattr(cls, attr)]
    if missing:
        raise ConfigError(f"task class {cls.__name__} does not declare {', '.join(missing)}")
    if cls.objective not in cls.columns:
        raise ConfigError(f"task {cls.name!r}: its objective {cls.objective!r} is not one of its columns")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, **kwargs: Any) -> Task:
    import guided_profile.tasks  # noqa: F401  (registers the built-in tasks)

    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)
