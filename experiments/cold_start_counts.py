"""Cold-start users and history lengths of each task's data, per split (issue 21); no LM is called.

A cold-start user has fewer history items than the task's `min_history_items` (default 1: an empty
history, `Task.is_cold_start`); runs answer such users with the task's fallback, in a row of its own.
Loaders skip empty histories unless the task option `include_empty_history=true` keeps them, so this
builds every task's examples twice, the way `guided-profile run --data real` does (same task options,
same history budget), and reports per split (train / dev / test, and the first 200 test examples, the
users the committed runs use):

* examples and distinct people (a PersonaChat persona plays several dialogues), and how many are
  cold-start under the defaults and with `include_empty_history=true`;
* history length in items and in characters (the numbered lines a step would read, uncut): min,
  median, p90 (nearest rank), max;
* how many histories exceed `max_history_chars` (runs cut them to the most recent items that fit:
  what retrieval is for), and how many hold at most 4 or 8 items (retrieval with that k keeps them
  whole, so a retrieving run's prompt is the whole-history run's).

    python experiments/cold_start_counts.py     # writes experiments/results/cold-start-counts.{md,json}
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from guided_profile import __version__  # noqa: E402
from guided_profile.datasets.example import SPLITS, Example  # noqa: E402
from guided_profile.errors import ConfigError  # noqa: E402
from guided_profile.files import write_json, write_text  # noqa: E402
from guided_profile.provenance import git_state  # noqa: E402
from guided_profile.runs import DataSource, RunSettings, load_data  # noqa: E402
from guided_profile.tasks import BUILT_IN  # noqa: E402
from guided_profile.tasks.base import Task, numbered_history  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NAME = "cold-start-counts"
FIRST = 200  # the test users the committed whole-history runs and the retrieval scripts use
KS = (4, 8)  # the k of experiments/retrieval_*.sh
VARIANTS = {"defaults": {}, "include_empty_history": {"include_empty_history": True}}
# What a reader needs beside a task's numbers and cannot see in them.
NOTES = {
    "preference": "The history is the purchases left after one is held out, from users with at least "
                  "`min_categories` (5) categories, so it cannot be empty; the preference task refuses "
                  "`include_empty_history` (a user without purchases is skipped, counted as `empty_history`).",
}


def history_lengths(task: Task, examples: Sequence[Example]) -> tuple[list[int], list[int], int]:
    """(items per history, characters of its numbered lines uncut, how many the task's budget cuts)."""
    items = [len(ex.history) for ex in examples]
    chars = [len(numbered_history(ex.history, sys.maxsize)[0]) for ex in examples]
    cut = sum(task.history_text(ex)[1] for ex in examples)
    return items, chars, cut


def spread(values: Sequence[int]) -> dict[str, float] | None:
    """min, median, p90 (nearest rank: an observed value) and max; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered),
            "p90": ordered[math.ceil(0.9 * len(ordered)) - 1], "max": ordered[-1]}


def split_counts(task: Task, examples: Sequence[Example]) -> dict[str, Any]:
    """What the report states of one split's examples."""
    items, chars, cut = history_lengths(task, examples)
    return {"examples": len(examples), "people": len({ex.user_id for ex in examples}),
            "cold_start": sum(task.is_cold_start(ex) for ex in examples),
            "empty_history": sum(not ex.history for ex in examples),
            "items": spread(items), "chars": spread(chars), "over_max_history_chars": cut,
            **{f"at_most_{k}_items": sum(n <= k for n in items) for k in KS}}


def variant_counts(task: Task, source: DataSource, seed: int) -> dict[str, Any]:
    """Per split (and the first FIRST test examples), the counts of `split_counts`, with the build stats."""
    splits = {split: source.split(split, seed) for split in SPLITS}
    splits[f"test, first {FIRST}"] = splits["test"][:FIRST]
    return {"build_stats": source.stats, "min_history_items": task.min_history_items,
            "max_history_chars": task.max_history_chars,
            "first_test_ids": [ex.example_id for ex in splits[f"test, first {FIRST}"]],
            "splits": {name: split_counts(task, examples) for name, examples in splits.items()}}


def task_counts(name: str, data: str, seed: int) -> dict[str, Any]:
    """Both variants of one task, built as a run with those task options builds them."""
    out: dict[str, Any] = {}
    for variant, options in VARIANTS.items():
        try:
            settings = RunSettings.resolve(task=name, data=data, seed=seed, task_options=options, store=None)
            task = settings.make_task()
        except ConfigError as refused:  # the option does not apply: the task builds what its defaults build
            out[variant] = {**out["defaults"], "refused": str(refused)}
            continue
        source = load_data(task, data)
        out |= {"data": source.name, "data_sha256": source.sha256}
        out[variant] = variant_counts(task, source, seed) | {"task_options": dict(settings.task_options)}
    first = [out[variant].pop("first_test_ids") for variant in VARIANTS]
    out["include_empty_history"]["same_first_test"] = first[0] == first[1]
    return out


def _spread_cell(s: dict[str, float] | None) -> str:
    return "-" if s is None else " / ".join(f"{s[k]:g}" for k in ("min", "median", "p90", "max"))


def task_section(name: str, counts: dict[str, Any]) -> list[str]:
    default, empty = counts["defaults"], counts["include_empty_history"]
    lines = [f"## {name}", "", f"Data `{counts['data']}` (sha256 {counts['data_sha256'][:12]}), "
             f"`min_history_items` {default['min_history_items']}, `max_history_chars` "
             f"{default['max_history_chars']}.  Build stats under the defaults: "
             + ", ".join(f"{k} {v}" for k, v in default["build_stats"].items()) + ".", ""]
    lines += ["| split | examples | people | cold-start (defaults) | cold-start (include_empty_history) | "
              "items: min / median / p90 / max | characters: min / median / p90 / max | over max_history_chars | "
              + " | ".join(f"≤ {k} items" for k in KS) + " |", "|---" * (8 + len(KS)) + "|"]
    for split, c in default["splits"].items():
        e = empty["splits"][split]
        lines.append(f"| {split} | {c['examples']} | {c['people']} | {c['cold_start']} | {e['cold_start']} of "
                     f"{e['examples']} | {_spread_cell(c['items'])} | {_spread_cell(c['chars'])} | "
                     f"{c['over_max_history_chars']} ({100 * c['over_max_history_chars'] / max(1, c['examples']):.0f}%)"
                     " | " + " | ".join(str(c[f"at_most_{k}_items"]) for k in KS) + " |")
    lines += ["", *verdict(default, empty), ""]
    return lines + ([NOTES[name], ""] if name in NOTES else [])


def verdict(default: dict[str, Any], empty: dict[str, Any]) -> list[str]:
    """The plain sentences: are there cold-start users, and what does include_empty_history change."""
    cold = sum(default["splits"][s]["cold_start"] for s in SPLITS)
    added = sum(empty["splits"][s]["examples"] - default["splits"][s]["examples"] for s in SPLITS)
    lines = [f"**Under the defaults: {cold} cold-start users**"
             + (" (no example has fewer history items than `min_history_items`)." if not cold else ".")]
    if empty.get("refused"):
        lines.append(f"`include_empty_history=true` is refused here: {empty['refused']}.")
    elif not added:
        lines.append("`include_empty_history=true` builds no more examples here: the data has no usable example "
                     "with an empty history, so it changes nothing.")
    else:
        same = empty["same_first_test"]
        lines.append(f"`include_empty_history=true` adds {added} examples with an empty history (all cold-start, "
                     "answered by the fallback row); "
                     + (f"the first {FIRST} test examples stay the same." if same else
                        f"they fall among the others, so the first {FIRST} test examples are no longer the same "
                        "users as the committed runs'."))
    return lines


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Cold-start users and history lengths (issue 21)", "",
             f"Generated by `{result['command']}` (no LM): guided-profile {result['version']} at commit "
             f"{(result['git']['commit'] or 'not recorded')[:12]}"
             + (" with uncommitted changes" if result["git"]["dirty"] else "") + f"; seed {result['seed']}, "
             "the default split by user (60 / 20 / 20).", "",
             "A cold-start user has fewer history items than `min_history_items` (`Task.is_cold_start`); runs "
             "answer them with the task's fallback (`dg-no-pc`) in a row of its own.  Characters are those of the "
             "numbered history lines a step would read, before any cut; *over max_history_chars* counts the "
             "histories a run cuts to the most recent items that fit; *≤ k items* counts the histories retrieval "
             "with that k keeps whole (the same prompt as the whole-history run).  The counts under a larger "
             "`min_history_items` m follow from the items column: *≤ 4 items* are the cold-start users at m = 5.",
             "", f"JSON beside this file: `{NAME}.json`.", ""]
    for name, counts in result["tasks"].items():
        lines += task_section(name, counts)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="real", help="'real' (default) or 'sample': each task's own data set")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed (default 0, as the runs)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the .md and .json (default results/)")
    args = parser.parse_args(argv)
    command = "python experiments/cold_start_counts.py" + ("" if args.data == "real" else f" --data {args.data}") \
        + ("" if args.seed == 0 else f" --seed {args.seed}")
    tasks = {cls.name: task_counts(cls.name, args.data, args.seed) for cls in BUILT_IN}
    result = {"command": command, "seed": args.seed, "git": git_state(), "version": __version__, "tasks": tasks}
    write_json(args.out / f"{NAME}.json", result)
    write_text(args.out / f"{NAME}.md", markdown(result) + "\n")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
