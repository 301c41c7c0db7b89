"""What every optimizer shares: one interface, a registry by name, call counting and budgets.

An optimizer is configured once (`get_optimizer(name, task=..., task_lm=..., **settings)`) and used
the same way whatever it is: `plan(...)` says how many LM calls it expects before any is made,
`compile(program, trainset, valset, metric)` returns the tuned program.  The implementations are
thin wrappers around DSPy's own optimizers (MIPROv2, GEPA, COPRO) plus one Optuna search of our
own; they differ only in `defaults`, `_plan` and `_search`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dspy
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.signatures.signature import Signature
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import AdapterParseError

from guided_profile.datasets.example import Example, option_letters
from guided_profile.errors import ConfigError
from guided_profile.lm.accounting import Usage, usage_of
from guided_profile.programs.adapter import FIELD_MARKER, PersonalAdapter
from guided_profile.tasks.base import Task


class BudgetError(ConfigError):
    """The expected number of LM calls does not fit the budget: nothing was run."""


# -- which adapter formats which call ----------------------------------------------------------------

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


# -- counting calls ------------------------------------------------------------------------------------

class CallCounter(BaseCallback):
    """Counts the LM calls of one model (and of its copies, which inherit the callback).

    Read from the LM's history entry of each call, like `accounting.UsageMeter`: `n` completions
    are `n` requests, and an entry without usage was answered from DSPy's cache.  The history is
    cleared as it is read, so a long optimization keeps memory flat.
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
            usage = entry.get("usage") or {}
            key = json.dumps([entry.get("messages") or entry.get("prompt"), entry.get("kwargs")], sort_keys=True,
                             default=str)
            if usage:
                self._token_table[key] = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
            elif key not in self._token_table:
                text = json.dumps(entry.get("messages") or entry.get("prompt"), default=str)
                self._token_table[key] = (len(text) + len(json.dumps(entry.get("outputs"), default=str))) // 4
            self.tokens += self._token_table[key]
            history.clear()  # read: keeps memory flat, and stops DSPy's debug logging from re-printing it

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(**self.usage.to_dict())


def attach_counter(lm: dspy.BaseLM) -> CallCounter:
    counter = CallCounter()
    lm.callbacks = [*(getattr(lm, "callbacks", None) or []), counter]
    return counter


def usage_delta(after: Usage, before: Usage) -> Usage:
    return Usage(**{k: v - getattr(before, k) for k, v in after.to_dict().items()})


# -- data and metric --------------------------------------------------------------------------------

def to_dspy(task: Task, examples: Sequence[Example]) -> list[dspy.Example]:
    """Our examples as DSPy optimizers take them: the program's inputs, the gold answer, the id."""
    out = []
    for ex in examples:
        inputs = task.inputs(ex)
        out.append(dspy.Example(**inputs, answer=ex.gold, example_id=ex.example_id).with_inputs(*inputs))
    return out


class TaskMetric:
    """The task's objective as DSPy optimizers call it, with text feedback for GEPA.

    `__call__` takes DSPy's (gold, pred, trace) and GEPA's extra (pred_name, pred_trace); the score
    is `task.metric(example, answer, profile)` of the original example, found by its id.
    """

    def __init__(self, task: Task, examples: Sequence[Example]):
        self.task = task
        self.by_id = {ex.example_id: ex for ex in examples}
        self.on_score: Callable[[float], None] | None = None  # progress hook, set by an optimizer

    def example(self, gold: Any) -> Example:
        key = gold.example_id if hasattr(gold, "example_id") else gold["example_id"]
        if key not in self.by_id:
            raise KeyError(f"example {key!r} is not in the metric's examples")
        return self.by_id[key]

    def score(self, gold: Any, pred: Any) -> float:
        answer = getattr(pred, "answer", None) if pred is not None else None
        if answer is None:
            return 0.0
        return self.task.metric(self.example(gold), answer, pred.get("profile"))

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                 pred_trace: Any = None) -> float:
        value = self.score(gold, pred)
        if self.on_score is not None:
            self.on_score(value)
        return value

    def feedback(self, gold: Any, pred: Any, pred_name: str | None = None) -> str:
        """What went wrong, in words a reflecting model can use: the gold answer and the reply."""
        example = self.example(gold)
        answer = (getattr(pred, "answer", None) or "").strip()
        details = self.task.score(example, answer, pred.get("profile") if pred is not None else None)
        value = float(details[self.task.objective])
        lines = [f"Score {value:.2f} ({self.task.objective})."]
        if example.options:
            labelled = zip(option_letters(len(example.options)), example.options, strict=True)
            gold_text = dict(labelled).get(example.gold, "")
            lines.append(f"The right answer was {example.gold} ({gold_text}); the program replied {answer!r}"
                         f" ({details.get('outcome', 'scored')}).")
        else:
            lines.append(f"The reference answer was: {example.gold[:400]!r}; the program replied {answer[:400]!r}.")
        lines += self.task.feedback_notes(example, answer)
        if pred is not None and pred_name:
            if pred_name.startswith("digest") and pred.get("guidance"):
                lines.append(f"The guidance question was answered with: {pred.get('guidance')[:300]!r}. A better "
                             "question makes this answer bring out what predicts the right answer.")
            elif pred_name.startswith("write_profile") and pred.get("profile"):
                lines.append(f"The profile written was: {pred.get('profile')[:300]!r}.")
        return " ".join(lines)

    def gepa(self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
             pred_trace: Any = None) -> dspy.Prediction:
        score = self(gold, pred, trace)
        return dspy.Prediction(score=score, feedback=self.feedback(gold, pred, pred_name))


