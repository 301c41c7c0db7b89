"""`guided-profile run`: evaluate methods on a task and print the paper's table."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided_profile.cli.common import (
    FORMATTER,
    add_data_options,
    add_evaluation_options,
    add_lm_options,
    default_out,
    evaluate_with_progress,
    load_split,
    make_lm_from_args,
    make_task,
    run_config,
)
from guided_profile.errors import ConfigError

EPILOG = """examples:
  guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --limit 5 --lm local-0.5b
  guided-profile run --task preference --data real --split test --limit 200 --lm local
  guided-profile run --task preference --methods gpg:pc+g+pp --lm openai/gpt-4o-mini
  guided-profile run --task preference --program compiled/preference-optuna.json --methods gpg --lm local
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("run", help="evaluate methods on a task and print the paper's table",
                            description=__doc__, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--methods", default=None,
                        help="comma-separated: dg-no-pc, dg-pc, pg, gpg, or ablation rows gpg:PARTS "
                             "with PARTS from pc+g+pp (default: the paper's four methods, none with --program)")
    parser.add_argument("--program", action="append", default=[], type=Path, metavar="COMPILED.json",
                        help="also run a compiled program from `guided-profile optimize` (repeatable); its "
                             "table row is named after the file stem")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default runs/TASK-SPLIT-DATA-LM-MODE-seedS); rerunning resumes it")
    add_evaluation_options(parser)
    add_data_options(parser)
    add_lm_options(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    from guided_profile.evaluation import RunFolder
    from guided_profile.programs import build_program, canonical
    from guided_profile.programs.export import load_program_files
    from guided_profile.report import markdown_table, summary_rows, text_table, totals_line

    task, task_options = make_task(args)
    method_list = args.methods if args.methods is not None else ("" if args.program else "dg-no-pc,dg-pc,pg,gpg")
    methods = list(dict.fromkeys(canonical(m.strip()) for m in method_list.split(",") if m.strip()))
    programs = {m: build_program(m, task, answer_mode=args.answer_mode, rotations=args.rotations)
                for m in methods}  # fail on a bad name before loading anything
    compiled, payloads = load_program_files(args.program, task, taken=set(programs))
    programs |= compiled
    methods += list(compiled)
    if not programs:
        raise ConfigError("nothing to run: give --methods or --program")
    selected, data, stats = load_split(task, args)
    print(f"{task.name}: built from {data} ({stats}); evaluating {len(selected)} examples of split {args.split}")

    lm, identity = make_lm_from_args(args)
    out = default_out(args, task)
    config = run_config(args, task, task_options, methods, data, stats, identity, payloads)
    run = RunFolder.open(out, config)
    summaries = evaluate_with_progress(args, programs, task, selected, lm, run, f"{task.name} x {len(methods)} methods")
    header, rows = summary_rows(task, summaries)
    print(text_table(header, rows))
    print(totals_line(summaries))
    (out / "table.md").write_text(f"# {task.name}, split {args.split}, lm {identity.model}\n\n"
                                  f"Command: `{config['command']}`\n\n{markdown_table(header, rows)}\n")
    print(f"records, summary and table in {out}/")
    return 0
