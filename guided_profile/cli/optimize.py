"""`guided-profile optimize`: tune a program's instructions (the guidance question among them) on
the train split, select on the dev split, and export the result as one JSON file.

The test split is never read.  The expected number of LM calls is printed, and checked against
--budget, before any call is made.  Rerunning the same command resumes: the optuna optimizer from
its study (a SQLite file in the run folder, or --storage), DSPy's optimizers through DSPy's answer
cache (every call already answered is free).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from guided_profile.cli.common import (
    FORMATTER,
    add_lm_options,
    command_line,
    make_lm_from_args,
    make_task,
    non_negative_int,
    parse_task_options,
    positive_int,
)
from guided_profile.errors import ConfigError
from guided_profile.redaction import redact

# With these limits every optimizer's default plan fits the default budget in either answer mode
# (tests/test_optimizers.py checks it): 543-799 calls in generate mode, 1,083-1,537 in score mode.
DEFAULT_BUDGET = 1600
DEFAULT_TRAIN_LIMIT = DEFAULT_DEV_LIMIT = 20

EPILOG = """examples:
  guided-profile optimize --list
  guided-profile optimize --task preference --optimizer optuna --budget 900 --lm local --data real \\
      --out compiled/preference-optuna.json
  guided-profile optimize --task preference --optimizer gepa --lm local --prompt-lm openai/gpt-4o-mini \\
      --option max_metric_calls=150 --out compiled/preference-gepa.json
  guided-profile optimize --task preference --optimizer optuna --storage postgresql://user@db/gpg \\
      --study-name preference-shared --out compiled/worker1.json      (one of several workers)
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("optimize", help="tune the guidance question and instructions; export a compiled program",
                            description=__doc__, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--list", action="store_true", help="list the optimizers and their settings, then exit")
    parser.add_argument("--optimizer", help="mipro, gepa, copro or optuna (see --list)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an optimizer setting, e.g. num_trials=10 (mipro), max_metric_calls=150 (gepa), "
                             "breadth=4 (copro), trials=20 (optuna); see --list")
    parser.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET,
                        help="most LM calls (task + prompt model) the run may make; checked before it starts "
                             f"(default {DEFAULT_BUDGET}: the default plans make 543-799 calls in generate mode, "
                             "1,083-1,537 mostly one-token calls in score mode; on the 1.5B model the committed "
                             "score-mode runs at the default settings took 73 min (optuna) and 65 min (gepa))")
    parser.add_argument("--out", type=Path, help="the compiled program (one JSON file)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="folder for the search's state (default: next to --out, named OUT.run)")
    parser.add_argument("--method", default="gpg", help="the program to start from: gpg (default), gpg:PARTS, pg, ...")
    parser.add_argument("--answer-mode", default="auto", choices=["auto", "generate", "score"],
                        help="how the final step answers (see `guided-profile run --help`)")
    parser.add_argument("--rotations", type=positive_int, default=4,
                        help="score mode: rotations of the option order (default 4)")
    optuna_group = parser.add_argument_group("optuna optimizer")
    optuna_group.add_argument("--storage", default=None,
                              help="Optuna RDB URL for the study (default: sqlite file in the run folder); "
                                   "postgresql://... or mysql://... lets several workers share one study")
    optuna_group.add_argument("--study-name", default=None, help="study name (default: derived from the settings)")
    optuna_group.add_argument("--multi-objective", action="store_true",
                              help="optimize the objective and mean tokens per example; export the Pareto front")
    data = parser.add_argument_group("data")
    data.add_argument("--task", default="preference", help="task name (see `guided-profile tasks`)")
    data.add_argument("--data", default="sample", help="'sample' (default), 'real', or a path (as for `run`)")
    data.add_argument("--seed", type=int, default=0, help="seed for the user split, subsampling and the optimizer")
    data.add_argument("--train-limit", type=non_negative_int, default=DEFAULT_TRAIN_LIMIT,
                      help=f"train examples the optimizer sees (seeded sample; 0 = all; default {DEFAULT_TRAIN_LIMIT})")
    data.add_argument("--dev-limit", type=non_negative_int, default=DEFAULT_DEV_LIMIT,
                      help=f"dev examples each candidate is scored on (seeded sample; 0 = all; "
                           f"default {DEFAULT_DEV_LIMIT})")
    data.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                      help="a task setting (repeatable); each task's settings and defaults: `guided-profile tasks`")
    add_lm_options(parser, parallel=False)  # optimizers evaluate one example at a time
    prompt = parser.add_argument_group("prompt model (proposals and reflection)")
    prompt.add_argument("--prompt-lm", default=None, help="same forms as --lm (default: the task model)")
    prompt.add_argument("--prompt-api-base", default=None, help="base URL for --prompt-lm (default: --api-base)")
    return parser


