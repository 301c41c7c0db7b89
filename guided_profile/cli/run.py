"""`guided-profile run`: evaluate methods on a task and print the paper's table."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided_profile.cli.common import add_evaluation_command, comma_list, command_line, settings_from_args

EPILOG = """examples:
  guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --limit 5 --lm local-0.5b
  guided-profile run --task preference --data real --split test --limit 200 --lm local
  guided-profile run --task preference --methods gpg:pc+g+pp --lm openai/gpt-4o-mini
  guided-profile run --task preference --program compiled/preference-optuna.json --methods gpg --lm local
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = add_evaluation_command(sub, "run", summary="evaluate methods on a task and print the paper's table",
                                    doc=__doc__, epilog=EPILOG,
                                    default_out="runs/TASK-SPLIT-DATA-LM-MODE-seedS[-RETRIEVERkK]")
    parser.add_argument("--methods", default=None,
                        help="comma-separated: dg-no-pc, dg-pc, pg, gpg, or ablation rows gpg:PARTS "
                             "with PARTS from pc+g+pp (default: the paper's four methods, none with --program)")
    parser.add_argument("--program", action="append", default=[], type=Path, metavar="COMPILED.json",
                        help="also run a compiled program from `guided-profile optimize` (repeatable); its "
                             "table row is named after the file stem (default: none)")
    return parser


def main(args: argparse.Namespace) -> int:
    from guided_profile.report import failures_line, totals_line
    from guided_profile.runs import run_methods

    methods = None if args.methods is None else comma_list(args.methods)
    result = run_methods(settings_from_args(args), methods, args.program, out=args.out,
                         allow_overlap=args.allow_overlap, command=command_line(args),
                         progress=not args.no_progress)
    print(result.text_table())
    print(totals_line(result.summaries))
    failures = failures_line(result.summaries)
    if failures:
        print(failures)
    print(f"records, summary and table in {result.out}/")
    return 0
