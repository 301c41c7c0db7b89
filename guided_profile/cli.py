"""The `guided-profile` command. It parses options and calls the library; it holds no logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from guided_profile.errors import ConfigError, GuidedProfileError

EPILOG = """examples:
  guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --limit 5 --lm local-0.5b
  guided-profile run --task preference --data real --split test --limit 200 --lm local
  guided-profile run --task preference --methods gpg:pc+g+pp --lm openai/gpt-4o-mini
"""


def _parse_task_options(pairs: list[str]) -> dict:
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


def resolve_data(task, data: str) -> Path:
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


def add_lm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--lm", default="local",
                       help="local (embedded Qwen2.5-Coder-1.5B, default), local-0.5b (fast checks), "
                            "gguf:/path/model.gguf, or a DSPy model string such as openai/gpt-4o-mini")
    group.add_argument("--api-base", default=None,
                       help="base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp) for --lm openai/NAME")
    group.add_argument("--context", type=int, default=8192, help="context window per request for in-process models")
    group.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all cores)")
    group.add_argument("--no-cache", action="store_true",
                       help="do not reuse DSPy's cached answers (every call goes to the model)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guided-profile", description=__doc__.splitlines()[0].replace(
        "The `guided-profile` command.", "Guided Profile Generation for LLM personalization."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate methods on a task and print the paper's table",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--task", default="preference", help="task name (see `guided-profile tasks`)")
    run.add_argument("--methods", default="dg-no-pc,dg-pc,pg,gpg",
                     help="comma-separated: dg-no-pc, dg-pc, pg, gpg, or ablation rows gpg:PARTS "
                          "with PARTS from pc+g+pp (default: the paper's four methods)")
    run.add_argument("--data", default="sample",
                     help="'sample' (the small committed sample, default), 'real' (the task's folder under "
                          "$GUIDED_PROFILE_DATA or ../shared/data), or a path to the data")
    run.add_argument("--split", default="test", choices=["train", "dev", "test", "all"],
                     help="users of which split to evaluate (split by user, seeded; default test)")
    run.add_argument("--limit", type=int, default=None, help="evaluate the first N examples of the split")
    run.add_argument("--seed", type=int, default=0, help="seed for building examples and splitting users")
    run.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                     help="task setting, e.g. category_level=1, min_categories=5, max_history_chars=6000")
    run.add_argument("--out", type=Path, default=None,
                     help="run folder (default runs/TASK-SPLIT-LM-seedS); rerunning resumes it")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_lm_options(run)

    sub.add_parser("tasks", help="list the registered tasks and their hand-written guidance")
    return parser


def cmd_tasks(args: argparse.Namespace) -> int:
    from guided_profile.tasks import TASKS

    for name, cls in sorted(TASKS.items()):
        print(f"{name}: {cls.description}\n  guidance: {cls.guidance}\n  objective: {cls.objective}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from guided_profile import __version__
    from guided_profile.datasets.example import split_examples
    from guided_profile.evaluation import RunFolder, evaluate
    from guided_profile.lm import make_lm
    from guided_profile.programs import build_program
    from guided_profile.report import markdown_table, summary_rows, text_table
    from guided_profile.tasks import get_task

    task_options = _parse_task_options(args.task_option)
    try:
        task = get_task(args.task, seed=args.seed, **task_options)
    except TypeError as exc:
        raise ConfigError(f"--task-option: {exc}") from exc
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    programs = {m: build_program(m, task) for m in methods}  # fail on a bad name before loading anything
    data = resolve_data(task, args.data)
    examples, stats = task.load(data)
    selected = split_examples(examples, args.split, args.seed)[: args.limit]
    if not selected:
        raise ConfigError(f"no examples in split {args.split!r} of {data} (build stats: {stats})")
    print(f"{task.name}: {len(examples)} examples built from {data} ({stats}); "
          f"evaluating {len(selected)} of split {args.split}")

    lm, identity = make_lm(args.lm, api_base=args.api_base, context=args.context, threads=args.threads,
                           cache=not args.no_cache)
    lm_tag = args.lm.replace("/", "_").replace(":", "_")
    out = args.out or Path("runs") / f"{task.name}-{args.split}-{lm_tag}-seed{args.seed}"
    config = {"task": task.name, "task_options": task_options, "methods": methods, "data": str(data),
              "split": args.split, "limit": args.limit, "seed": args.seed, "lm": identity.to_dict(),
              "build_stats": stats, "version": __version__,
              "command": "guided-profile " + " ".join(sys.argv[1:])}
    run = RunFolder.open(out, config)

    def progress(items, total):
        return tqdm(items, desc=f"{task.name} x {len(methods)} methods", total=total, disable=args.no_progress,
                    unit="run")

    summaries = evaluate(programs, task, selected, lm, run, progress=progress)
    header, rows = summary_rows(task, summaries)
    print(text_table(header, rows))
    (out / "table.md").write_text(f"# {task.name}, split {args.split}, lm {identity.model}\n\n"
                                  f"Command: `{config['command']}`\n\n{markdown_table(header, rows)}\n")
    print(f"records, summary and table in {out}/")
    return 0


COMMANDS = {"run": cmd_run, "tasks": cmd_tasks}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except GuidedProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished examples are saved; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
