"""The one interface every optimizer has, and the registry that finds an optimizer by its name.

An optimizer is configured once (`get_optimizer(name, task=..., task_lm=..., metric=..., **settings)`)
and used the same way whatever it is: `plan(student, trainset=..., valset=...)` says how many LM calls
it expects before any is made, `compile(student, trainset=..., valset=...)` returns the tuned program:
DSPy's `Teleprompter.compile` shape, the metric given at construction, so a DSPy user's habits carry
over.  The implementations are
thin wrappers around DSPy's own optimizers (MIPROv2, GEPA, COPRO) plus one Optuna search of our
own; they differ only in `defaults`, `_plan` and `_search`.  What they share lives beside this
module: the metric (`metric.py`), plans (`plan.py`), the shape of a guidance question
(`_guidance_shape.py`), call counting (`lm/accounting.py`) and the adapters (`programs/adapter.py`).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import dspy

from guided_profile._dspy_internals import no_straggler_copies
from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError, GuidedProfileError
from guided_profile.lm.accounting import attach_counter
from guided_profile.optimizers._answer_journal import answers_kept_in
from guided_profile.optimizers._confirm_journal import ConfirmJournal
from guided_profile.optimizers.candidates import Candidate, with_candidate
from guided_profile.optimizers.confirm import (
    ConfirmSettings,
    configuration,
    confirm_stage,
    reported_mean,
    split_for_confirm,
)
from guided_profile.optimizers.metric import TaskMetric
from guided_profile.optimizers.plan import CONFIRM, FINAL, CallPlan, calls_per_example
from guided_profile.programs.adapter import ProgramAdapter
from guided_profile.programs.attempt import Attempt, attempt
from guided_profile.tasks.base import Task

CONFIRM_PROGRESS_EVERY = 10  # examples between two progress lines of the confirm stage (an hour on a CPU)


class BudgetError(ConfigError):
    """The expected number of LM calls does not fit the budget: nothing was run."""


class IncompleteScores(GuidedProfileError):
    """Some examples of a comparison failed: the comparison is not made on part of them (rerun to retry)."""


class Optimizer(ABC):
    """One way to tune a program's instructions (the guidance question among them).

    Subclasses set `name`, `summary` and `defaults` (every setting with its default: the type of
    the default is the type a setting is converted to) and implement `_plan` and `_search`.

    Args:
        task: the task whose programs are tuned (its metric scores them, its inputs feed them).
        task_lm: the model the program runs on.
        metric: the objective, as DSPy's optimizers call it; default `TaskMetric(task)`.
        prompt_lm: the model that writes proposals and reflections; default a copy of `task_lm`.
        seed: for every random choice of the search.
        workdir: where a search keeps what makes it resumable (the Optuna study).
        progress: called with one line per trial; None is silent.
        confirm: hold part of the dev users out of the search and export a candidate only if it beats
            the hand-written program there (`confirm.py`); None: no confirm stage, as DSPy's optimizers.
        user_candidates: guidance questions (and instructions) a person wrote: searched where the optimizer
            can (`searches_user_candidates`), and always scored in the confirm stage.
        parallel: dev examples scored at once (DSPy's evaluation threads in mipro, gepa and copro; the Optuna
            search's and the confirm stage's own): the embedded model's server slots, or concurrent requests.
        **settings: the optimizer's own settings (`defaults` lists them).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    may_be_zero: ClassVar[tuple[str, ...]] = ()  # numeric settings for which 0 is meaningful

    searches_user_candidates: ClassVar[bool] = False  # True: they join the search, not only the confirm stage
    # True: a rerun resumes by replaying the search, every call answered again from DSPy's cache; its answers are
    # then also kept in the run folder, so the replay works on another machine too (`_answer_journal.py`)
    replays_to_resume: ClassVar[bool] = True

    def __init__(self, *, task: Task, task_lm: dspy.BaseLM, metric: TaskMetric | None = None,
                 prompt_lm: dspy.BaseLM | None = None, seed: int = 0, workdir: Any = None,
                 progress: Callable[[str], None] | None = print, confirm: ConfirmSettings | None = None,
                 user_candidates: Sequence[Candidate] = (), parallel: int = 1, **settings: Any):
        self.settings = self.validate_settings(settings)
        if parallel < 1:
            raise ConfigError(f"parallel must be at least 1, got {parallel}")
        self.parallel = parallel
        self._local = threading.local()
        self.confirm = confirm
        self.user_candidates = list(user_candidates)
        self.task = task
        self.metric = metric if metric is not None else TaskMetric(task)
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
        self._confirm_journal: ConfirmJournal | None = None  # made when the confirm stage first scores
        self._best_score: float | None = None
        # The search's programs by dev score, best first: the confirm stage scores the first `top` distinct ones.
        self.ranked: list[dspy.Module] = []
        if self._unsearched_candidates() and not (confirm and confirm.fraction):
            raise ConfigError(f"optimizer {self.name!r} scores "
                              + ("candidates with step instructions" if self.searches_user_candidates else
                                 "the --candidates") + " only in the confirm stage, which --confirm-fraction 0 "
                              "turns off: keep a confirm fraction above 0, or leave them out")

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

    def plan(self, student: dspy.Module, *, trainset: Sequence[Example],
             valset: Sequence[Example] | None = None) -> CallPlan:
        """Expected calls before anything runs (upper bounds: DSPy's cache and early stops only lower them)."""
        trainset, valset = _checked(trainset, valset)
        search, confirm = self._split_dev(valset)
        c = self._calls_per_example(student, trainset[0])
        plan = self._plan(student, trainset, search, c)
        if confirm:
            plan.parts[CONFIRM] = (self.confirm.top + len(self._unsearched_candidates()) + 1) * len(confirm) * c
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
        self.search_budget = budget - plan.parts.get(FINAL, 0) - plan.parts.get(CONFIRM, 0)
        self.per_trial = plan.per_trial

    def compile(self, student: dspy.Module, *, trainset: Sequence[Example],
                valset: Sequence[Example] | None = None) -> dspy.Module:
        """The tuned copy of `student` (the argument is left as it was), selected on `valset`."""
        trainset, valset = _checked(trainset, valset)
        search, confirm = self._split_dev(valset)
        self.metric.remember([*trainset, *valset])
        with dspy.context(lm=self.task_lm, adapter=ProgramAdapter()):
            with answers_kept_in(self.workdir if self.replays_to_resume else None), no_straggler_copies():
                best = self._search(student.deepcopy(), trainset, search, self.metric)
            if not confirm:
                return best
            written = [with_candidate(student, c) for c in self._unsearched_candidates()]
            program, self.info["confirm"] = confirm_stage(student.deepcopy(), self.ranked or [best], confirm,
                                                          score=self.scores, objective=self.metric.objective,
                                                          settings=self.confirm, written=written,
                                                          progress=self._say, reported=self._reported(confirm))
            return program

    def _reported(self, examples: Sequence[Example]) -> Callable[[dspy.Module], dict[str, float]] | None:
        """The task's reported metric's mean on the confirm `examples` for a program the stage scored (from
        `confirm_metrics`), when it is not the objective: accuracy beside the gold option's probability."""
        name = self.task.objective
        if name == self.metric.objective:
            return None

        def means(program: dspy.Module) -> dict[str, float]:
            mean = reported_mean(examples, self.confirm_metrics(program, examples), name)
            return {} if mean is None else {name: mean}
        return means

    def confirm_metrics(self, program: dspy.Module, examples: Sequence[Example]) -> list[dict[str, Any] | None]:
        """Every metric of `program`'s confirm-stage run on each example, as kept by `scores` (None where it
        has none): the exported program's accuracy is reported beside the objective without running it again."""
        journal, key = self._journal(), configuration(program)
        return [kept[1] if (kept := journal.get(key, example)) is not None else None for example in examples]

    def scores(self, program: dspy.Module, examples: Sequence[Example]) -> list[float]:
        """The objective of `program` on each example, through the one evaluation loop; its other metrics are
        kept too (`confirm_metrics`: the export reports accuracy beside the objective).  Each score is kept in
        the run folder as it arrives (`_confirm_journal.py`), so a rerun pays only for the rest.  A failed
        example stops the stage: scored 0 for one program only, it would make the others look better."""
        journal, key = self._journal(), configuration(program)
        pending = [example for example in examples if journal.get(key, example) is None]

        finished, lock = [0], threading.Lock()

        def keep(tried: Attempt) -> None:
            if tried.error is None:
                journal.keep(key, tried.example, tried.score, tried.metrics)
            with lock:
                finished[0] += 1
                if finished[0] % CONFIRM_PROGRESS_EVERY == 0 or finished[0] == len(pending):
                    self._say(f"confirm stage: {finished[0]} of {len(pending)} examples scored"
                              + (f" ({len(examples) - len(pending)} kept from an earlier run)"
                                 if len(pending) < len(examples) else ""))

        done = self.attempts(program, pending, then=keep)
        failed = [tried for tried, _ in done if tried.error is not None]
        if failed:
            raise IncompleteScores(f"{len(failed)} of {len(examples)} confirm examples failed (first: "
                                   f"{failed[0].error}); rerun the same command to retry them (the scored ones "
                                   "are kept in the run folder)")
        return [journal.get(key, example)[0] for example in examples]

    def _journal(self) -> ConfirmJournal:
        if self._confirm_journal is None:
            self._confirm_journal = ConfirmJournal(self.workdir, task=self.task, lm=self.task_lm,
                                                   objective=self.metric.objective)
        return self._confirm_journal

    def attempts(self, program: dspy.Module, examples: Sequence[Example],
                 then: Callable[[Attempt], None] | None = None) -> list[tuple[Attempt, int]]:
        """`attempt` of `program` on each example, `parallel` at a time (one server slot or request each),
        in the examples' order, each with the tokens it cost (estimated alike for DSPy cache hits, so a
        configuration's cost does not depend on what an earlier trial happened to ask).  `then(attempt)` is
        called as each one ends, so what finished is kept even if a later example is cut short."""
        def one(example: Example) -> tuple[Attempt, int]:
            tried = self._attempt(program, example)
            if then is not None:
                then(tried[0])
            return tried

        if self.parallel <= 1 or len(examples) <= 1:
            return [one(example) for example in examples]
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(examples))) as pool:
            return list(pool.map(one, examples))

    def _attempt(self, program: dspy.Module, example: Example) -> tuple[Attempt, int]:
        # Each thread has its own copy of the task model (same engine): its own history, so each example's
        # usage is its own, and its own counter for tokens; the copies still report to `task_calls`.
        if not hasattr(self._local, "lm"):
            self._local.lm = self.task_lm.copy()
            self._local.counter = attach_counter(self._local.lm, tokens_like=self.task_calls)
        before = self._local.counter.tokens
        tried = attempt(program, self.task, example, lm=self._local.lm, adapter=ProgramAdapter(),
                        objective=self.metric.objective)
        return tried, self._local.counter.tokens - before

    def _split_dev(self, valset: list[Example]) -> tuple[list[Example], list[Example]]:
        """(search part, confirm part) of the dev examples; no confirm part without a confirm stage."""
        if self.confirm is None or not self.confirm.fraction:
            return valset, []
        search, confirm = split_for_confirm(valset, self.confirm.fraction, self.seed)
        if not search or not confirm:
            raise ConfigError(f"{len(valset)} dev examples split {len(search)} for the search and {len(confirm)} "
                              f"to confirm (fraction {self.confirm.fraction}): raise --dev-limit or change the "
                              "confirm fraction (0 turns the confirm stage off)")
        return search, confirm

    def _unsearched_candidates(self) -> list[Candidate]:
        return [] if self.searches_user_candidates else self.user_candidates

    @abstractmethod
    def _plan(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
              calls_per_example: int) -> CallPlan: ...

    @abstractmethod
    def _search(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
                metric: TaskMetric) -> dspy.Module: ...

    def calls_spent(self) -> int:
        return self.task_calls.usage.calls + self.prompt_calls.usage.calls

    def remember_best(self, score: float | None) -> None:
        """Keep `score` as the best so far if it is (a resumed search passes the best of its earlier sessions)."""
        if score is not None and (self._best_score is None or score > self._best_score):
            self._best_score = score

    def _say(self, line: str) -> None:
        """A progress line, prefixed with the optimizer's name (nothing when progress is off)."""
        if self.progress_fn is not None:
            self.progress_fn(f"[{self.name}] {line}")

    def report(self, trial: int | str, total: int | None, score: float | None, note: str = "") -> None:
        self.remember_best(score)
        if self.progress_fn is None:
            return
        t, p = self.task_calls.usage, self.prompt_calls.usage
        of = f"/{total}" if total else ""
        shown = "-" if score is None else f"{score:.3f}"
        best = "-" if self._best_score is None else f"{self._best_score:.3f}"
        self._say(f"trial {trial}{of}  score {shown}  best {best}  calls {t.calls + p.calls}"
                  f" (task {t.calls}, {t.cache_hits} cached; prompt {p.calls})" + (f"  {note}" if note else ""))


def _checked(trainset: Sequence[Example], valset: Sequence[Example] | None) -> tuple[list[Example], list[Example]]:
    # DSPy's optimizers disagree on a missing valset (MIPROv2 splits the trainset, GEPA reuses it); ours select
    # on development examples only, so none given is said, not guessed.
    if not trainset or not valset:
        raise ConfigError("an optimizer needs at least one training and one development example "
                          "(compile(student, trainset=..., valset=...))")
    return list(trainset), list(valset)


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
    """A configured optimizer: `task`, `task_lm`, optional `metric`, `prompt_lm`, `seed`, `workdir`, then its
    settings."""
    return optimizer_class(name)(**kwargs)
