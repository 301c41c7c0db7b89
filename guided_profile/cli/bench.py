"""`guided-profile bench`: throughput of GPG against an ideal floor and a plain DSPy pipeline, in both answer modes."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided_profile.cli.common import FORMATTER, add_data_options, add_lm_options, command_line, settings_from_args
from guided_profile.errors import ConfigError
from guided_profile.runs import load_split

EPILOG = """Run it with nothing else using the CPU: a competing job halves the model's speed.
Rerun the same command to finish an interrupted benchmark: finished configurations are kept.
example:
  guided-profile bench --task preference --data real --split test --limit 50 --lm local --slots 4 \\
      --modes score,generate --out experiments/results/bench-preference-1.5b-v2
(the committed bench-preference-1.5b was made before --slots was split off --parallel and before
--modes: its command says --parallel 2,4 and it ran generate mode only)
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("bench", help="measure throughput: model speed, plain DSPy vs this project's settings",
                            description=__doc__, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--slots", default="4",
                        help="comma-separated server slot counts, one parallel-N row per answer mode each, e.g. 2,4 "
                             "(default 4, run's default); 1 slot is the 'default' row, always run")
    parser.add_argument("--modes", default="score,generate",
                        help="answer modes to benchmark, each with default and parallel-N rows (default score,generate;"
                             " score uses run's 4 rotations); plain-dspy runs once, in generate mode")
    parser.add_argument("--parallel", default=None, help=argparse.SUPPRESS)  # renamed --slots: refused with a hint
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of plain-dspy,default,parallel-N,options-last,draft-ngram-3,"
                             "profile-continued,stop-runaways to run (default: all). options-last (the prompt layout "
                             "whose rotations recompute only the options), draft-ngram-3 (llama.cpp's "
                             "self-speculative decoding from 3-token n-grams), profile-continued (--profile-step "
                             "continued) and stop-runaways (--task-option stop_runaways=true: fitted token caps and "
                             "the repetition stop) run in score mode only, with one slot")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"),
                        help="folder for bench.json, table.md and each configuration's records (default runs/bench)")
    add_data_options(parser, default_limit=50)
    add_lm_options(parser, parallel=False, in_process=True)
    return parser


def main(args: argparse.Namespace) -> int:
    from guided_profile.bench import bench, default_configs, write_report
    from guided_profile.runs import provenance

    if args.parallel is not None:
        raise ConfigError(f"bench: --parallel {args.parallel} is now --slots {args.parallel} (server slot counts to "
                          "try); --parallel means examples evaluated at once in the other commands")
    if not (args.lm in ("local", "local-0.5b") or args.lm.startswith("gguf:")):
        raise ConfigError(f"--lm {args.lm}: bench measures an in-process model: use local, local-0.5b or gguf:PATH")
    configs = _chosen(default_configs(_slot_counts(args.slots), _modes(args.modes)), args.configs)
    settings = settings_from_args(args, parallel=1, cache=False)
    task = settings.make_task()
    examples, source = load_split(task, settings.data, settings.split, settings.seed, settings.limit)
    result = bench(task, examples, args.lm, args.out, configs=configs, task_options=dict(settings.task_options),
                   threads=args.threads, context=settings.context_window)
    result["command"] = command_line(args)
    result["data"] = {"path": source.name, "split": args.split, "limit": args.limit, "seed": args.seed}
    result |= provenance(source, len(examples))
    print(write_report(result, args.out))
    return 0


def _chosen(configs: list, wanted_text: str | None) -> list:
    """The configurations --configs names (all by default); 'default' must be among them."""
    if not wanted_text:
        return configs
    wanted = {c.strip() for c in wanted_text.split(",") if c.strip()}
    unknown = wanted - {c.name for c in configs}  # a name stands for its row in every mode
    if unknown:
        raise ConfigError(f"--configs: unknown {', '.join(sorted(unknown))}; choose from "
                          f"{', '.join(c.name for c in configs)}")
    if "default" not in wanted:
        raise ConfigError("--configs must include 'default': one slot is what batching changes are counted against")
    return [c for c in configs if c.name in wanted]


def _modes(text: str) -> tuple[str, ...]:
    """--modes as distinct answer modes, in the order given."""
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in modes if m not in ("score", "generate")]
    if unknown or not modes:
        raise ConfigError(f"--modes {text!r}: choose from score,generate")
    return modes


def _slot_counts(text: str) -> tuple[int, ...]:
    """--slots as distinct slot counts above 1 (one slot is the 'default' configuration already)."""
    try:
        counts = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise ConfigError(f"--slots {text!r}: expected numbers such as 2,4") from None
    if any(n < 1 for n in counts):
        raise ConfigError(f"--slots {text!r}: slot counts must be at least 1")
    return tuple(sorted({n for n in counts if n > 1}))
