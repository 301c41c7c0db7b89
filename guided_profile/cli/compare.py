"""`guided-profile compare`: the hand-written GPG against compiled programs on the same test users.

Prints each program's metrics, n, 95% bootstrap interval, paired difference against `handwritten`
(the task's GPG) with its p-value, and mean LM calls and tokens per example; writes compare.md and
compare.png next to the results.  Results are kept in a run folder, so rerunning resumes.
"""

from __future__ import annotations

import argparse

from guided_profile.cli.common import add_evaluation_command, comma_list, command_line, settings_from_args

EPILOG = """examples:
  guided-profile compare --task preference --programs handwritten,compiled/preference-optuna.json \\
      --split test --limit 100 --lm local
  guided-profile compare --task preference --programs handwritten,a.json,b.json,pg --lm fake --limit 5
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = add_evaluation_command(sub, "compare",
                                    summary="hand-written GPG vs compiled programs: paired statistics and a report",
                                    doc=__doc__, epilog=EPILOG,
                                    default_out="runs/compare-TASK-SPLIT-DATA-LM-MODE-seedS[-RETRIEVERkK]")
    parser.add_argument("--programs", required=True,
                        help="comma-separated: 'handwritten' (the task's GPG), compiled JSON files, or method names; "
                             "handwritten is added if missing (it is the reference)")
    return parser


def main(args: argparse.Namespace) -> int:
    from guided_profile.report import failures_line
    from guided_profile.runs import compare_programs

    programs = comma_list(args.programs)
    result = compare_programs(settings_from_args(args), programs, out=args.out, allow_overlap=args.allow_overlap,
                              command=command_line(args), progress=not args.no_progress)
    print(result.text_table())
    failures = failures_line({row["method"]: row["summary"] for row in result.rows})
    if failures:
        print(failures)
    print(f"report {result.report}, chart {result.chart}, records in {result.out}/")
    return 0