def list_optimizers() -> str:
    from guided_profile.optimizers import OPTIMIZERS

    lines = []
    for name, cls in sorted(OPTIMIZERS.items()):
        lines.append(f"{name}: {cls.summary}")
        lines.append("  settings: " + ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items()))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.list:
        print(list_optimizers())
        return 0
    if not args.optimizer or not args.out:
        raise ConfigError("optimize needs --optimizer NAME and --out FILE.json (see --list for the optimizers)")

    from guided_profile import __version__
    from guided_profile.cli.common import resolve_data
    from guided_profile.datasets.example import split_examples, subsample
    from guided_profile.lm import make_lm
    from guided_profile.optimizers import get_optimizer, optimizer_class, run_optimizer
    from guided_profile.programs import build_program
    from guided_profile.programs.export import data_sha256, instructions, save_compiled

    cls = optimizer_class(args.optimizer)
    settings = parse_task_options(args.option)
    for key, value in (("storage", args.storage), ("study_name", args.study_name),
                       ("multi_objective", True if args.multi_objective else None)):
        if value is not None:
            settings[key] = value
    cls.validate_settings(settings)  # a bad name or value fails before anything is loaded

    task, task_options = make_task(args)
    program = build_program(args.method, task, answer_mode=args.answer_mode, rotations=args.rotations)
    data = resolve_data(task, args.data)
    examples, stats = task.load(data)
    train_all = split_examples(examples, "train", args.seed)
    dev_all = split_examples(examples, "dev", args.seed)
    trainset = subsample(train_all, args.train_limit, args.seed)
    valset = subsample(dev_all, args.dev_limit, args.seed + 1)
    if not trainset or not valset:
        raise ConfigError(f"{data}: {len(train_all)} train and {len(dev_all)} dev examples; an optimizer needs both "
                          f"(build stats: {stats})")
    print(f"{task.name}: {len(trainset)} of {len(train_all)} train and {len(valset)} of {len(dev_all)} dev examples "
          f"from {data}; the test split is not read")

    lm, identity = make_lm_from_args(args)
    prompt_lm, prompt_identity = None, identity
    if args.prompt_lm and args.prompt_lm != args.lm:
        prompt_lm, prompt_identity = make_lm(args.prompt_lm, api_base=args.prompt_api_base or args.api_base,
                                             context=args.context, threads=args.threads, cache=not args.no_cache)
    run_dir = args.run_dir or args.out.with_suffix(".run")
    optimizer = get_optimizer(args.optimizer, task=task, task_lm=lm, prompt_lm=prompt_lm, seed=args.seed,
                              workdir=run_dir, **settings)
    handwritten = instructions(program)
    result = run_optimizer(optimizer, program, trainset=trainset, valset=valset, budget=args.budget)

    tuned = instructions(result.program)
    print(f"\n{task.objective}: train {result.scores['train']:.3f}, dev {result.scores['dev']:.3f}")
    for name, text in tuned.items():
        mark = "unchanged" if text == handwritten.get(name) else "tuned"
        print(f"{name} ({mark}): {text}")
    u = result.usage
    print(f"LM calls: {u['calls']} of {u['expected_calls']} expected (budget {args.budget}); "
          f"{u['model_calls']} reached a model, the rest came from DSPy's cache; {result.seconds:.0f} s")

    metadata = {
        "base_method": args.method,
        "handwritten_instructions": handwritten,
        "optimizer": {"name": optimizer.name, "settings": _public(optimizer.get_params()), "info": result.info},
        "lm": identity.to_dict(), "prompt_lm": prompt_identity.to_dict(),
        "task_options": task_options,
        "data": {"path": str(data), "sha256": data_sha256(data), "seed": args.seed, "build_stats": stats,
                 "split_sizes": {"train": len(train_all), "dev": len(dev_all),
                                 "test": len(split_examples(examples, "test", args.seed))},  # counted, never read
                 "used": {"train": len(trainset), "dev": len(valset)},
                 "limits": {"train": args.train_limit, "dev": args.dev_limit},
                 "train_ids": [ex.example_id for ex in trainset], "dev_ids": [ex.example_id for ex in valset]},
        "scores": result.scores,
        "usage": u, "seconds": result.seconds,
        "version": __version__, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command_line(args),
    }
    save_compiled(args.out, result.program, task, metadata)
    print(f"compiled program written to {args.out}")
    return 0


def _public(params: dict) -> dict:
    """Settings fit for the file: a storage URL loses its password."""

    return {k: redact(v) if k == "storage" and isinstance(v, str) else v for k, v in params.items()}
