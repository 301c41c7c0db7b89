"""`guided-profile compare`: the hand-written GPG against compiled programs on the same test users.

Prints each program's metrics, n, 95% bootstrap interval, paired difference against `handwritten`
(the task's GPG) with its p-value, and mean LM calls and tokens per example; writes compare.md and
compare.png next to the results.  Results are kept in a run folder, so rerunning resumes.
"""

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
  guided-profile compare --task preference --programs handwritten,compiled/preference-optuna.json \\
      --split test --limit 100 --lm local
  guided-profile compare --task preference --programs handwritten,a.json,b.json,pg --lm fake --limit 5
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("compare", help="hand-written GPG vs compiled programs: paired statistics and a report",
                            description=__doc__, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--programs", required=True,
                        help="comma-separated: 'handwritten' (the task's GPG), compiled JSON files, or method names; "
                             "handwritten is added if missing (it is the reference)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default runs/compare-TASK-SPLIT-DATA-LM-MODE-seedS); rerunning resumes it")
    add_evaluation_options(parser)
    add_data_options(parser)
    add_lm_options(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    from guided_profile.compare import REFERENCE, chart, comparison_rows, markdown_report, table
    from guided_profile.evaluation import RunFolder
    from guided_profile.programs import build_program
    from guided_profile.programs.answer import answer_config
    from guided_profile.programs.export import load_program_files
    from guided_profile.report import text_table

    task, task_options = make_task(args)
    specs = [s.strip() for s in args.programs.split(",") if s.strip()]
    paths = [Path(s) for s in specs if s.endswith(".json")]
    names = [s for s in specs if not s.endswith(".json")]
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    programs = {name: build_program("gpg" if name == REFERENCE else name, task, answer_mode=args.answer_mode,
                                    rotations=args.rotations) for name in dict.fromkeys(names)}
    compiled, payloads = load_program_files(paths, task, taken=set(programs))
    asked = answer_config(args.answer_mode, args.rotations)
    for name, payload in payloads.items():
        theirs = answer_config(**payload["answer"])
        if theirs != asked:
            raise ConfigError(f"{name} answers with {theirs}, the reference with {asked}: a paired difference would "
                              f"mostly measure the answer mode; rerun with --answer-mode {theirs['answer_mode']}"
                              + (f" --rotations {theirs['rotations']}" if theirs["rotations"] else ""))
    programs |= compiled
    if len(programs) < 2:
        raise ConfigError("compare needs at least one program besides handwritten")
    if args.split in ("train", "dev"):
        print(f"note: split {args.split} was seen by the optimizers; only the test split gives an unbiased comparison")

    selected, data, stats = load_split(task, args)
    print(f"{task.name}: {len(programs)} programs on {len(selected)} examples of split {args.split} from {data}")
    lm, identity = make_lm_from_args(args)
    out = default_out(args, task, "compare-")
    config = run_config(args, task, task_options, list(programs), data, stats, identity, payloads)
    run = RunFolder.open(out, config)
    summaries = evaluate_with_progress(args, programs, task, selected, lm, run, f"compare x {len(programs)}")
    summaries = {name: summaries[name] for name in programs}  # not programs compared earlier in this folder
    rows = comparison_rows(task, summaries, run.done, selected)
    header, body = table(task, rows)
    print(text_table(header, body))
    png = chart(task, rows, out / "compare.png")
    (out / "compare.md").write_text(markdown_report(task, rows, programs, payloads, config, png.name) + "\n",
                                    encoding="utf-8")
    print(f"report {out / 'compare.md'}, chart {png}, records in {out}/")
    return 0
