"""Runs from plain options: the library behind `guided-profile run`, `compare` and `optimize`.

    from guided_profile.runs import RunSettings, run_methods

    settings = RunSettings.resolve(task="preference", data="sample", limit=5, lm="fake")
    result = run_methods(settings, ["dg-no-pc", "dg-pc", "pg", "gpg"], out="runs/library-demo")
    print(result.text_table())

Options that depend on each other are decided once, in `RunSettings.resolve`: `auto` becomes the
answer mode it means for the task, and a small context window shortens the default history.  The
result is frozen, so no later step rewrites what an earlier one decided, and the caller's arguments
are never touched.  Everything a run writes names its data portably (`real:amazon_scientific`) and
states the data hash, the git commit and the package version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.files import irregular, write_text
from guided_profile.lm.embedded import DEFAULT_CONTEXT
from guided_profile.optimizers.confirm import ConfirmSettings
from guided_profile.programs.adapter import DEFAULT_LAYOUT
from guided_profile.programs.conversation import DEFAULT_PROFILE_STEP, check_profile_step
from guided_profile.provenance import cached_data_sha256, from_portable, git_state, portable
from guided_profile.redaction import redact_json
from guided_profile.tasks.base import Task

if TYPE_CHECKING:  # heavy imports, only for the annotations
    import dspy

    from guided_profile.evaluation import RunFolder
    from guided_profile.lm.factory import LMSpec
    from guided_profile.optimizers import TaskMetric
    from guided_profile.optimizers.candidates import Candidate
    from guided_profile.programs.retrieved import Retrieval
    from guided_profile.store import ProfileStore

DEFAULT_CONFIRM = ConfirmSettings()  # 30% of the dev users confirm the search's best 3
DEFAULT_METHODS = ("dg-no-pc", "dg-pc", "pg", "gpg")
DEFAULT_STORE = "default"  # profiles.sqlite in the cache folder
Log = Callable[[str], None]


@dataclass(frozen=True)
class RunSettings:
    """Every option of a run, resolved.  Build it with `RunSettings.resolve(...)`.

    `answer_mode` is `generate` or `score`, never `auto`; `task_options` are the options given plus a
    `max_history_chars` fitted to the `context_window` when the window is small or the retriever `none`;
    `store` is the profile store's file, or None to run without one.  These are the values runs record and
    resumes compare.
    """

    task: str
    task_options: Mapping[str, Any]
    answer_mode: str
    data: str = "sample"
    split: str = "test"
    seed: int = 0
    limit: int | None = None
    lm: str = "local"
    api_base: str | None = None
    context_window: int = DEFAULT_CONTEXT
    threads: int | None = None
    draft_ngram: int | None = None
    parallel: int = 4
    cache: bool = True
    rotations: int = 4
    prompt_layout: str = DEFAULT_LAYOUT
    profile_step: str = DEFAULT_PROFILE_STEP
    store: Path | None = None
    retriever: str | None = None  # None: the task's default_retrieval (resolve fills it in)
    k: int | None = None
    retriever_options: Mapping[str, Any] = field(default_factory=dict)
    retrieval_steps: str = "all"

    @classmethod
    def resolve(cls, task: str = "preference", *, task_options: Mapping[str, Any] | None = None,
                answer_mode: str = "auto", store: Path | str | None = DEFAULT_STORE, **options: Any) -> RunSettings:
        """Settings from plain options (the keyword names are the fields').  `store`: a file,
        `"default"` (profiles.sqlite in the cache folder) or None (no store; also when cache=False)."""
        from guided_profile.lm.factory import check_draft_ngram
        from guided_profile.paths import cache_dir
        from guided_profile.programs.answer import resolve_answer_mode
        from guided_profile.tasks.base import history_chars_for_window

        fitted = dict(task_options or {})  # a copy: the caller's mapping stays as it was
        settings = cls(task=task, task_options=fitted, answer_mode=answer_mode, **options)
        built = settings.make_task()  # also refuses an unknown task or option before any work
        if settings.retriever is None:  # the task's default retriever, with its k unless --k says otherwise
            retriever, k = built.default_retrieval
            settings = replace(settings, retriever=retriever, k=settings.k if settings.k is not None else k)
        settings.retrieval  # noqa: B018  (likewise an unknown retriever, a missing k, a bad setting)
        settings.answer  # noqa: B018  (and an unknown prompt layout)
        check_profile_step(settings.profile_step)
        check_draft_ngram(settings.lm, settings.draft_ngram)  # and drafts for a model not run in this process
        fit = history_chars_for_window(settings.context_window)
        whole = settings.retriever == "none"  # every item the window holds, not the task's default budget
        if "max_history_chars" not in fitted and (whole or fit < built.max_history_chars):
            fitted["max_history_chars"] = fit  # else the task's default history would not fit a small window
        if store == DEFAULT_STORE:
            store = cache_dir() / "profiles.sqlite"
        return replace(settings, task_options=fitted, answer_mode=resolve_answer_mode(answer_mode, built.has_options),
                       store=Path(store) if store and settings.cache else None)

    def make_task(self) -> Task:
        from guided_profile.tasks import TASKS, get_task

        try:
            return get_task(self.task, seed=self.seed, **self.task_options)
        except TypeError as exc:
            known = TASKS[self.task].option_defaults()
            unknown = sorted(set(self.task_options) - set(known)) or sorted(self.task_options)
            raise ConfigError(f"--task-option {', '.join(unknown)}: the {self.task} task takes "
                              f"{', '.join(known)}") from exc

    def describe_lm(self) -> LMSpec:
        """`make_lm`'s identity, without loading the model."""
        from guided_profile.lm.factory import describe_lm

        return describe_lm(self.lm, api_base=self.api_base, context=self.context_window, draft_ngram=self.draft_ngram)

    def make_lm(self) -> tuple[dspy.LM, LMSpec]:
        from guided_profile.lm import make_lm

        return make_lm(self.lm, api_base=self.api_base, context=self.context_window, threads=self.threads,
                       n_parallel=self.parallel, cache=self.cache, stop_loops=self.stop_runaways,
                       draft_ngram=self.draft_ngram)

    @property
    def answer(self) -> dict[str, Any]:
        """How the programs answer (`answer_config`): what `build_program` takes and run folders state."""
        from guided_profile.programs.answer import answer_config

        return answer_config(self.answer_mode, self.rotations, self.prompt_layout)

    @property
    def program_options(self) -> dict[str, Any]:
        """What `build_program` takes besides the method and the retrieval: how the programs answer and how GPG
        formats its profile step; run folders state them all."""
        return {**self.answer, "profile_step": self.profile_step}

    @property
    def retrieval(self) -> Retrieval:
        """Which history items the methods' steps see (`--retriever`, `--k`; the task's default if not given)."""
        from guided_profile.programs.retrieved import Retrieval

        return Retrieval(self.retriever, self.k, self.retriever_options, self.retrieval_steps)

    @property
    def stop_runaways(self) -> bool:
        """The task option that turns on the fitted step caps and, with them, the model's repetition stop."""
        return bool(self.task_options.get("stop_runaways", False))

    def default_out(self, prefix: str = "") -> Path:
        """runs/[PREFIX-]TASK-SPLIT-DATA-LM-MODE-seedS: one folder per configuration, so a rerun resumes
        and a run on other data or in another answer mode (or prompt layout, or profile step) gets a folder of
        its own."""
        tag = "".join(c if c.isalnum() or c in ".-" else "_" for c in f"{Path(self.data).name}-{self.lm}")
        mode = self.answer_mode if self.answer_mode != "score" else f"score{self.rotations}"
        mode += "" if self.prompt_layout == DEFAULT_LAYOUT else f"-{self.prompt_layout}"  # default: earlier names
        mode += "" if self.profile_step == DEFAULT_PROFILE_STEP else f"-profile-{self.profile_step}"
        name = f"{prefix}{self.task}-{self.split}-{tag}-{mode}-seed{self.seed}"
        return Path("runs") / (name + self.retrieval_tag())

    def retrieval_tag(self) -> str:
        """'-bm25k8' (plus '-digest' or '-answer' for the switch) for a run that retrieves and '-none' for the
        whole history, so each gets its own default folder; '' without retrieval (earlier runs' folder names)."""
        r = self.retrieval
        if not r.active:
            return "-none" if r.retriever == "none" else ""
        return f"-{r.retriever}k{r.k}" + ("" if r.steps == "all" else f"-{r.steps}")


@dataclass(frozen=True)
class DataSource:
    """The examples a run reads and what identifies them anywhere: the portable name and the content hash."""

    path: Path
    name: str
    sha256: str
    examples: list[Example] = field(repr=False)
    stats: dict[str, int]

    def split(self, split: str, seed: int) -> list[Example]:
        from guided_profile.datasets.example import split_examples

        return split_examples(self.examples, split, seed)


def resolve_data(task: Task, data: str) -> Path:
    """The path `--data` means: 'sample', 'real', a portable name (`real:SUB`, `sample:SUB`) or a path."""
    from guided_profile.datasets.example import DATA_ROOT_ENV, data_root, samples_dir

    if data == "sample":
        return samples_dir() / task.sample_subdir
    if data == "real" or data.startswith("real:"):
        if data_root() is None:
            raise ConfigError(f"--data {data}: set ${DATA_ROOT_ENV} to the folder holding the real data sets "
                              "(no ../shared/data here)")
        path = from_portable(data if data.startswith("real:") else f"real:{task.data_subdir}")
    else:
        path = from_portable(data) if data.startswith("sample:") else Path(data).expanduser()
    if not path.exists():
        raise ConfigError(f"--data {data}: no such file or folder")
    return path


def load_data(task: Task, data: str) -> DataSource:
    """Every example the task builds from `data`, named and hashed as results record them."""
    path = resolve_data(task, data)
    examples, stats = task.load(path)
    return DataSource(path, portable(path, data), cached_data_sha256(path), examples, stats)


def load_split(task: Task, data: str, split: str, seed: int = 0,
               limit: int | None = None) -> tuple[list[Example], DataSource]:
    """(the first `limit` examples of `split`, their data source)."""
    source = load_data(task, data)
    selected = source.split(split, seed)[:limit]
    if not selected:
        raise ConfigError(f"no examples in split {split!r} of {source.name} (build stats: {source.stats})")
    return selected, source


def open_store(path: Path | None) -> ProfileStore:
    """The profile store at `path`, default `profiles.sqlite` in the cache folder."""
    from guided_profile.paths import cache_dir
    from guided_profile.store import ProfileStore

    return ProfileStore(path or cache_dir() / "profiles.sqlite")


def provenance(source: DataSource, n: int) -> dict[str, Any]:
    """What every result states about its origin beyond its options: n, the data hash, code and version."""
    from guided_profile import __version__

    return {"n": n, "data_sha256": source.sha256, "git": git_state(), "version": __version__}


def optimizer_settings() -> dict[str, set[str]]:
    """Each registered optimizer's name -> the settings it records (`get_params`): what a compiled program's
    `optimizer.settings` may name.  Loading checks against it, so compare.md never prints a forged setting."""
    from guided_profile.optimizers import OPTIMIZERS

    return {name: {"name", "seed", *cls.defaults} for name, cls in OPTIMIZERS.items()}


def library_command(function: str) -> str:
    """The `command` of a result made from Python rather than the command line."""
    return f"guided_profile.runs.{function}(...) (called from Python; the settings are in this file)"


@dataclass(frozen=True)
class RunResult:
    """What a run wrote (`out`), the configuration it states, and each method's summary."""

    out: Path
    config: dict[str, Any]
    summaries: dict[str, dict]
    task: Task

    def text_table(self) -> str:
        from guided_profile.report import summary_rows, text_table

        return text_table(*summary_rows(self.task, self.summaries))


def run_methods(settings: RunSettings, methods: Iterable[str] | None = None, programs: Iterable[Path | str] = (), *,
                out: Path | str | None = None, allow_overlap: bool = False, command: str | None = None,
                progress: bool = False, log: Log = print) -> RunResult:
    """Methods (default the paper's four, none when `programs` are given) and compiled programs on the
    first `limit` examples of the split; writes config.json, records.jsonl, summary.json and table.md
    to `out` (default `settings.default_out()`), resuming what is there."""
    from guided_profile.programs import build_program, canonical
    from guided_profile.report import markdown_table, provenance_line, summary_rows

    task = settings.make_task()
    programs = [Path(p) for p in programs]
    asked = DEFAULT_METHODS if methods is None and not programs else _names(methods or ())
    names = list(dict.fromkeys(canonical(m) for m in asked))
    built = {m: build_program(m, task, **settings.program_options, retrieval=settings.retrieval)
             for m in names}  # a bad name fails before any loading
    compiled, payloads = _load_programs(programs, task, taken=set(built))
    if not built and not compiled:
        raise ConfigError("nothing to run: give --methods or --program")
    _check_recorded_settings(settings, payloads)
    selected, source = load_split(task, settings.data, settings.split, settings.seed, settings.limit)
    log(f"{task.name}: built from {source.name} ({source.stats}); evaluating {len(selected)} examples of split "
        f"{settings.split}")
    out = Path(out) if out else settings.default_out()
    run, summaries = _evaluate(settings, task, built | compiled, payloads, programs, selected, source, out,
                               allow_overlap=allow_overlap, command=command or library_command("run_methods"),
                               progress=progress, log=log)
    with run:
        config = run.config
        header, rows = summary_rows(task, summaries)
        tuned_on = "".join(f"- {name}: {relation}\n" for name, relation in (config.get("held_out") or {}).items())
        held_out = f"Compiled programs, what they were tuned on:\n\n{tuned_on}\n" if tuned_on else ""
        write_text(out / "table.md", f"# {task.name}, split {settings.split}, lm {config['lm']['model']}\n\n"
                                     f"Command: `{config['command']}`\n\n{provenance_line(config)}\n\n"
                                     f"{held_out}{markdown_table(header, rows)}\n")
    return RunResult(out, config, summaries, task)


def _load_programs(paths: list[Path], task: Task, taken: set[str]) -> tuple[dict[str, dspy.Module], dict[str, dict]]:
    """Compiled programs by table name, and their files' content; anything but a regular file is refused
    first, since reading a named pipe blocks until something writes to it."""
    from guided_profile.programs.export import load_program_files

    for path in paths:
        kind = irregular(path)
        if kind:
            raise ConfigError(f"{path} is {kind}; expected a compiled program (a JSON file from `optimize`)")
    return load_program_files(paths, task, taken=taken, optimizer_settings=optimizer_settings())


def _names(given: Iterable[str | Path] | str) -> list[str]:
    """Names as a list; one string is read as the command line's comma list (never as its letters)."""
    items = given.split(",") if isinstance(given, str) else given
    return [str(item).strip() for item in items if str(item).strip()]


def _evaluate(settings: RunSettings, task: Task, programs: dict[str, dspy.Module], payloads: dict[str, dict],
              files: list[Path], examples: list[Example], source: DataSource, out: Path, *, allow_overlap: bool,
              command: str, progress: bool, log: Log) -> tuple[RunFolder, dict[str, dict]]:
    """The programs on the examples in the run folder `out`, after the held-out check; (folder, summaries)."""
    from tqdm import tqdm

    from guided_profile.evaluation import CONFIG, RunFolder, evaluate
    from guided_profile.held_out import check_held_out
    from guided_profile.lm.repetition import DEFAULT_LOOP_RULE

    relations = check_held_out(payloads, {p.stem: p for p in files}, data_sha256=source.sha256, seed=settings.seed,
                               evaluated=[ex.example_id for ex in examples],
                               task_options=dict(settings.task_options), allow_overlap=allow_overlap)
    for name, relation in relations.items():
        log(f"{name}: {relation}")
    programs = programs | _cold_start_row(settings, task, examples, log)
    identity = settings.describe_lm()
    # A new folder's model is loaded before the folder is made, so a load that fails leaves nothing behind; an
    # existing folder's only if it has examples left to run (evaluate calls the function then).
    lm = (lambda: settings.make_lm()[0]) if (out / CONFIG).exists() else settings.make_lm()[0]
    config = {"task": task.name, "task_options": dict(settings.task_options), "methods": list(programs),
              "data": source.name, "split": settings.split, "limit": settings.limit, "seed": settings.seed,
              "lm": identity.to_dict(), **settings.program_options,
              "retrieval": settings.retrieval.to_dict(), "step_max_tokens": task.step_max_tokens(),
              "loop_rule": DEFAULT_LOOP_RULE.to_dict() if settings.stop_runaways else None,
              "programs": {name: p["checksum"] for name, p in payloads.items()}, "build_stats": source.stats,
              **provenance(source, len(examples)), "command": command}
    if payloads:
        config |= {"held_out": relations, "allow_overlap": allow_overlap}
    run = RunFolder.open(out, config)

    def bar(total: int) -> tqdm:
        return tqdm(desc=f"{task.name} x {len(programs)}", total=total, disable=not progress, unit="run")

    try:
        store = open_store(settings.store) if settings.store else None
        summaries = evaluate(programs, task, examples, lm, run, workers=settings.parallel, store=store, progress=bar)
    except BaseException:
        run.close()
        raise
    return run, summaries  # still locked: the caller writes its reports, then closes it


def _cold_start_row(settings: RunSettings, task: Task, examples: list[Example], log: Log) -> dict[str, dspy.Module]:
    """The task's fallback program under its row name, if some examples are cold-start users (too short a
    history for the other programs: `Task.is_cold_start`); evaluation gives it those users and nothing else."""
    from guided_profile.programs.methods import build_program, cold_start_method

    cold = sum(task.is_cold_start(ex) for ex in examples)
    if not cold:
        return {}
    name = cold_start_method(task)
    log(f"{cold} of {len(examples)} users have fewer than {task.min_history_items} history items: answered by "
        f"{task.cold_start_fallback}, in the row {name}")
    return {name: build_program(name, task, **settings.program_options)}


@dataclass(frozen=True)
class CompareResult:
    """The comparison's rows (paired statistics against the hand-written GPG) and the files written."""

    out: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    task: Task
    report: Path
    chart: Path

    def text_table(self) -> str:
        from guided_profile.compare import table
        from guided_profile.report import text_table

        return text_table(*table(self.task, self.rows))


def compare_programs(settings: RunSettings, programs: Iterable[str], *, out: Path | str | None = None,
                     allow_overlap: bool = False, command: str | None = None, progress: bool = False,
                     log: Log = print) -> CompareResult:
    """The hand-written GPG (`handwritten`, always included) against compiled programs (`.json` files) or
    method names on the same users; writes compare.md and compare.png beside the run's records."""
    from guided_profile.compare import REFERENCE, chart, comparison_rows, markdown_report
    from guided_profile.programs import build_program
    from guided_profile.programs.methods import is_cold_start

    task = settings.make_task()
    specs = _names(programs)
    files = [Path(s) for s in specs if s.endswith(".json")]
    names = list(dict.fromkeys([REFERENCE, *(s for s in specs if not s.endswith(".json"))]))
    built = {name: build_program("gpg" if name == REFERENCE else name, task, **settings.program_options,
                                 retrieval=settings.retrieval) for name in names}
    compiled, payloads = _load_programs(files, task, taken=set(built))
    _check_recorded_settings(settings, payloads)
    built |= compiled
    if len(built) < 2:
        raise ConfigError("compare needs at least one program besides handwritten")
    if settings.split in ("train", "dev"):
        log(f"note: split {settings.split} was seen by the optimizers; only the test split gives an unbiased "
            "comparison")
    selected, source = load_split(task, settings.data, settings.split, settings.seed, settings.limit)
    log(f"{task.name}: {len(built)} programs on {len(selected)} examples of split {settings.split} from {source.name}")
    out = Path(out) if out else settings.default_out("compare-")
    run, summaries = _evaluate(settings, task, built, payloads, files, selected, source, out,
                               allow_overlap=allow_overlap, command=command or library_command("compare_programs"),
                               progress=progress, log=log)
    with run:
        config = run.config
        # not programs compared earlier in this folder; the cold-start row answers the users the others leave
        summaries = {name: s for name, s in summaries.items() if name in built or is_cold_start(name)}
        rows = comparison_rows(task, summaries, run.done, selected, payloads=payloads)
        png = chart(task, rows, out / "compare.png")
        report = out / "compare.md"
        write_text(report, markdown_report(task, rows, built, payloads, config, png.name) + "\n")
    return CompareResult(out, config, rows, task, report, png)


def _check_recorded_settings(settings: RunSettings, payloads: dict[str, dict]) -> None:
    """Every compiled program uses the prompt settings the run records (run and compare alike)."""
    _check_answer_modes(settings, payloads)
    _check_profile_steps(settings, payloads)


def _check_answer_modes(settings: RunSettings, payloads: dict[str, dict]) -> None:
    """Every program answers the way the run asks: a run folder records one way of answering (mode, rotations,
    prompt layout), and a paired difference between programs that answer differently would mostly measure that."""
    from guided_profile.programs.answer import answer_config

    asked = settings.answer
    for name, payload in payloads.items():
        theirs = answer_config(**payload["answer"])
        if theirs != asked:
            raise ConfigError(f"{name} answers with {theirs}, this run with {asked}: a run records one way of "
                              f"answering; rerun with --answer-mode {theirs['answer_mode']}"
                              + (f" --rotations {theirs['rotations']}" if theirs["rotations"] else "")
                              + f" --prompt-layout {theirs['prompt_layout']}")


def _check_profile_steps(settings: RunSettings, payloads: dict[str, dict]) -> None:
    """Every compiled GPG program formats its profile step the way the run records (its profiles, and so its
    answers, come from another prompt otherwise); the other methods have no profile step to continue."""
    for name, payload in payloads.items():
        theirs, method = payload["profile_step"], payload["method"]
        if (method == "gpg" or method.startswith("gpg:")) and theirs != settings.profile_step:
            raise ConfigError(f"{name} formats its profile step {theirs}, this run {settings.profile_step}: a run "
                              f"records one; rerun with --profile-step {theirs}")


# Sized for the confirm stage (issue 18: confirm >= 40 users): 160 dev users of the real preference data split
# 116 for the search and 44 to confirm with seed 0 (150 would give 39), 111 and 49 with seed 1.
# DEFAULT_BUDGET is a safety stop just above the largest default plan, as `optimize --lm fake --data real` prints
# them on those users (score mode: optuna 6,747, copro 7,446, mipro 5,130, gepa 3,137; generate mode about half);
# tests/test_optimizers.py checks that every default plan fits.
DEFAULT_BUDGET = 7600
DEFAULT_TRAIN_LIMIT = 20
DEFAULT_DEV_LIMIT = 160


@dataclass(frozen=True)
class Optimized:
    """A tuned program, what the exported file holds, and the instructions before and after.

    `verdict` is the confirm stage's conclusion (`Verdict.to_dict()`, with its one `line` in plain
    words), or None when the stage was off.
    """

    program: dspy.Module
    payload: dict[str, Any]
    handwritten: dict[str, str]
    tuned: dict[str, str]
    scores: dict[str, Any]
    usage: dict[str, Any]
    seconds: float
    verdict: dict[str, Any] | None = None
    out: Path | None = None

    def text(self) -> str:
        """What `optimize` prints at the end: scores, instructions, cost, the file, and the verdict last,
        so the one line that says whether to trust the result is the last thing read."""
        s, u = self.scores, self.usage
        lines = [f"{s['objective']}: train {_num(s['train'])}, dev {_num(s['dev'])} (dev: {s.get('dev_on', 'dev')})"]
        lines += [f"{name}: train {_num(v.get('train'))}, dev {_num(v.get('dev'))}"
                  for name, v in s.items() if isinstance(v, dict)]  # the task's reported metric, beside
        lines += [f"{name} ({'unchanged' if text == self.handwritten.get(name) else 'tuned'}): {text}"
                  for name, text in self.tuned.items()]
        lines.append(f"LM calls: {u['calls']} of {u['expected_calls']} expected (budget {u['budget']}); "
                     f"{u['model_calls']} reached a model, the rest came from DSPy's cache; {self.seconds:.0f} s")
        racing = (self.payload.get("optimizer") or {}).get("info", {}).get("racing")
        if racing:
            lines.append(f"racing: {racing['pruned']} of {racing['trials']} trials pruned, "
                         f"{racing['dev_examples_scored']} dev evaluations instead of {racing['full_evaluation']} "
                         f"(saved {racing['saved']})")
        if self.out is not None:
            lines.append(f"compiled program written to {self.out}")
        lines.append(self.verdict["line"] if self.verdict else
                     "no confirm stage (confirm fraction 0): the search's best is exported, unconfirmed")
        return "\n".join(lines)


def optimize_program(settings: RunSettings, optimizer: str, out: Path | str, *,
                     options: Mapping[str, Any] | None = None, method: str = "gpg",
                     run_dir: Path | str | None = None, budget: int = DEFAULT_BUDGET,
                     train_limit: int = DEFAULT_TRAIN_LIMIT, dev_limit: int = DEFAULT_DEV_LIMIT,
                     objective: str | None = None, confirm: ConfirmSettings = DEFAULT_CONFIRM,
                     user_candidates_file: Path | str | None = None,
                     prompt_lm: str | None = None, prompt_api_base: str | None = None, command: str | None = None,
                     log: Log = print) -> Optimized:
    """Tune `method`'s instructions with `optimizer` on a seeded sample of the train split, select on the
    dev split (the test split is never read), and export the result to `out` (one JSON file) with what
    it was made from: model, data name and hash, seed, the train and dev example ids.

    `objective` (default the task's for the answer mode) is what every optimizer maximises; `confirm`
    holds part of the dev users out of the search, and the search's best is exported only if it beats
    the hand-written program there (`ConfirmSettings(fraction=0)`: no stage); `user_candidates_file`
    holds guidance questions a person wrote (`optimizers/candidates.py` gives the format).
    """
    from guided_profile.lm.factory import check_api_base
    from guided_profile.lm.transport import check_reachable
    from guided_profile.optimizers import get_optimizer, optimizer_class, run_optimizer
    from guided_profile.programs.export import instructions, save_compiled

    options = dict(options or {})
    optimizer_class(optimizer).validate_settings(options)  # a bad name or value fails before anything is loaded
    check_api_base(prompt_api_base, option="--prompt-api-base")
    task = settings.make_task()
    program, metric, candidates = _optimization_inputs(settings, task, method, objective, user_candidates_file)
    source, trainset, valset = _tuning_sets(task, settings, train_limit, dev_limit, log)
    lm, identity = settings.make_lm()  # as many server slots as examples scored at once (`parallel`)
    check_reachable(lm, identity)  # before any budget is spent on a server that is down
    prompt, prompt_identity = _prompt_lm(settings, identity, prompt_lm, prompt_api_base)
    out = Path(out)
    run_dir = Path(run_dir) if run_dir else out.with_suffix(".run")
    tuner = get_optimizer(optimizer, task=task, task_lm=lm, prompt_lm=prompt, metric=metric, seed=settings.seed,
                          workdir=run_dir, confirm=confirm, user_candidates=candidates, parallel=settings.parallel,
                          **options)
    handwritten = instructions(program)
    result = run_optimizer(tuner, program, trainset=trainset, valset=valset, budget=budget, log=log)
    info = dict(result.info)
    stage = info.pop("confirm", None)  # recorded at the top of the file, not among the search's findings
    metadata = {
        "base_method": method, "handwritten_instructions": handwritten, "objective": metric.objective,
        "confirm": stage or {"settings": asdict(confirm), "verdict": None},
        "user_candidates": _candidates_record(user_candidates_file, candidates),
        "optimizer": {"name": tuner.name, "settings": _portable_storage(tuner.get_params(), run_dir),
                      "info": _portable_storage(info, run_dir)},
        "lm": identity.to_dict(), "prompt_lm": prompt_identity.to_dict(), "task_options": dict(settings.task_options),
        "data": _tuning_data(source, settings.seed, trainset, valset, {"train": train_limit, "dev": dev_limit}),
        "scores": result.scores, "usage": result.usage, "seconds": result.seconds,
        **{k: v for k, v in provenance(source, len(trainset) + len(valset)).items() if k in ("git", "version")},
        "created": _now(), "command": command or library_command("optimize_program"),
    }
    payload = save_compiled(out, result.program, task, redact_json(metadata))  # errors and proposals may quote a URL
    return Optimized(result.program, payload, handwritten, instructions(result.program), result.scores, result.usage,
                     result.seconds, stage["verdict"] if stage else None, out)


def _optimization_inputs(settings: RunSettings, task: Task, method: str, objective: str | None,
                         candidates_file: Path | str | None) -> tuple[dspy.Module, TaskMetric, list[Candidate]]:
    """(the program to start from, the metric of the chosen objective, the user's candidates), all checked
    before any data is loaded or any call made: a wrong objective or file fails in a second, not after a search."""
    from guided_profile.optimizers import TaskMetric
    from guided_profile.optimizers.candidates import read_candidates, with_candidate
    from guided_profile.programs import build_program

    program = build_program(method, task, **settings.program_options, retrieval=settings.retrieval)
    chosen = task.check_objective(objective or task.default_objective(settings.answer_mode), settings.answer_mode)
    candidates = []
    if candidates_file is not None:
        steps = tuple(name for name, _ in program.named_predictors())
        candidates = read_candidates(Path(candidates_file), steps=steps)
        for candidate in candidates:
            with_candidate(program, candidate)  # refuses a program without a guidance step, now
    return program, TaskMetric(task, objective=chosen), candidates


def _tuning_sets(task: Task, settings: RunSettings, train_limit: int, dev_limit: int,
                 log: Log) -> tuple[DataSource, list[Example], list[Example]]:
    """(the data source, seeded samples of its train and dev splits); the test split is only counted."""
    from guided_profile.datasets.example import subsample

    source = load_data(task, settings.data)
    train_all, dev_all = source.split("train", settings.seed), source.split("dev", settings.seed)
    trainset = subsample(train_all, train_limit, settings.seed)
    valset = subsample(dev_all, dev_limit, settings.seed + 1)
    if not trainset or not valset:
        raise ConfigError(f"{source.name}: {len(train_all)} train and {len(dev_all)} dev examples; an optimizer needs "
                          f"both (build stats: {source.stats})")
    log(f"{task.name}: {len(trainset)} of {len(train_all)} train and {len(valset)} of {len(dev_all)} dev examples "
        f"from {source.name}; the test split is not read")
    return source, trainset, valset


def _prompt_lm(settings: RunSettings, identity: LMSpec, prompt_lm: str | None,
               prompt_api_base: str | None) -> tuple[dspy.LM | None, LMSpec]:
    """The prompt model and its identity; None (a copy of the task model) unless another model is named."""
    from guided_profile.lm import make_lm
    from guided_profile.lm.transport import check_reachable

    if not prompt_lm or prompt_lm == settings.lm:
        return None, identity
    prompt, prompt_identity = make_lm(prompt_lm, api_base=prompt_api_base or settings.api_base,
                                      context=settings.context_window, threads=settings.threads, cache=settings.cache)
    check_reachable(prompt, prompt_identity)
    return prompt, prompt_identity


def _candidates_record(path: Path | str | None, candidates: list[Candidate]) -> dict[str, Any] | None:
    """What the file records of the user's candidates: the file's name (not this machine's folder) and
    the candidates themselves, so the export says what was compared even after the file changes."""
    if path is None:
        return None
    return {"file": Path(path).name, "candidates": [asdict(c) for c in candidates]}


def _tuning_data(source: DataSource, seed: int, trainset: list[Example], valset: list[Example],
                 limits: dict[str, int]) -> dict[str, Any]:
    """The data identity a compiled program records, which the held-out check later reads."""
    return {"path": source.name, "sha256": source.sha256, "seed": seed, "build_stats": source.stats,
            "split_sizes": {s: len(source.split(s, seed)) for s in ("train", "dev", "test")},  # test: only counted
            "used": {"train": len(trainset), "dev": len(valset)}, "limits": limits,
            "train_ids": [ex.example_id for ex in trainset], "dev_ids": [ex.example_id for ex in valset]}


def _portable_storage(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Settings fit for the file: a storage URL loses its password, and the default SQLite study is named
    relative to the run folder (`study.db`) rather than by this machine's path."""
    default = f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"

    def fit(value: Any) -> Any:
        return "study.db" if value == default else redact_json(value)

    return {k: fit(v) if k == "storage" and isinstance(v, str) else v for k, v in params.items()}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
