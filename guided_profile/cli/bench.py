"""`guided-profile bench`: throughput of GPG against the hardware's floor and a plain DSPy pipeline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from guided_profile.cli.common import (
    FORMATTER,
    add_data_options,
    command_line,
    load_split,
    make_task,
    positive_int,
)
from guided_profile.errors import ConfigError

EPILOG = """Run it with nothing else using the CPU: a competing job halves the model's speed.
example:
  guided-profile bench --task preference --data real --split test --limit 50 --lm local \\
      --out experiments/results/bench-preference-1.5b
"""


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("bench", help="measure throughput: model speed, plain DSPy vs this project's settings",
                            description=__doc__, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--lm", default="local", help="an in-process model: local, local-0.5b or gguf:PATH")
    parser.add_argument("--threads", type=positive_int, default=None, help="llama.cpp threads (default: all cores)")
    parser.add_argument("--parallel", default="2",
                        help="comma-separated slot counts to try beside 1, e.g. 2,4 (default 2)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of plain-dspy,default,parallel-N to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"),
                        help="folder for bench.json, table.md and each configuration's records")
    add_data_options(parser, default_limit=50)
    return parser


def main(args: argparse.Namespace) -> int:
    from guided_profile.bench import bench, default_configs, write_report

    if not (args.lm in ("local", "local-0.5b") or args.lm.startswith("gguf:")):
        raise ConfigError(f"--lm {args.lm}: bench measures an in-process model: use local, local-0.5b or gguf:PATH")
    configs = default_configs(_slot_counts(args.parallel))
    if args.configs:
        wanted = {c.strip() for c in args.configs.split(",") if c.strip()}
        unknown = wanted - {c.name for c in configs}
        if unknown:
            raise ConfigError(f"--configs: unknown {', '.join(sorted(unknown))}; choose from "
                              f"{', '.join(c.name for c in configs)}")
        configs = [c for c in configs if c.name in wanted]
        if not any(c.name == "default" for c in configs):
            raise ConfigError("--configs must include 'default': the floor is computed from its token counts")
    task, _ = make_task(args)
    examples, data, _ = load_split(task, args)
    args.out.mkdir(parents=True, exist_ok=True)
    result = bench(task, examples, args.lm, args.out, configs=configs, threads=args.threads)
    result["command"] = command_line(args)
    result["data"] = {"path": str(data), "split": args.split, "limit": args.limit, "seed": args.seed}
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    print(write_report(result, args.out))
    return 0


def _slot_counts(text: str) -> tuple[int, ...]:
    """--parallel as distinct slot counts above 1 (one slot is the 'default' configuration already)."""
    try:
        counts = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise ConfigError(f"--parallel {text!r}: expected numbers such as 2,4") from None
    if any(n < 2 for n in counts):
        raise ConfigError(f"--parallel {text!r}: slot counts must be at least 2 (1 slot is the 'default' row)")
    return tuple(sorted(set(counts)))
