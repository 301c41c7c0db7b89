"""`guided-profile optimize`: tune a program's instructions (the guidance question among them) on
the train split, select on the dev split, and export the result as one JSON file.

The test split is never read.  Part of the dev users (--confirm-fraction) is held out of the search:
there the search's best meet the hand-written program, and a candidate is exported only if it beats
it; the last line printed is that verdict.  The expected number of LM calls is printed, and checked
against --budget, before any call is made.  Rerunning the same command resumes: the optuna optimizer from
its study (a SQLite file in the run folder, or --storage), DSPy's optimizers through DSPy's answer
cache (every call already answered is free; their answers are kept in the run folder too, answers.jsonl,
for a machine whose cache is empty), and every optimizer's confirm stage from the scores it wrote to
the run folder (confirm.jsonl).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from guided_profile.cli.common import (
    FORMATTER,
    add_data_options,
    add_lm_options,
    add_profile_step_option,
    add_prompt_layout_option,
    add_retrieval_options,
    command_line,
    non_negative_int,
    parse_task_options,
    positive_int,
    settings_from_args,
)
from guided_profile.errors import ConfigError
from guided_profile.optimizers.confirm import DEFAULT_FRACTION, DEFAULT_TOP, ConfirmSettings
from guided_profile.runs import DEFAULT_BUDGET, DEFAULT_DEV_LIMIT, DEFAULT_TRAIN_LIMIT

EPILOG = """examples:
  guided-profile optimize --list
  guided-profile optimize --task preference --optimizer optuna --lm local --data real \\
      --out compiled/preference-optuna.json
  guided-profile optimize --task preference --optimizer optuna --data real --candidates my-questions.txt \\
      --objective accuracy --confirm-top 5 --out compiled/preference-mine.json
  guided-profile optimize --task preference --optimizer gepa --lm local --prompt-lm openai/gpt-4o-mini \\
      --option max_metric_calls=150 --out compiled/preference-gepa.json
  guided-profile optimize --task preference --optimizer optuna --storage postgresql://user@db/gpg \\
      --study-name preference-shared --out compiled/worker1.json      (one of several workers)
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("optimize", help="tune the guidance question and instructions; export a compiled program",
                            description=__doc__, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--list", action="store_true", help="list the optimizers and their settings, then exit")
    parser.add_argument("--optimizer", help="mipro, gepa, copro or optuna (see --list; required)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an optimizer setting, e.g. num_trials=10 (mipro), max_metric_calls=150 (gepa), "
                             "breadth=4 (copro), trials=20 (optuna); default: each optimizer's (see --list)")
    parser.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET,
                        help="most LM calls (task + prompt model) the run may make; checked before it starts, a "
                             f"safety stop (default {DEFAULT_BUDGET}: on the default {DEFAULT_TRAIN_LIMIT} train and "
                             f"{DEFAULT_DEV_LIMIT} dev users the default plans expect up to 6,747 calls (optuna), "
                             "7,446 (copro), 5,130 (mipro), 3,137 (gepa) in score mode, about half in generate mode; "
                             "most score-mode calls are one token)")
    parser.add_argument("--out", type=Path, help="the compiled program (one JSON file; required)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="folder for the search's state (default: next to --out, named OUT.run)")
    parser.add_argument("--method", default="gpg", help="the program to start from: gpg (default), gpg:PARTS, pg, ...")
    parser.add_argument("--answer-mode", default="auto", choices=["auto", "generate", "score"],
                        help="how the final step answers (default auto: score for choice tasks, generate for text; "
                             "see `guided-profile run --help`)")
    parser.add_argument("--rotations", type=positive_int, default=4,
                        help="score mode: rotations of the option order (default 4)")
    add_prompt_layout_option(parser)
    add_profile_step_option(parser)
    _add_search_options(parser)
    optuna_group = parser.add_argument_group("optuna optimizer")
    optuna_group.add_argument("--storage", default=None,
                              help="Optuna RDB URL for the study (default: sqlite file in the run folder); "
                                   "postgresql://... or mysql://... lets several workers share one study")
    optuna_group.add_argument("--study-name", default=None, help="study name (default: derived from the settings)")
    optuna_group.add_argument("--multi-objective", action="store_true",
                              help="optimize the objective and mean tokens per example; export the Pareto front "
                                   "(default: the objective alone)")
    data = add_data_options(parser, splits=False)
    data.add_argument("--train-limit", type=non_negative_int, default=DEFAULT_TRAIN_LIMIT,
                      help=f"train examples the optimizer sees (seeded sample; 0 = all; default {DEFAULT_TRAIN_LIMIT})")
    data.add_argument("--dev-limit", type=non_negative_int, default=DEFAULT_DEV_LIMIT,
                      help=f"dev examples, split by user into the search's part and the confirm part (seeded "
                           f"sample; 0 = all; default {DEFAULT_DEV_LIMIT}: on the real preference data with seed 0, "
                           "116 search and 44 confirm users)")
    add_lm_options(parser)  # --parallel: dev and confirm examples scored at once (the Optuna search, the confirm stage)
    add_retrieval_options(parser)
    prompt = parser.add_argument_group("prompt model (proposals and reflection)")
    prompt.add_argument("--prompt-lm", default=None, help="same forms as --lm (default: the task model)")
    prompt.add_argument("--prompt-api-base", default=None, help="base URL for --prompt-lm (default: --api-base)")
    return parser


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    """What is maximised, which candidates are searched, and how the winner must prove itself."""
    group = parser.add_argument_group("objective, candidates and the confirm stage")
    group.add_argument("--objective", default=None, metavar="NAME",
                       help="the per-example metric every optimizer maximises (default: the task's for the answer "
                            "mode: gold_probability in score mode and accuracy in generate mode for choice tasks, "
                            "meteor for paraphrase, st (MiniLM similarity) for dialogue); choice tasks in score "
                            "mode also take gold_margin (the gold option's probability minus the best other's)")
    group.add_argument("--candidates", type=Path, default=None, metavar="FILE",
                       help="guidance questions you wrote, one per line (# comments), or a JSON list of questions "
                            "or {\"guidance_question\": ..., \"instructions\": {STEP: TEXT}}; searched beside the "
                            "proposed ones and always met in the confirm stage (default: none)")
    group.add_argument("--confirm-fraction", type=_fraction, default=DEFAULT_FRACTION, metavar="F",
                       help="share of the dev users held out of the search to confirm its best against the "
                            f"hand-written program (default {DEFAULT_FRACTION}; 0 turns the confirm stage off)")
    group.add_argument("--confirm-top", type=positive_int, default=DEFAULT_TOP, metavar="K",
                       help=f"the search's best K distinct configurations meet the hand-written program on the "
                            f"confirm users (default {DEFAULT_TOP})")
    group.add_argument("--export-unconfirmed", action="store_true",
                       help="export the confirm stage's best candidate even when it is not confirmed, flagged as "
                            "unconfirmed (default: the hand-written program is exported then)")


def _fraction(text: str) -> float:
    """argparse type for --confirm-fraction: a share in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 0 and below 1")
    return value


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
    confirm = ConfirmSettings(fraction=args.confirm_fraction, top=args.confirm_top,
                              export_unconfirmed=args.export_unconfirmed)
    settings = settings_from_args(args)
    tuned = optimize_program(settings, args.optimizer, args.out, options=options, method=args.method,
                             run_dir=args.run_dir, budget=args.budget, train_limit=args.train_limit,
                             dev_limit=args.dev_limit, objective=args.objective, confirm=confirm,
                             user_candidates_file=args.candidates, prompt_lm=args.prompt_lm,
                             prompt_api_base=args.prompt_api_base, command=command_line(args))
    print("\n" + tuned.text())  # the verdict is its last line
    return 0