# -- the shape of a guidance question -------------------------------------------------------------

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


def as_guidance(text: str | None) -> str | None:
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


# -- probing a program's calls per example ----------------------------------------------------------

def _probe_rule(system: str, user: str) -> dict[str, float]:
    return {"A": -0.1, "B": -1.0, "C": -2.0, "D": -3.0, "E": -4.0}


def calls_per_example(program: dspy.Module, task: Task, example: Example) -> int:
    """LM calls the program makes on one example, counted on a scripted model (no real call).

    Measured rather than derived, so answer modes (choice scoring makes one call per rotation)
    and switches are accounted for without the optimizers knowing about them.
    """
    from guided_profile.lm.fake import FakeEngine

    engine = FakeEngine(_probe_rule)
    lm = dspy.LM("fake/probe", engine=engine, cache=False)
    with dspy.context(lm=lm, adapter=PersonalAdapter()):
        program.deepcopy()(**task.inputs(example))
    return len(engine.requests)


# -- plans ------------------------------------------------------------------------------------------

FINAL = "final scoring on train (task)"


@dataclass
class CallPlan:
    """Expected LM calls, by named part, and how many of them one trial makes."""

    parts: dict[str, int] = field(default_factory=dict)
    per_trial: int = 0
    trials: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        width = max(len(name) for name in self.parts) if self.parts else 0
        lines = [f"  {name.ljust(width)}  {calls:>6}" for name, calls in self.parts.items()]
        lines.append(f"  {'total'.ljust(width)}  {self.total:>6}")
        lines.append(f"  one trial makes at most {self.per_trial} calls; {self.trials} trials planned")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# -- the interface ----------------------------------------------------------------------------------

