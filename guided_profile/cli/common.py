"""Options and helpers shared by several subcommands (model, data, task settings)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from guided_profile import json_text
from guided_profile.errors import ConfigError
from guided_profile.redaction import redact

if TYPE_CHECKING:  # heavy imports, only for the annotations
    from guided_profile.runs import RunSettings

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


class Renamed(argparse.Action):
    """An old option name kept for a while: it still works, and says its new name once.  (`--context`
    became `--context-window`, because "context" also names the person's history.)"""

    def __init__(self, *args, new_name: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.new_name = new_name

    def __call__(self, parser, namespace, values, option_string=None):
        import sys

        print(f"note: {option_string} is now {self.new_name}; the old name will go", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_lm_options(parser: argparse.ArgumentParser, *, parallel: bool = True, in_process: bool = False) -> None:
    """--lm and friends; `parallel=False` for commands that send one request at a time (optimize),
    `in_process=True` for the benchmark, which measures an in-process model with every cache off."""
    group = parser.add_argument_group("model")
    group.add_argument("--lm", default="local",
                       help="local (embedded Qwen2.5-Coder-1.5B, default), local-0.5b (fast checks), "
                            "gguf:/path/model.gguf, fake (scripted replies, for dry runs), or a DSPy model "
                            "string such as openai/gpt-4o-mini" + ("; bench: in-process models only" if in_process
                                                                   else ""))
    if not in_process:
        group.add_argument("--api-base", default=None,
                           help="base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp) for --lm "
                                "openai/NAME (default: $OPENAI_BASE_URL, else $OPENAI_API_BASE, as LiteLLM reads them; "
                                "else none); the key is read from $OPENAI_API_KEY and never written")
    group.add_argument("--context-window", type=positive_int, default=8192,
                       help="the model's context window per request, in tokens, for in-process models (default "
                            "8192); a window under 4,000 tokens also shortens the default history to fit (see "
                            "README, data)")
    group.add_argument("--context", type=positive_int, dest="context_window", default=argparse.SUPPRESS,
                       action=Renamed, new_name="--context-window", help=argparse.SUPPRESS)
    group.add_argument("--threads", type=positive_int, default=None, help="llama.cpp threads (default: all cores)")
    if not in_process:  # the benchmark has its own configuration for it
        group.add_argument("--draft-ngram", type=positive_int, default=None, metavar="N",
                           help="in-process models: self-speculative decoding (llama.cpp's ngram-simple): where the "
                                "last N tokens occurred earlier in the prompt or reply, draft what followed them "
                                "there, checked in one batch. Default: off (slower on a 2-core CPU: README, Models); "
                                "recorded with the model in config.json")
    if parallel:
        group.add_argument("--parallel", type=positive_int, default=4,
                           help="examples evaluated at once; in-process models get as many server slots "
                                "(continuous batching). Default 4, measured fastest on 2 cores; batching changes "
                                "greedy replies slightly, so use 1 where runs must repeat exactly")
    if not in_process:
        group.add_argument("--no-cache", action="store_true",
                           help="do not reuse DSPy's cached answers nor the profile store (every call goes to the "
                                "model; default: both are reused)")


def add_data_options(parser: argparse.ArgumentParser, *, default_split: str = "test",
                     default_limit: int | None = None, splits: bool = True) -> argparse._ArgumentGroup:
    """--task, --data, --seed, --task-option, and unless `splits=False` (optimize reads train and dev
    itself) --split and --limit.  Returns the group, for a command's own data options."""
    group = parser.add_argument_group("data")
    group.add_argument("--task", default="preference",
                       help="task name (default preference; see `guided-profile tasks`)")
    group.add_argument("--data", default="sample",
                       help="'sample' (the small committed sample, default), 'real' (the task's folder under "
                            "$GUIDED_PROFILE_DATA, else ../shared/data), a name results record (real:SUB, "
                            "sample:SUB), or a path to the data")
    if splits:
        group.add_argument("--split", default=default_split, choices=["train", "dev", "test", "all"],
                           help=f"users of which split (split by user, seeded; default {default_split})")
        group.add_argument("--limit", type=positive_int, default=default_limit,
                           help="use the first N examples of the split"
                                + (f" (default {default_limit})" if default_limit else " (default: all)"))
    group.add_argument("--seed", type=int, default=0,
                       help="seed for building examples, splitting users and sampling (default 0)")
    group.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                       help="a task setting (repeatable), e.g. max_history_chars=6000; each task's settings and "
                            "defaults: `guided-profile tasks`")
    return group


def parse_task_options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs as a dict, each value read as JSON where it is (numbers, true/false), else as text."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--task-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json_text.loads(value)
        except ValueError:
            options[key] = value
    return options


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
    add_prompt_layout_option(group)
    add_profile_step_option(group)
    group.add_argument("--store", type=Path, default=None,
                       help="profile store (SQLite) for digestions and profiles, reused across methods and runs "
                            "(default: profiles.sqlite in the cache folder)")
    group.add_argument("--no-store", action="store_true",
                       help="run without the profile store (also implied by --no-cache)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--allow-overlap", action="store_true",
                       help="evaluate a compiled program even on users it was tuned on (same data with another split "
                            "seed, or its train/dev examples in the evaluated split); recorded in config.json. "
                            "Default: refused with one line")


def add_prompt_layout_option(group: argparse._ActionsContainer) -> None:
    """--prompt-layout: where the answer step states its instruction (run, compare, optimize)."""
    from guided_profile.programs.adapter import DEFAULT_LAYOUT, PROMPT_LAYOUTS

    group.add_argument("--prompt-layout", default=DEFAULT_LAYOUT, choices=PROMPT_LAYOUTS,
                       help=f"choice tasks: where the answer step states its instruction: {DEFAULT_LAYOUT} (default; "
                            "after the options, the prompt every earlier run used) or options-last (before the "
                            "options, so score mode's rotations share everything but the options and compute fewer "
                            "tokens; same accuracy on 60 dev users, no measurable time saved: README). Recorded in "
                            "config.json and compiled programs")


def add_profile_step_option(group: argparse._ActionsContainer) -> None:
    """--profile-step: how GPG formats its profile step (run, compare, optimize)."""
    from guided_profile.programs.conversation import DEFAULT_PROFILE_STEP, PROFILE_STEPS

    group.add_argument("--profile-step", default=DEFAULT_PROFILE_STEP, choices=PROFILE_STEPS,
                       help="GPG: how the profile step reads the history and the guidance answer: "
                            f"{DEFAULT_PROFILE_STEP} (default; a prompt of its own that repeats both, as every "
                            "earlier run did) or continued (the next turn of the digestion's conversation, so a "
                            "prefix cache computes only the profile instruction; on 60 dev users -3.3 points, not "
                            "significant: README). "
                            "The final step never sees the digestion's conversation. Recorded in config.json and "
                            "compiled programs")


def add_retrieval_options(parser: argparse.ArgumentParser) -> None:
    """--retriever, --k and friends: which history items the programs' steps see (run, compare, optimize)."""
    group = parser.add_argument_group("retrieval")
    group.add_argument("--retriever", default=None,
                       help="which history items the steps see: recent (the last k; without --k exactly the "
                            "history runs used before retrieval, cut to max_history_chars), none (every item the "
                            "context window holds: max_history_chars fitted to --context-window unless given), "
                            "bm25, dense (MiniLM). Default: the task's, chosen on dev users (`guided-profile "
                            "tasks` lists them): bm25 with k 4 for preference, recent with every item for the "
                            "others. Recorded in config.json, every record and compiled programs")
    group.add_argument("--k", type=positive_int, default=None,
                       help="history items to keep (needed by bm25 and dense; default: the task's k with its "
                            "retriever, else every item), before the max_history_chars cut")
    group.add_argument("--retriever-option", action="append", default=[], metavar="KEY=VALUE",
                       help="a retriever setting (repeatable), e.g. k1=1.2 for bm25 (default: the retriever's "
                            f"own: {_retriever_defaults()})")
    group.add_argument("--retrieval-steps", default="all", choices=["all", "digest", "answer"],
                       help="which steps see the retrieved items: all (default), digest (digestion and profile; "
                            "the final step reads the recent history), answer (the reverse)")


def _retriever_defaults() -> str:
    """'bm25 k1=1.5, b=0.75; dense model=all-MiniLM-L6-v2': the registered retrievers' settings when none is given."""
    from guided_profile.programs.retrieved import default_settings
    from guided_profile.retrieval import RETRIEVERS

    settings = {name: default_settings(name) for name in RETRIEVERS}
    return "; ".join(f"{name} " + ", ".join(f"{key}={value}" for key, value in given.items())
                     for name, given in settings.items() if given)


def add_evaluation_command(sub, name: str, *, summary: str, doc: str | None, epilog: str,
                           default_out: str) -> argparse.ArgumentParser:
    """The parser of a command that evaluates programs into a run folder (`run`, `compare`): `--out` and
    the evaluation, data, LM and retrieval options they share; the command adds which programs it runs."""
    parser = sub.add_parser(name, help=summary, description=doc, epilog=epilog, formatter_class=FORMATTER)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"run folder (default {default_out}); rerunning resumes it")
    add_evaluation_options(parser)
    add_data_options(parser)
    add_lm_options(parser)
    add_retrieval_options(parser)
    return parser


def comma_list(text: str) -> list[str]:
    """The names of a comma-separated option, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def settings_from_args(args: argparse.Namespace, **fixed: object) -> RunSettings:
    """The library's settings from the parsed options, one name for one name; `fixed` overrides (e.g.
    parallel=1).  The library resolves what depends on what (answer mode, history budget)."""
    from guided_profile.runs import DEFAULT_STORE, RunSettings

    values = {"task_options": parse_task_options(args.task_option), "data": args.data, "seed": args.seed,
              "lm": args.lm, "context_window": args.context_window, "threads": args.threads}
    for name in ("split", "limit", "parallel", "rotations", "prompt_layout", "profile_step", "answer_mode",
                 "api_base", "draft_ngram"):
        if hasattr(args, name):
            values[name] = getattr(args, name)
    if hasattr(args, "retriever"):
        values |= {"retriever": args.retriever, "k": args.k, "retrieval_steps": args.retrieval_steps,
                   "retriever_options": parse_task_options(args.retriever_option)}
    if hasattr(args, "no_cache"):
        values["cache"] = not args.no_cache
    if hasattr(args, "no_store"):
        values["store"] = None if args.no_store else (args.store or DEFAULT_STORE)
    return RunSettings.resolve(args.task, **values | fixed)
