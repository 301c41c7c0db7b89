"""Options and helpers shared by several subcommands (model, data, task settings)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guided_profile.errors import ConfigError
from guided_profile.redaction import redact
from guided_profile.tasks.base import Task

if TYPE_CHECKING:  # heavy imports, only for the annotations
    import dspy

    from guided_profile.datasets.example import Example
    from guided_profile.evaluation import RunFolder
    from guided_profile.lm.factory import LMSpec
    from guided_profile.store import ProfileStore

FORMATTER = argparse.RawDescriptionHelpFormatter


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts and sizes (argparse turns the error into one usage line, exit 2)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type for limits where 0 means 'all'."""
    return _whole_number(text, 0)


def command_line(args: argparse.Namespace) -> str:
    """The command that made a result, as recorded beside it: quoted so it can be pasted back into a
    shell, with any password in a URL (`--api-base`, `--option storage=...`) replaced by ***."""
    import shlex
    import sys


    argv = getattr(args, "argv", None)  # set by cli.main; absent if a subcommand's main is called directly
    return redact(shlex.join(["guided-profile", *(sys.argv[1:] if argv is None else argv)]))


def add_lm_options(parser: argparse.ArgumentParser, *, parallel: bool = True) -> None:
    """--lm and friends; `parallel=False` for commands that send one request at a time (optimize)."""
    group = parser.add_argument_group("model")
    group.add_argument("--lm", default="local",
                       help="local (embedded Qwen2.5-Coder-1.5B, default), local-0.5b (fast checks), "
                            "gguf:/path/model.gguf, fake (scripted replies, for dry runs), or a DSPy model "
                            "string such as openai/gpt-4o-mini")
    group.add_argument("--api-base", default=None,
                       help="base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp) for --lm openai/NAME; "
                            "the key is read from $OPENAI_API_KEY and never written anywhere")
    group.add_argument("--context", type=positive_int, default=8192,
                       help="context window per request for in-process models (default 8192); a window under "
                            "4,000 tokens also shortens the default history to fit (see README, data)")
    group.add_argument("--threads", type=positive_int, default=None, help="llama.cpp threads (default: all cores)")
    if parallel:
        group.add_argument("--parallel", type=positive_int, default=4,
                           help="examples evaluated at once; in-process models get as many server slots "
                                "(continuous batching). Default 4, measured fastest on 2 cores; batching changes "
                                "greedy replies slightly, so use 1 where runs must repeat exactly")
    group.add_argument("--no-cache", action="store_true",
                       help="do not reuse DSPy's cached answers nor the profile store (every call goes to the model)")


def add_data_options(parser: argparse.ArgumentParser, *, default_split: str = "test",
                     default_limit: int | None = None) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--task", default="preference", help="task name (see `guided-profile tasks`)")
    group.add_argument("--data", default="sample",
                       help="'sample' (the small committed sample, default), 'real' (the task's folder under "
                            "$GUIDED_PROFILE_DATA, else ../shared/data), or a path to the data")
    group.add_argument("--split", default=default_split, choices=["train", "dev", "test", "all"],
                       help=f"users of which split (split by user, seeded; default {default_split})")
    group.add_argument("--limit", type=positive_int, default=default_limit,
                       help="use the first N examples of the split"
                            + (f" (default {default_limit})" if default_limit else " (default: all)"))
    group.add_argument("--seed", type=int, default=0, help="seed for building examples and splitting users")
    group.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                       help="a task setting (repeatable), e.g. max_history_chars=6000; each task's settings and "
                            "defaults: `guided-profile tasks`")


def parse_task_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--task-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def make_task(args: argparse.Namespace) -> tuple[Task, dict]:
    """The task the options name; also turns `--answer-mode auto` into the mode it means for this task."""
    from guided_profile.programs.answer import resolve_answer_mode
    from guided_profile.tasks import get_task
    from guided_profile.tasks.base import history_chars_for_window

    options = parse_task_options(args.task_option)
    try:
        task = get_task(args.task, seed=args.seed, **options)
    except TypeError as exc:
        raise ConfigError(f"--task-option: {exc}") from exc
    window = getattr(args, "context", None)
    if window and "max_history_chars" not in options:
        fit = history_chars_for_window(window)
        if fit < task.max_history_chars:  # the task's default history would not fit a small window
            options["max_history_chars"] = task.max_history_chars = fit
    if getattr(args, "answer_mode", None):
        args.answer_mode = resolve_answer_mode(args.answer_mode, task.has_options)
    return task, options


