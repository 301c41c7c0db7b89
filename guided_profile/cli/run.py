"""`guided-profile run`: evaluate methods on a task and print the paper's table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guided_profile.cli.common import (
    FORMATTER,
    add_data_options,
    add_lm_options,
    load_split,
    make_lm_from_args,
    make_task,
    open_store,
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
                        help="run folder (default runs/TASK-SPLIT-LM-seedS); rerunning resumes it")
    parser.add_argument("--answer-mode", default="generate", choices=["generate", "score"],
                        help="choice tasks: 'generate' writes a reply and parses it (the paper's way; it can "
                             "abstain), 'score' reads each option letter's probability, averaged over rotations "
                             "of the option order (default: generate)")
    parser.add_argument("--rotations", type=int, default=4,
                        help="score mode: cyclic rotations of the option order (1 = plain, 4 = every option "
                             "in every position; default 4)")
    parser.add_argument("--store", type=Path, default=None,
                        help="profile store (SQLite) for digestions and profiles, reused across methods and runs "
                             "(default: profiles.sqlite in the cache folder)")
    parser.add_argument("--no-store", action="store_true",
                        help="run without the profile store (also implied by --no-cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_options(parser)
    add_lm_options(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from guided_profile import __version__
    from guided_profile.evaluation import RunFolder, evaluate
    from guided_profile.programs import build_program
    from guided_profile.programs.export import load_program_files
    from guided_profile.report import markdown_table, summary_rows, text_table

    task, task_options = make_task(args)
    method_list = args.methods if args.methods is not None else ("" if args.program else "dg-no-pc,dg-pc,pg,gpg")
    methods = [m.strip() for m in method_list.split(",") if m.strip()]
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
    lm_tag = args.lm.replace("/", "_").replace(":", "_")
    out = args.out or Path("runs") / f"{task.name}-{args.split}-{lm_tag}-seed{args.seed}"
    config = {"task": task.name, "task_options": task_options, "methods": methods, "data": str(data),
              "split": args.split, "limit": args.limit, "seed": args.seed, "lm": identity.to_dict(),
              "answer_mode": args.answer_mode, "rotations": args.rotations if args.answer_mode == "score" else None,
              "build_stats": stats, "version": __version__,
              "programs": {name: p["checksum"] for name, p in payloads.items()},
              "command": "guided-profile " + " ".join(sys.argv[1:])}
    run = RunFolder.open(out, config)

    def progress(items, total):
        return tqdm(items, desc=f"{task.name} x {len(methods)} methods", total=total, disable=args.no_progress,
                    unit="run")

    store = None if args.no_store or args.no_cache else open_store(args.store)
    summaries = evaluate(programs, task, selected, lm, run, workers=args.parallel, store=store, progress=progress)
    header, rows = summary_rows(task, summaries)
    print(text_table(header, rows))
    (out / "table.md").write_text(f"# {task.name}, split {args.split}, lm {identity.model}\n\n"
                                  f"Command: `{config['command']}`\n\n{markdown_table(header, rows)}\n")
    print(f"records, summary and table in {out}/")
    return 0
