"""Our own Optuna search over what DSPy's optimizers do not search: which guidance question, which
parts the final step sees, how long the profile may be, and (when asked: `search_retrieval`, `retrieval_k`)
which retriever and k pick the history items the steps see (`_retrieval_space.py`).

The guidance question is chosen from a pool: the hand-written one plus candidates the prompt
model proposes from training examples.  Each trial scores one configuration on the dev set.

Everything lives in an Optuna RDB storage (a SQLite file in the run folder unless `storage` says
otherwise): the study, the candidate pool, and every (configuration, example) score already paid
for.  A killed run therefore resumes where it stopped without repeating a call, and several
workers can share one study through PostgreSQL or MySQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
import optuna
from optuna.trial import TrialState

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.lm.accounting import Usage, usage_delta
from guided_profile.optimizers._guidance_shape import as_guidance_question, set_instruction
from guided_profile.optimizers._proposals import Shown, failures_first, propose
from guided_profile.optimizers._racing import DevScores, race, record_scores
from guided_profile.optimizers._retrieval_space import BASE, retrieval_choices, retrieval_from_label
from guided_profile.optimizers._retrieval_space import PARAM as RETRIEVAL_PARAM
from guided_profile.optimizers.base import Optimizer, register_optimizer
from guided_profile.optimizers.candidates import Candidate
from guided_profile.optimizers.metric import TaskMetric
from guided_profile.optimizers.plan import CallPlan, calls_per_example
from guided_profile.programs.adapter import DEFAULT_LAYOUT
from guided_profile.programs.answer import answer_config_of
from guided_profile.programs.conversation import DEFAULT_PROFILE_STEP
from guided_profile.programs.export import instructions
from guided_profile.programs.methods import parts_of, profile_step_of, switches_of
from guided_profile.programs.modules import GuidedProfile
from guided_profile.programs.retrieved import Retrieval, retrieval_of, with_retrieval
from guided_profile.redaction import redact, redact_json
from guided_profile.tasks.base import Task


def _counted(study: optuna.Study) -> int:
    """Trials that count towards `trials`: completed ones and those the race stopped (`trials` configurations
    are tried, each on at most the whole dev set, so the plan's bound holds).  Not counted: a trial that
    yielded to another worker scoring the same configuration (it paid nothing), and failed ones (retried)."""
    ended = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return sum(t.state == TrialState.COMPLETE or "paid_examples" in t.user_attrs for t in ended)

PART_CHOICES = ["pc+pp", "pc+g+pp", "pc+g", "g+pp", "g", "pp"]  # every final step with guidance or profile
WORDS = re.compile(r"\b(?:at most|no more than|fewer than|less than|under|up to)\s+(\d+)\s+words\b", re.IGNORECASE)


def word_limit(instruction: str) -> int | None:
    match = WORDS.search(instruction)
    return int(match.group(1)) if match else None


def with_word_limit(instruction: str, words: int) -> str:
    """The instruction with its word limit set to `words` (added if it has none)."""
    if WORDS.search(instruction):
        return WORDS.sub(f"at most {words} words", instruction, count=1)
    return f"{instruction.rstrip()} Use at most {words} words."


class IncompleteTrial(Exception):
    """A trial some of whose dev examples failed: Optuna records it as failed (resume retries it)."""


@contextlib.contextmanager
def _stable() -> Iterator[None]:
    """Silence Optuna's 'experimental' warnings for the features used here (heartbeat, grouped TPE)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# The study keeps the guidance question pool under this attribute; studies made before the rename kept it as
# "guidance_pool" and resume with it.  The trial parameter (the pool index) keeps its first name, "guidance":
# renaming it would make TPE treat a resumed study's earlier trials as another search space.
POOL_ATTR = "guidance_question_pool"
LEGACY_POOL_ATTR = "guidance_pool"
QUESTION_PARAM = "guidance"

PROGRESS_EVERY = 20  # dev examples between two progress lines of a trial


class _InterruptWithoutTraceback(logging.Filter):
    """Optuna logs a trial that Ctrl-C or SIGTERM stopped as failed, with the whole traceback; the command
    already ends with one line saying it was interrupted and how to resume, so only Optuna's line stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info, record.exc_text = None, None
        return True


def _no_traceback_on_interrupt() -> None:
    logger = logging.getLogger("optuna.study._optimize")  # the module that logs failed trials
    if not any(isinstance(f, _InterruptWithoutTraceback) for f in logger.filters):
        logger.addFilter(_InterruptWithoutTraceback())


def _stored_pool(study: optuna.Study) -> list[str] | None:
    """The study's guidance question pool, under its current or its earlier attribute name; None if not made yet."""
    for attr in (POOL_ATTR, LEGACY_POOL_ATTR):
        if attr in study.user_attrs:
            return list(study.user_attrs[attr])
    return None


def _study_answer(program: dspy.Module) -> dict[str, Any]:
    """`answer_config_of` as a study's name was hashed from before it existed (rotations 4 in generate mode too,
    no prompt layout or profile step: the default ones), so studies made then are found and resumed."""
    answer = answer_config_of(program)
    layout = {} if answer["prompt_layout"] == DEFAULT_LAYOUT else {"prompt_layout": answer["prompt_layout"]}
    step = profile_step_of(program)
    continued = {} if step == DEFAULT_PROFILE_STEP else {"profile_step": step}  # a trial's profiles come from it too
    return {"answer_mode": answer["answer_mode"], "rotations": answer["rotations"] or 4, **layout, **continued}


@dataclass
class _Space:
    """What a trial chooses from: the guidance question candidates (the hand-written one first), and the starting
    program's parts and word limit (snapped to the word grid; None when its profile states no limit)."""

    pool: list[str]
    base_parts: str
    base_words: int | None
    grid: list[int]
    retrievals: list[str] | None = None  # the retrieval labels when the search tries retrievers (`base` first)
    base_retrieval: Retrieval | None = None  # the starting program's (None: the history as before retrieval)


def _examples_digest(task: Task, examples: list[Example]) -> str:
    """What the programs see and are scored against, not only which ids (`Task.as_read`).  The list layout
    is the one studies were named by: changing it would rename, and so restart, every stored study."""
    content = []
    for example in examples:
        read = task.as_read(example)
        content.append([example.example_id, read["inputs"], read["gold"]])
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=list).encode()).hexdigest()[:16]