def resolve_data(task: Task, data: str) -> Path:
    from guided_profile.datasets.example import DATA_ROOT_ENV, data_root, samples_dir

    if data == "sample":
        return samples_dir() / task.sample_subdir
    if data == "real":
        root = data_root()
        if root is None:
            raise ConfigError(f"--data real: set ${DATA_ROOT_ENV} to the folder holding the real data sets "
                              "(no ../shared/data here)")
        return root / task.data_subdir
    path = Path(data).expanduser()
    if not path.exists():
        raise ConfigError(f"--data {data}: no such file or folder")
    return path


def load_split(task: Task, args: argparse.Namespace) -> tuple[list[Example], Path, dict[str, int]]:
    """(the first --limit examples of --split, data path, build stats)."""
    from guided_profile.datasets.example import split_examples

    data = resolve_data(task, args.data)
    examples, stats = task.load(data)
    selected = split_examples(examples, args.split, args.seed)[: args.limit]
    if not selected:
        raise ConfigError(f"no examples in split {args.split!r} of {data} (build stats: {stats})")
    return selected, data, stats


def default_out(args: argparse.Namespace, task: Task, prefix: str = "") -> Path:
    """`--out`, else runs/[PREFIX-]TASK-SPLIT-DATA-LM-MODE-seedS: one folder per configuration, so a rerun
    resumes and a run on other data or in another answer mode gets a folder of its own."""
    if args.out:
        return args.out
    tag = "".join(c if c.isalnum() or c in ".-" else "_" for c in f"{Path(args.data).name}-{args.lm}")
    mode = args.answer_mode if args.answer_mode != "score" else f"score{args.rotations}"
    return Path("runs") / f"{prefix}{task.name}-{args.split}-{tag}-{mode}-seed{args.seed}"


def make_lm_from_args(args: argparse.Namespace) -> tuple[dspy.LM, LMSpec]:
    from guided_profile.lm import make_lm

    return make_lm(args.lm, api_base=args.api_base, context=args.context, threads=args.threads,
                   n_parallel=getattr(args, "parallel", 1), cache=not args.no_cache)


def open_store(path: Path | None) -> ProfileStore:
    """The profile store at `path`, default `profiles.sqlite` in the cache folder."""
    from guided_profile.paths import cache_dir
    from guided_profile.store import ProfileStore

    return ProfileStore(path or cache_dir() / "profiles.sqlite")


def add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    """How programs answer and what a run reuses: shared by `run` and `compare`."""
    group = parser.add_argument_group("evaluation")
    group.add_argument("--answer-mode", default="auto", choices=["auto", "generate", "score"],
                       help="choice tasks: 'generate' writes a reply and parses it (the paper's way; it can "
                            "abstain), 'score' reads each option letter's probability, averaged over rotations "
                            "of the option order; 'auto' (default) scores where the task has options and "
                            "generates otherwise. `run` answers with each compiled program's own mode; `compare` "
                            "refuses a compiled program whose mode differs from this one")
    group.add_argument("--rotations", type=positive_int, default=4,
                       help="score mode: cyclic rotations of the option order (1 = plain, 4 = every option "
                            "in every position; default 4)")
    group.add_argument("--store", type=Path, default=None,
                       help="profile store (SQLite) for digestions and profiles, reused across methods and runs "
                            "(default: profiles.sqlite in the cache folder)")
    group.add_argument("--no-store", action="store_true",
                       help="run without the profile store (also implied by --no-cache)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_config(args: argparse.Namespace, task: Task, task_options: dict, methods: list[str], data: Path,
               stats: dict, identity: LMSpec, payloads: dict) -> dict[str, Any]:
    """What a run folder records about how it was made (and checks when it is resumed)."""
    from guided_profile import __version__
    from guided_profile.programs.answer import answer_config

    return {"task": task.name, "task_options": task_options, "methods": methods, "data": str(data),
            "split": args.split, "limit": args.limit, "seed": args.seed, "lm": identity.to_dict(),
            **answer_config(args.answer_mode, args.rotations),
            "programs": {name: p["checksum"] for name, p in payloads.items()}, "build_stats": stats,
            "version": __version__, "command": command_line(args)}


def evaluate_with_progress(args: argparse.Namespace, programs: dict[str, dspy.Module], task: Task,
                           examples: list[Example], lm: dspy.LM, run: RunFolder, desc: str) -> dict[str, dict]:
    """`evaluation.evaluate` with a progress bar and the profile store as the options ask."""
    from tqdm import tqdm

    from guided_profile.evaluation import evaluate

    def progress(total: int) -> tqdm:
        return tqdm(desc=desc, total=total, disable=args.no_progress, unit="run")

    store = None if args.no_store or args.no_cache else open_store(args.store)
    return evaluate(programs, task, examples, lm, run, workers=args.parallel, store=store, progress=progress)