class Optimizer(ABC):
    """One way to tune a program's instructions (the guidance question among them).

    Subclasses set `name`, `summary` and `defaults` (every setting with its default: the type of
    the default is the type a setting is converted to) and implement `_plan` and `_search`.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    may_be_zero: ClassVar[tuple[str, ...]] = ()  # numeric settings for which 0 is meaningful

    def __init__(self, *, task: Task, task_lm: dspy.BaseLM, prompt_lm: dspy.BaseLM | None = None, seed: int = 0,
                 workdir: Any = None, progress: Callable[[str], None] | None = print, **settings: Any):
        self.settings = self.validate_settings(settings)
        self.task = task
        self.task_lm = task_lm
        # A separate LM object even for the same model: its own history, counter and adapter.
        self.prompt_lm = task_lm.copy() if prompt_lm is None or prompt_lm is task_lm else prompt_lm
        self.seed = seed
        self.workdir = workdir
        self.progress_fn = progress
        self.budget: int | None = None
        self.search_budget: int | None = None  # the budget less the final scoring
        self.per_trial = 0
        self.known_dev_score: float | None = None  # the returned program's dev score, when the search measured it
        self.task_calls = attach_counter(self.task_lm)
        self.prompt_calls = attach_counter(self.prompt_lm)
        self.info: dict[str, Any] = {}  # what the search found worth keeping (candidates, fronts, ...)
        self._best_score: float | None = None

    @classmethod
    def validate_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Every setting, given or default, converted to its default's type; an unknown name is refused."""
        unknown = sorted(set(settings) - set(cls.defaults))
        if unknown:
            raise ConfigError(f"optimizer {cls.name!r} has no setting {', '.join(unknown)}; its settings: "
                              + ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items()))
        converted = {k: _convert(cls.name, k, settings.get(k, v), v) for k, v in cls.defaults.items()}
        for key, value in converted.items():  # counts, sizes and temperatures: zero or less never makes sense
            least = 0 if key in cls.may_be_zero else 1e-12
            if isinstance(value, int | float) and not isinstance(value, bool) and value < least:
                raise ConfigError(f"optimizer {cls.name!r}: setting {key}={value!r} must be "
                                  + ("at least 0" if least == 0 else "positive"))
        return converted

    # sklearn-style introspection: everything that configures the search, nothing else
    def get_params(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, **self.settings}

    def plan(self, program: dspy.Module, trainset: Sequence[Example], valset: Sequence[Example]) -> CallPlan:
        """Expected calls before anything runs (upper bounds: DSPy's cache and early stops only lower them)."""
        if not trainset or not valset:
            raise ConfigError("an optimizer needs at least one training and one development example")
        c = self._calls_per_example(program, trainset[0])
        plan = self._plan(program, list(trainset), list(valset), c)
        plan.parts[FINAL] = len(trainset) * c
        return plan

    def _calls_per_example(self, program: dspy.Module, example: Example) -> int:
        """Calls per example of the programs the search tries (a search that adds steps widens this)."""
        return calls_per_example(program, self.task, example)

    def check_budget(self, plan: CallPlan, budget: int) -> None:
        fixed = plan.total - plan.per_trial * plan.trials
        if budget < fixed + plan.per_trial:
            raise BudgetError(f"--budget {budget} is too small for one trial of {self.name}: setting up takes "
                              f"{fixed} calls and one trial up to {plan.per_trial}")
        if plan.total > budget:
            raise BudgetError(f"{self.name} expects up to {plan.total} LM calls but --budget is {budget}; raise "
                              "--budget, or lower the trials or --train-limit/--dev-limit "
                              f"(breakdown: {', '.join(f'{k} {v}' for k, v in plan.parts.items())})")
        self.budget = budget
        self.search_budget = budget - plan.parts.get(FINAL, 0)
        self.per_trial = plan.per_trial

    def compile(self, program: dspy.Module, trainset: Sequence[Example], valset: Sequence[Example],
                metric: TaskMetric) -> dspy.Module:
        """The tuned copy of `program` (the argument is left as it was)."""
        if not trainset or not valset:
            raise ConfigError("an optimizer needs at least one training and one development example")
        with dspy.context(lm=self.task_lm, adapter=ProgramAdapter()):
            return self._search(program.deepcopy(), list(trainset), list(valset), metric)

    @abstractmethod
    def _plan(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
              calls_per_example: int) -> CallPlan: ...

    @abstractmethod
    def _search(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
                metric: TaskMetric) -> dspy.Module: ...

    # -- progress ------------------------------------------------------------------------------------
    def calls_spent(self) -> int:
        return self.task_calls.usage.calls + self.prompt_calls.usage.calls

    def report(self, trial: int | str, total: int | None, score: float | None, note: str = "") -> None:
        if score is not None and (self._best_score is None or score > self._best_score):
            self._best_score = score
        if self.progress_fn is None:
            return
        t, p = self.task_calls.usage, self.prompt_calls.usage
        of = f"/{total}" if total else ""
        shown = "-" if score is None else f"{score:.3f}"
        best = "-" if self._best_score is None else f"{self._best_score:.3f}"
        self.progress_fn(f"[{self.name}] trial {trial}{of}  score {shown}  best {best}  calls {t.calls + p.calls}"
                         f" (task {t.calls}, {t.cache_hits} cached; prompt {p.calls})" + (f"  {note}" if note else ""))


def _convert(optimizer: str, key: str, value: Any, default: Any) -> Any:
    if default is None or value is None or isinstance(value, type(default)) and not isinstance(value, bool):
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer {optimizer!r}: setting {key}={value!r} is not of type {type(default).__name__}") \
            from exc


OPTIMIZERS: dict[str, type[Optimizer]] = {}


def register_optimizer(cls: type[Optimizer]) -> type[Optimizer]:
    """Class decorator: make an optimizer available by its `name`."""
    OPTIMIZERS[cls.name] = cls
    return cls


def optimizer_class(name: str) -> type[Optimizer]:
    import guided_profile.optimizers  # noqa: F401  (registers the built-in optimizers)

    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose from {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name]


def get_optimizer(name: str, **kwargs: Any) -> Optimizer:
    """A configured optimizer: `task`, `task_lm`, optional `prompt_lm`, `seed`, `workdir`, then its settings."""
    return optimizer_class(name)(**kwargs)


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b) if b else 0