def _pareto_front(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials no other one beats on both objectives (score up, tokens down): Optuna's `best_trials`, but of
    the trials given rather than of the whole study."""
    def beats(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> bool:
        return a.values[0] >= b.values[0] and a.values[1] <= b.values[1] and a.values != b.values

    return [t for t in trials if not any(beats(other, t) for other in trials)]


GROUNDING_SURPLUS = 2  # train users run per example a proposal shows (`_grounding_users`)


@register_optimizer
class OptunaSearch(Optimizer):
    """The `optuna` optimizer: TPE over guidance question, final-step parts and profile length (see the module)."""

    name = "optuna"
    summary = ("Optuna TPE over the guidance question (hand-written + prompt-model candidates), the final step's "
               "parts (pc/g/pp) and the profile's word limit; resumable SQLite/RDB study; optional Pareto front of "
               "objective vs tokens")
    may_be_zero = ("candidates",)  # 0: search the switches and length with the hand-written guidance only
    defaults = {"trials": 8, "candidates": 3, "examples_per_proposal": 3, "search_switches": True,
                "min_words": 20, "max_words": 100, "word_step": 20, "screen_candidates": True,
                "multi_objective": False, "storage": "", "study_name": "", "heartbeat": 30,
                "racing": True, "p_threshold": 0.1, "min_examples": 10, "ground_proposals": True,
                "search_retrieval": "", "retrieval_k": ""}
    # Off by default, and then left out of a study's configuration, so studies made before they existed resume.
    retrieval_settings = ("search_retrieval", "retrieval_k")
    searches_user_candidates = True  # their questions join the pool; step instructions go to the confirm stage
    replays_to_resume = False  # the study keeps every score paid for: a rerun goes on from there, replaying nothing

    @classmethod
    def validate_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        s = super().validate_settings(settings)
        if s["max_words"] < s["min_words"]:  # refused here, before the prompt model is paid for proposals
            raise ConfigError(f"optimizer 'optuna': max_words={s['max_words']} is below min_words={s['min_words']}")
        _retrieval_labels(s)  # an unknown retriever or a bad k fails here too
        return s

    def _retrieval_labels(self) -> list[str] | None:
        return _retrieval_labels(self.settings)

    def _word_grid(self) -> list[int]:
        s = self.settings
        return list(range(s["min_words"], s["max_words"] + 1, s["word_step"]))

    def storage_url(self) -> str:
        if self.settings["storage"]:
            return self.settings["storage"]
        if self.workdir is None:
            raise ConfigError("optuna: give a run folder (workdir) or a storage URL for the study")
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(self.workdir).resolve() / 'study.db'}"

    def study_config(self, program: dspy.Module, trainset: list[Example], valset: list[Example]) -> dict[str, Any]:
        """What a study's trials depend on: a stored study made with anything else is not resumed."""
        settings = {k: v for k, v in self.settings.items() if k not in ("trials", "storage", "study_name", "heartbeat")
                    and not (k in self.retrieval_settings and not v)}
        searched, base = self._retrieval_labels(), retrieval_of(program)
        # Only when the search tries retrievers or the base program retrieves: studies made before keep their names.
        retrieval = ({"retrieval": {"base": base.to_dict() if base else None, "search": searched}}
                     if searched or base else {})
        return {"task": self.task.name, "settings": settings, "seed": self.seed, "objective": self.metric.objective,
                "user_candidates": [c.guidance_question for c in self.user_candidates],
                "instructions": instructions(program), "switches": getattr(program, "switches", None),
                "answer": _study_answer(program), "task_lm": self.task_lm.model, "prompt_lm": self.prompt_lm.model,
                "step_max_tokens": self.task.step_max_tokens(), "train": _examples_digest(self.task, trainset),
                "dev": _examples_digest(self.task, valset), **retrieval}

    def study_name(self, config: dict[str, Any]) -> str:
        if self.settings["study_name"]:
            return self.settings["study_name"]
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.task.name}-optuna-{digest}"

    def _storage(self) -> optuna.storages.RDBStorage:
        try:
            with _stable():
                return optuna.storages.RDBStorage(self.storage_url(), heartbeat_interval=self.settings["heartbeat"],
                                                  grace_period=4 * self.settings["heartbeat"])
        except Exception as exc:  # a bad URL, a missing driver, a server that refuses
            raise ConfigError(f"optuna storage {redact(self.storage_url())}: {exc}") from exc

    def _existing(self, name: str) -> optuna.Study | None:
        try:
            return optuna.load_study(study_name=name, storage=self._storage())
        except KeyError:
            return None

    def _check_program(self, program: dspy.Module) -> None:
        if not isinstance(program, GuidedProfile):
            raise ConfigError("the optuna optimizer searches GPG's guidance and switches: start from gpg or gpg:PARTS")

    def _calls_per_example(self, program: dspy.Module, example: Example) -> int:
        self._check_program(program)
        widest = GuidedProfile(self.task, True, True, True, **answer_config_of(program),  # a trial may turn all on
                               profile_step=profile_step_of(program))
        return max(calls_per_example(widest, self.task, example), calls_per_example(program, self.task, example))

    def _plan(self, program: dspy.Module, trainset: list[Example], valset: list[Example], c: int) -> CallPlan:
        config = self.study_config(program, trainset, valset)
        study = self._existing(self.study_name(config))
        done, has_pool = 0, False
        if study is not None:
            done = _counted(study)
            has_pool = _stored_pool(study) is not None
        trials = max(0, self.settings["trials"] - done)
        plan = CallPlan(trials=trials, per_trial=len(valset) * c)
        plan.parts["guidance question candidates (prompt)"] = 0 if has_pool else self.settings["candidates"]
        grounding = len(self._grounding_users(trainset))
        plan.parts["failures shown to the proposals (task)"] = (
            0 if has_pool or not self.settings["ground_proposals"] else grounding * c)
        plan.parts["trials on dev (task)"] = trials * len(valset) * c
        if done:
            plan.notes.append(f"resuming study: {done} of {self.settings['trials']} trials already done")
        plan.notes.append("a configuration's dev examples already scored in the study are not run again")
        return plan

    def _search(self, program: dspy.Module, trainset: list[Example], valset: list[Example],
                metric: TaskMetric) -> dspy.Module:
        self._check_program(program)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _no_traceback_on_interrupt()
        config = self.study_config(program, trainset, valset)
        name = self.study_name(config)
        multi = self.settings["multi_objective"]
        existing = self._existing(name)
        # Workers with one seed would replay one random sequence: each worker's is offset by the trials it finds.
        offset = len(existing.get_trials(deepcopy=False)) if existing is not None else 0
        with _stable():
            sampler = optuna.samplers.TPESampler(seed=self.seed + offset, multivariate=True, group=True)
            pruner = (optuna.pruners.WilcoxonPruner(p_threshold=self.settings["p_threshold"],
                                                    n_startup_steps=self.settings["min_examples"])
                      if self.settings["racing"] and not multi else optuna.pruners.NopPruner())
        try:
            study = optuna.create_study(study_name=name, storage=self._storage(), sampler=sampler, pruner=pruner,
                                        load_if_exists=True,
                                        directions=["maximize", "minimize"] if multi else ["maximize"])
        except ValueError as exc:  # e.g. an existing study with other directions
            raise ConfigError(f"optuna study {name!r}: {exc}") from exc
        stored, config = study.user_attrs.get("config"), redact_json(config)  # as stored: no secret in the study
        if stored is None:
            study.set_user_attr("config", config)
        elif stored != config:
            changed = sorted(k for k in config if stored.get(k) != config[k])
            raise ConfigError(f"optuna study {name!r} in {redact(self.storage_url())} was made with a different "
                              f"{', '.join(changed)}; give another study_name or run folder")
        self.info.update(study_name=name, storage=redact(self.storage_url()))
        if "dev_ids" not in study.user_attrs:
            study.set_user_attr("dev_ids", [ex.example_id for ex in valset])

        grid = self._word_grid()
        base_words = word_limit(program.write_profile.signature.instructions)
        if base_words is not None and base_words not in grid:  # else trial 0 would be a near-copy, not the program
            raise ConfigError(f"optimizer 'optuna': the profile word grid {grid} (min_words, max_words, word_step) "
                              f"does not hold the starting program's {base_words} words; choose one through it")
        pool = self._pool(study, program, trainset)
        space = _Space(pool, parts_of(program.switches), base_words, grid, self._retrieval_labels(),
                       retrieval_of(program))
        self._seed_trials(study, pool, space.base_parts, base_words)

        target = self.settings["trials"]
        complete = _counted(study)
        if complete and not multi:  # a resumed search's progress lines start from the best it already has
            self.remember_best(study.best_value)
        if complete < target:
            objective = self._objective(study, program, space, valset, multi)
            # A trial cut short by failed calls does not count: each missing trial gets one retry here, and
            # the callback stops as soon as `target` trials are complete.
            study.optimize(objective, n_trials=2 * (target - complete), catch=(IncompleteTrial,),
                           callbacks=[self._enough_trials,
                                      self._budget_guard])
        return self._best(study, program, pool, multi)

    def _pool(self, study: optuna.Study, program: dspy.Module, trainset: list[Example]) -> list[str]:
        """The guidance question candidates: the hand-written one, the user's, then the prompt model's proposals,
        each from train users the hand-written program gets wrong; stored with the study, so resuming never
        proposes again."""
        stored = _stored_pool(study)
        if stored is not None:
            return stored
        handwritten = program.digest.signature.instructions
        pool = list(dict.fromkeys([handwritten, *(c.guidance_question for c in self.user_candidates)]))
        k, m = self.settings["candidates"], max(1, self.settings["examples_per_proposal"])
        shown = failures_first(self, program, self._grounding_users(trainset)) if self.settings["ground_proposals"] \
            else [Shown(ex) for ex in trainset]
        refused: list[str] = []
        for i in range(k):
            batch = [shown[(i * m + j) % len(shown)] for j in range(min(m, len(shown)))]
            text = propose(self.task, handwritten, batch, self.prompt_lm.copy(rollout_id=i + 1, temperature=1.0))
            shaped = as_guidance_question(text)
            if shaped is None or shaped in {s.example.query for s in batch}:  # no question, or the task's own
                refused.append(text)
            elif shaped not in pool:
                pool.append(shaped)
            self._say(f"proposal {i + 1}/{k}: {len(pool) - 1} guidance question candidates, "
                      f"{len(refused)} refused (not one question); calls {self.calls_spent()}")
        study.set_user_attr(POOL_ATTR, redact_json(pool))
        study.set_user_attr("refused_candidates", redact_json(refused))
        return pool

    def _grounding_users(self, trainset: list[Example]) -> list[Example]:
        """The train users the hand-written program is run on to find failures for the proposals: twice as many
        as the proposals show, so that with about half of them answered right the shown ones are still failures
        (`failures_first` puts them first)."""
        k, m = self.settings["candidates"], max(1, self.settings["examples_per_proposal"])
        return trainset[: GROUNDING_SURPLUS * k * m]

    def _seed_trials(self, study: optuna.Study, pool: list[str], base_parts: str, base_words: int | None) -> None:
        """First trials: the hand-written configuration, then each candidate with the hand-written switches;
        on resume, the configurations of trials that failed (an interrupted trial) are tried again."""
        def params(index: int, parts: str, words: int | None) -> dict[str, Any]:
            out: dict[str, Any] = {QUESTION_PARAM: index}
            if self.settings["search_switches"]:
                out["parts"] = parts
            if words is not None and "pp" in parts.split("+"):
                out["profile_words"] = words
            if self._retrieval_labels():
                out[RETRIEVAL_PARAM] = BASE  # the first trials keep the base program's retrieval
            return out

        if not study.get_trials(deepcopy=False):
            study.enqueue_trial(params(0, base_parts, base_words))
            if self.settings["screen_candidates"]:
                for index in range(1, len(pool)):
                    study.enqueue_trial(params(index, base_parts, base_words))
        with _stable():
            optuna.storages.fail_stale_trials(study)  # trials of a killed worker whose heartbeat stopped
        retried = set(study.user_attrs.get("retried", []))
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number not in retried and QUESTION_PARAM in trial.params:
                study.enqueue_trial(trial.params)
                retried.add(trial.number)
        study.set_user_attr("retried", sorted(retried))

    def _build(self, base: dspy.Module, guidance_question: str, parts: str, words: int | None,
               retrieval: Retrieval | None | str = BASE) -> GuidedProfile:
        """The configuration as a program; `retrieval` is the base program's unless the trial chose another."""
        program = GuidedProfile(self.task, **switches_of(parts), **answer_config_of(base),
                                profile_step=profile_step_of(base))
        with_retrieval(program, self.task, retrieval_of(base) if retrieval == BASE else retrieval)
        for name, text in instructions(base).items():
            set_instruction(program, name, text)
        set_instruction(program, "digest", guidance_question)
        if words is not None:
            set_instruction(program, "write_profile", with_word_limit(base.write_profile.signature.instructions, words))
        return program

    def _objective(self, study: optuna.Study, base: dspy.Module, space: _Space, valset: list[Example],
                   multi: bool) -> Callable[[optuna.Trial], float | tuple[float, float]]:
        """One trial: pick a configuration, race it on the dev set, record what it cost."""
        def objective(trial: optuna.Trial) -> float | tuple[float, float]:
            index, parts, words, label = self._suggest(trial, space)
            if self._paid_elsewhere(study, trial):
                raise optuna.TrialPruned("another worker is scoring this configuration")  # not counted, no call
            trial.set_user_attr("guidance_question", redact(space.pool[index]))
            trial.set_user_attr("parts", parts)  # also when fixed (not a param): each trial reads on its own
            no_words = "no limit" if "pp" in parts.split("+") else "no profile"
            trial.set_user_attr("profile_words", no_words if words is None else words)
            before = self.task_calls.snapshot()
            retrieval = BASE if label is None else retrieval_from_label(label, space.base_retrieval)
            program = self._build(base, space.pool[index], parts, words, retrieval)
            # A retrieval label joins the key only when the search has the parameter: existing studies keep theirs.
            key = f"g{index}|{parts}|w{words}" + ("" if label is None else f"|r{label}")
            try:
                # Optuna takes per-example reports (and prunes) only in a single-objective study.
                dev = race(study, None if multi else trial, key, valset,
                           score=self._scorer(program), batch=self.parallel, seed=self.seed + trial.number,
                           prune=self.settings["racing"] and not multi, progress=self._progress(study))
            except optuna.TrialPruned as stop:
                self._note(trial, before, None)
                self.report(_counted(study) + 1, self.settings["trials"], None,
                            f"guidance question #{index} parts {parts}: {stop}")
                raise
            record_scores(trial, dev, valset)
            used = self._note(trial, before, dev)
            # A trial with failed examples ends failed: its partial mean is shown as none, never as the best.
            self.report(_counted(study) + 1, self.settings["trials"], None if dev.failed else dev.mean(),
                        f"guidance question #{index} parts {parts} words {words or '-'}"
                        + ("" if label is None else f" retrieval {label}") + f"; {used.calls} calls"
                        + (f", {dev.reused} reused" if dev.reused else "")
                        + (f", {dev.failed} FAILED" if dev.failed else ""))
            if dev.failed:  # a score with failed examples counted as 0 would bias the search: fail the trial instead
                raise IncompleteTrial(f"{dev.failed} dev examples failed; their scores are retried on resume")
            return (dev.mean(), dev.mean_tokens()) if multi else dev.mean()

        return objective

    def _suggest(self, trial: optuna.Trial, space: _Space) -> tuple[int, str, int | None, str | None]:
        """The configuration a trial tries: guidance question (pool index), final-step parts, profile words, and
        the retrieval label when the search tries retrievers (else None: the base program's retrieval)."""
        index = trial.suggest_categorical(QUESTION_PARAM, list(range(len(space.pool))))
        parts = (trial.suggest_categorical("parts", PART_CHOICES) if self.settings["search_switches"]
                 else space.base_parts)
        words = None
        if space.base_words is not None and "pp" in parts.split("+"):
            words = trial.suggest_int("profile_words", space.grid[0], space.grid[-1], step=self.settings["word_step"])
        label = trial.suggest_categorical(RETRIEVAL_PARAM, space.retrievals) if space.retrievals else None
        return index, parts, words, label

    def _scorer(self, program: dspy.Module) -> Callable[[list[Example]], list[tuple[float, int, bool]]]:
        def score(examples: list[Example]) -> list[tuple[float, int, bool]]:
            done = self.attempts(program, examples)
            return [(tried.score, tokens, tried.error is not None) for tried, tokens in done]

        return score

    def _progress(self, study: optuna.Study) -> Callable[[DevScores, int], None] | None:
        """A line every PROGRESS_EVERY dev examples of the trial being scored (none when nothing is shown)."""
        if self.progress_fn is None:
            return None
        label, shown = f"{_counted(study) + 1}/{self.settings['trials']}", [0]

        def show(dev: DevScores, total: int) -> None:
            done = len(dev.scores) + dev.failed
            if done < total and done // PROGRESS_EVERY > shown[0]:
                shown[0] = done // PROGRESS_EVERY
                self._say(f"trial {label}: {done} of {total} dev examples, {dev.mean():.3f} so far")
        return show

    def _note(self, trial: optuna.Trial, before: Usage, dev: DevScores | None) -> Usage:
        """What a trial cost and scored, as attributes a person reads in optuna-dashboard."""
        used = usage_delta(self.task_calls.snapshot(), before)
        trial.set_user_attr("calls", used.calls)
        trial.set_user_attr("cache_hits", used.cache_hits)
        if dev is not None:
            trial.set_user_attr("tokens_per_example", round(dev.mean_tokens(), 1))
            trial.set_user_attr("reused_examples", dev.reused)
            trial.set_user_attr("paid_examples", dev.paid)
            trial.set_user_attr("failed_examples", dev.failed)
        return used

    @staticmethod
    def _paid_elsewhere(study: optuna.Study, trial: optuna.Trial) -> bool:
        """Whether an earlier trial still running (another worker's) has these parameters: the memo only holds
        finished examples, so both would pay for the same calls.  The earlier trial goes on, this one yields."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any(t.number < trial.number and t.params == trial.params for t in running)

    def _enough_trials(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if _counted(study) >= self.settings["trials"]:
            study.stop()

    def _budget_guard(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Stop before a trial that could overrun the budget (the run still exports the best so far)."""
        if self.search_budget is None:
            return
        if self.calls_spent() + self.per_trial > self.search_budget:
            self._say(f"stopping: another trial could exceed the budget "
                      f"({self.calls_spent()} of {self.search_budget} calls for the search spent)")
            study.stop()

    def _best(self, study: optuna.Study, base: dspy.Module, pool: list[str], multi: bool) -> dspy.Module:
        # The first `trials` trials to complete: a worker still finishing a trial after the count was reached
        # must not change the best, or workers that stop a moment apart would export different programs.
        complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                          key=lambda t: (t.datetime_complete, t.number))[: self.settings["trials"]]
        if not complete:
            raise ConfigError(f"optuna study {study.study_name!r} has no completed trial to export")
        if multi:
            front = sorted(_pareto_front(complete), key=lambda t: (-t.values[0], t.values[1], t.number))
            self.info["pareto_front"] = [self._describe(t, pool) for t in front]
            best = front[0]
        else:
            best = max(complete, key=lambda t: (t.value, -t.number))  # ties: the earliest (the hand-written first)
        self.info["best_trial"] = self._describe(best, pool)
        self.info["trials"] = [self._describe(t, pool) for t in complete]
        self.info["guidance_question_pool"] = pool
        self.info["racing"] = self._racing_savings(study)
        self.known_dev_score = best.values[0]
        ranked = [best, *(t for t in sorted(complete, key=lambda t: (-t.values[0], t.number)) if t is not best)]
        self.info["ranked_trials"] = [t.number for t in ranked]  # the confirm stage's search_ranks index this
        self.ranked = [self._from_trial(base, pool, t) for t in ranked]
        return self.ranked[0]

    def _from_trial(self, base: dspy.Module, pool: list[str], trial: optuna.trial.FrozenTrial) -> GuidedProfile:
        p = trial.params
        label = p.get(RETRIEVAL_PARAM, BASE)
        retrieval = BASE if label == BASE else retrieval_from_label(label, retrieval_of(base))
        return self._build(base, pool[p[QUESTION_PARAM]], p.get("parts", parts_of(base.switches)),
                           p.get("profile_words"), retrieval)

    def _unsearched_candidates(self) -> list[Candidate]:
        return [c for c in self.user_candidates if c.instructions]  # the search varies only their question

    def _racing_savings(self, study: optuna.Study) -> dict[str, int]:
        """Dev examples scored (paid now or reused) against a full evaluation of every trial that ran."""
        ran = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        ran = [t for t in ran if "paid_examples" in t.user_attrs]  # not those pruned before any call
        scored = sum(t.user_attrs["paid_examples"] + t.user_attrs.get("reused_examples", 0) for t in ran)
        full = sum(len(study.user_attrs.get("dev_ids", [])) for _ in ran)
        pruned = [t for t in ran if t.state == TrialState.PRUNED]
        return {"trials": len(ran), "pruned": len(pruned), "dev_examples_scored": scored,
                "full_evaluation": full, "saved": full - scored,
                "paid": sum(t.user_attrs["paid_examples"] for t in ran)}

    @staticmethod
    def _describe(trial: optuna.trial.FrozenTrial, pool: list[str]) -> dict[str, Any]:
        retrieval = {"retrieval": trial.params[RETRIEVAL_PARAM]} if RETRIEVAL_PARAM in trial.params else {}
        return {"trial": trial.number, "score": trial.values[0],
                "tokens_per_example": trial.user_attrs.get("tokens_per_example"),
                "guidance_question": pool[trial.params[QUESTION_PARAM]], "parts": trial.params.get("parts"),
                "profile_words": trial.params.get("profile_words"), "calls": trial.user_attrs.get("calls"), **retrieval}


def _retrieval_labels(settings: dict[str, Any]) -> list[str] | None:
    """The retrieval labels the search tries (`base` first), or None when `search_retrieval` is off (""):
    `search_retrieval` names retrievers ("bm25,recent"), `retrieval_k` the k values ("4,8"), both comma lists."""
    names = [n.strip() for n in str(settings["search_retrieval"]).split(",") if n.strip()]
    ks_text = [k.strip() for k in str(settings["retrieval_k"]).split(",") if k.strip()]
    if not names:
        if ks_text:
            raise ConfigError("optimizer 'optuna': retrieval_k needs search_retrieval, the retrievers to try "
                              "(e.g. search_retrieval=bm25,recent)")
        return None
    if not ks_text:
        raise ConfigError("optimizer 'optuna': search_retrieval needs retrieval_k, the k values to try (e.g. "
                          "retrieval_k=4,8)")
    if not all(k.isdigit() for k in ks_text):
        raise ConfigError(f"optimizer 'optuna': retrieval_k={settings['retrieval_k']!r} must list whole numbers "
                          "of at least 1, e.g. 4,8")
    return retrieval_choices(names, [int(k) for k in dict.fromkeys(ks_text)])
