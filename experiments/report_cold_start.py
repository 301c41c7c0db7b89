"""What the cold-start fallback would give users with short histories (issue 21), from committed runs; no LM.

No user of the three data sets is cold-start under the defaults (results/cold-start-counts.md: every
history holds at least 5 items), so the fallback's score on cold-start users cannot be measured on them.
What can be: the committed whole-history runs answered every user with every method, the fallback
(DG w/o PC) among them, so on the users a larger `min_history_items` m would hand the fallback (fewer
than m history items), this reports what they got from the fallback against what they got with their
history.  Per task and m: the users, each method's mean of the task's main metric, and GPG − fallback
paired (95% paired bootstrap interval, paired permutation p-value: `metrics.stats`).

A report on test users; it chooses nothing: `min_history_items` stays at 1 (empty histories only).  The
item counts come from rebuilding each run's examples from its config (task, data, seed, task options),
checked against the data hash the run recorded (a run without one is refused).

    python experiments/report_cold_start.py      # writes experiments/results/cold-start-fallback.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from guided_profile.evaluation import RECORDS, read_records  # noqa: E402
from guided_profile.files import write_text  # noqa: E402
from guided_profile.metrics.stats import paired_bootstrap, paired_permutation_pvalue  # noqa: E402
from guided_profile.provenance import git_state  # noqa: E402
from guided_profile.report import p_clause  # noqa: E402
from guided_profile.runs import RunSettings, load_data  # noqa: E402
from guided_profile.tasks.base import Task  # noqa: E402

RESULTS = Path(__file__).parent / "results"
REPORT = "cold-start-fallback.md"
LABELS = {"dg-no-pc": "DG w/o PC", "dg-pc": "DG w/ PC", "pg": "PG", "gpg": "GPG"}


@dataclass(frozen=True)
class Source:
    """A committed whole-history run that answered every user with the fallback and GPG."""

    folder: str
    metric: str                  # the task's main per-example metric, a 0-1 score reported in points
    thresholds: tuple[int, ...]  # values of min_history_items to report, each a larger share of the users


SOURCES = (
    Source("table1-preference-titles-score-1.5b", "accuracy", (6, 8, 10)),
    Source("paraphrase-four-methods-1.5b", "meteor", (10, 12, 14)),
    Source("dialogue-four-methods-1.5b", "st", (7,)),
)


def rebuilt(config: dict[str, Any]) -> tuple[Task, dict[str, int]]:
    """The run's task and the items per example id of its split, rebuilt as the run built them; refused in one
    line if the data is not what the run read (a run that recorded no hash cannot be checked, and is refused)."""
    settings = RunSettings.resolve(task=config["task"], data=config["data"], seed=config["seed"],
                                   task_options=config["task_options"], store=None)
    task = settings.make_task()
    source = load_data(task, config["data"])
    if source.sha256 != config.get("data_sha256"):
        sys.exit(f"{config['data']}: the data is not what the run read (sha256 {source.sha256[:12]}, the run "
                 f"recorded {(config.get('data_sha256') or 'none')[:12]}); its item counts would not be the run's")
    return task, {ex.example_id: len(ex.history) for ex in source.split(config["split"], config["seed"])}


def scores(folder: Path, metric: str) -> dict[str, dict[str, float]]:
    """method -> example id -> metric, from the run's finished records."""
    out: dict[str, dict[str, float]] = {}
    for r in read_records(folder / RECORDS):
        if not r.get("error") and r.get("metrics", {}).get(metric) is not None:
            out.setdefault(r["method"], {})[r["example_id"]] = float(r["metrics"][metric])
    return out


def row(label: str, ids: Sequence[str], by_method: dict[str, dict[str, float]], methods: Sequence[str],
        fallback: str) -> str:
    """One table row: the users, each method's mean, GPG − fallback paired."""
    if not ids:
        return f"| {label} | 0 |" + " - |" * (len(methods) + 1)
    means = [100 * statistics.fmean(by_method[m][i] for i in ids) for m in methods]
    gpg, fell_back = [by_method["gpg"][i] for i in ids], [by_method[fallback][i] for i in ids]
    diff, lo, hi = paired_bootstrap(gpg, fell_back)
    p = paired_permutation_pvalue(gpg, fell_back)
    return (f"| {label} | {len(ids)} | " + " | ".join(f"{v:.1f}" for v in means)
            + f" | {100 * diff:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], {p_clause(p)} |")


def section(source: Source) -> list[str]:
    folder = RESULTS / source.folder
    config = json.loads((folder / "config.json").read_text())
    (task, items), by_method = rebuilt(config), scores(folder, source.metric)
    fallback = task.cold_start_fallback
    methods = [m for m in LABELS if m in by_method]
    if not {"gpg", fallback} <= set(methods):
        sys.exit(f"{folder}: no GPG or no {fallback} (the fallback) records to pair")
    # only the split's users: a folder's records can hold users a later split moved (dialogue: results/README.md)
    users = sorted(set(items).intersection(*(by_method[m] for m in methods)), key=lambda i: (items[i], i))
    if not users:
        sys.exit(f"{folder}: no user of the split has a record of every method")
    lines = [f"## {config['task']}: {source.metric}, in points", "",
             f"From `{source.folder}` ({config['data']}, sha256 {config.get('data_sha256', '?')[:12]}, split "
             f"{config['split']}, first {config['limit']} users, seed {config['seed']}, {config['lm']['model']}); "
             f"the {len(users)} users of the split every method finished, history items {items[users[0]]} to "
             f"{items[users[-1]]} "
             f"(median {statistics.median(items[i] for i in users):g}).", "",
             "| users | n | " + " | ".join(LABELS[m] + " (fallback)" * (m == fallback) for m in methods)
             + " | GPG − fallback [95%], p |",
             "|---" * (3 + len(methods)) + "|"]
    for m in source.thresholds:
        short = [i for i in users if items[i] < m]
        lines.append(row(f"fewer than {m} items (cold-start at m = {m})", short, by_method, methods, fallback))
    lines += [row("all", users, by_method, methods, fallback), ""]
    return lines


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / REPORT, help=f"the report (default results/{REPORT})")
    args = parser.parse_args(argv)
    git = git_state()
    lines = ["# Short histories under the cold-start fallback (issue 21)", "",
             f"Generated by `python experiments/report_cold_start.py` (no LM) at commit "
             f"{(git['commit'] or 'not recorded')[:12]}" + (" with uncommitted changes" if git["dirty"] else "")
             + ".  Under the defaults no user is cold-start (`cold-start-counts.md`); each row is the users a "
             "`min_history_items` of m would answer with the fallback, scored by what the committed "
             "whole-history runs gave them.  A report on test users: it chose nothing, and `min_history_items` "
             "stays 1.", ""]
    for source in SOURCES:
        lines += section(source)
    text = "\n".join(lines)
    write_text(args.out, text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
