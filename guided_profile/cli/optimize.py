"""`guided-profile optimize`: tune a program's instructions (the guidance question among them) on
the train split, select on the dev split, and export the result as one JSON file.

The test split is never read.  The expected number of LM calls is printed, and checked against
--budget, before any call is made.  Rerunning the same command resumes: the optuna optimizer from
its study (a SQLite file in the run folder, or --storage), DSPy's optimizers through DSPy's answer
cache (every call already answered is free).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from guided_profile.cli.common import (
    FORMATTER,
    add_data_options,
    add_lm_options,
    add_retrieval_options,
    command_line,
    non_negative_int,
    parse_task_options,
    positive_int,
    settings_from_args,
)
from guided_profile.errors import ConfigError
from guided_profile.runs import DEFAULT_BUDGET, DEFAULT_DEV_LIMIT, DEFAULT_TRAIN_LIMIT

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
    data = add_data_options(parser, splits=False)
    data.add_argument("--train-limit", type=non_negative_int, default=DEFAULT_TRAIN_LIMIT,
                      help=f"train examples the optimizer sees (seeded sample; 0 = all; default {DEFAULT_TRAIN_LIMIT})")
    data.add_argument("--dev-limit", type=non_negative_int, default=DEFAULT_DEV_LIMIT,
                      help=f"dev examples each candidate is scored on (seeded sample; 0 = all; "
                           f"default {DEFAULT_DEV_LIMIT})")
    add_lm_options(parser, parallel=False)  # optimizers evaluate one example at a time
    add_retrieval_options(parser)
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
    from guided_profile.runs import optimize_program

    options = parse_task_options(args.option)
    for key, value in (("storage", args.storage), ("study_name", args.study_name),
                       ("multi_objective", True if args.multi_objective else None)):
        if value is not None:
            options[key] = value
    settings = settings_from_args(args, parallel=1)  # optimizers evaluate one example at a time
    tuned = optimize_program(settings, args.optimizer, args.out, options=options, method=args.method,
                             run_dir=args.run_dir, budget=args.budget, train_limit=args.train_limit,
                             dev_limit=args.dev_limit, prompt_lm=args.prompt_lm, prompt_api_base=args.prompt_api_base,
                             command=command_line(args))
    print(f"\n{tuned.scores['objective']}: train {tuned.scores['train']:.3f}, dev {tuned.scores['dev']:.3f}")
    for name, text in tuned.tuned.items():
        print(f"{name} ({'unchanged' if text == tuned.handwritten.get(name) else 'tuned'}): {text}")
    u = tuned.usage
    print(f"LM calls: {u['calls']} of {u['expected_calls']} expected (budget {args.budget}); "
          f"{u['model_calls']} reached a model, the rest came from DSPy's cache; {tuned.seconds:.0f} s")
    print(f"compiled program written to {args.out}")
    return 0
