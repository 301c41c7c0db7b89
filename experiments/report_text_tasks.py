"""Report of the text tasks' four-method runs: the paper's Figure 3 (LaMP-7) and Table 2 (dialogue) shapes.

Reads the run folders written by experiments/text_tasks.sh, restricts each task to the users all four
methods finished, and writes experiments/results/text-tasks.md plus one PNG per task: every metric per
method with its 95% bootstrap interval, and paired differences (GPG against each baseline) with
paired-permutation p-values.

    python experiments/report_text_tasks.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from guided_profile.datasets.example import split_examples  # noqa: E402
from guided_profile.datasets.lamp import PREFIX  # noqa: E402
from guided_profile.evaluation import RECORDS, read_records  # noqa: E402
from guided_profile.metrics.stats import bootstrap_ci, paired_bootstrap, paired_permutation_pvalue  # noqa: E402
from guided_profile.report import origin, p_clause  # noqa: E402
from guided_profile.runs import resolve_data  # noqa: E402
from guided_profile.tasks import get_task  # noqa: E402
from guided_profile.tasks.base import Task  # noqa: E402

RESULTS = Path(__file__).parent / "results"
METHODS = ["dg-no-pc", "dg-pc", "pg", "gpg"]
LABELS = {"dg-no-pc": "DG w/o PC", "dg-pc": "DG w/ PC", "pg": "PG", "gpg": "GPG (PC + G + PP)"}
TASKS = {"paraphrase": "Figure 3 shape: LaMP-7 tweet paraphrasing", "dialogue": "Table 2 shape: PersonaChat replies"}
PAIRS = [("gpg", "dg-pc"), ("gpg", "pg"), ("pg", "dg-pc")]
# What a reader needs beside each task's table to compare it with the paper.
NOTES = {"paraphrase": "Paper (gpt-3.5, LaMP-7, main row PC + G + PP): METEOR 42.22 (DG w/ PC) -> 44.46 (GPG); the "
                       "PC + PP row gives 43.87.",
         "dialogue": "`bs` is BERTScore F1 from all-MiniLM-L6-v2's last layer without baseline rescaling: not "
                     "comparable with the paper's BERTScore values (only the differences between rows here are)."}
# Task options whose kept examples get their own subsection, with what they keep.
FILTERS = {"dialogue": ({"similarity_filter": True}, "the paper's optional filter: the best cosine between the "
                        "real reply and one of the person's earlier replies lies in [0.4, 0.6]")}


def load(folder: Path, task: Task, config: dict) -> dict[tuple[str, str], dict]:
    """The folder's finished records of examples in the run's split as the task splits it today (the
    dialogue task once split by dialogue, now by persona: records of other examples are left out)."""
    examples = split_examples(task.load(data_path(task, config))[0], config["split"], config["seed"])
    ids = {ex.example_id for ex in examples}
    return {(r["method"], r["example_id"]): r for r in read_records(folder / RECORDS)
            if r.get("error") is None and r["example_id"] in ids}


def data_path(task: Task, config: dict) -> Path:
    """The data the run read (`real:SUB` is this machine's copy of it)."""
    return resolve_data(task, config["data"])


def normalized(text: str) -> str:
    return " ".join(text.strip().strip('"').lower().split())


def copied(record: dict) -> bool:
    """The reply repeats the question's text (for LaMP-7: the neutral tweet, after LaMP's instruction)."""
    query = record["inputs"]["question"].removeprefix(PREFIX)
    return normalized(record["reply"]) == normalized(query)


def task_section(name: str, title: str) -> tuple[list[str], Path | None]:
    folder = RESULTS / f"{name}-four-methods-1.5b"
    if not (folder / "config.json").exists():
        return [f"## {title}", "", f"No run in {folder.name} yet.", ""], None
    task = get_task(name)
    config = json.loads((folder / "config.json").read_text())
    runs = load(folder, task, config)
    users = sorted({e for _, e in runs if all((m, e) in runs for m in METHODS)})
    if not users:
        return [f"## {title}", "", f"No finished users in {folder.name} yet.", ""], None
    keys = list(task.metric_keys)
    per = {m: [runs[(m, u)] for u in users] for m in METHODS}
    lines = [f"## {title}", "",
             f"Run folder `{folder.name}`: {len(users)} test users of `{config['data']}` (split by user, seed "
             f"{config['seed']}), model {config['lm']['model']}, greedy; every method on the same users: all "
             "test users the four methods have finished, which after a cut run can be a few more than the last "
             f"finished command's limit.  That command: `{config.get('command', 'experiments/text_tasks.sh')}`.  "
             f"Provenance: {origin(config)}.", "", NOTES[name], "",
             "| method | " + " | ".join(keys) + " | calls/ex | store hits/ex | prompt tok/ex | generated tok/ex "
             "| same reply as DG w/ PC | reply = the query |",
             "|---|" + "---|" * (len(keys) + 6)]
    stats: dict[str, dict[str, tuple[float, float, float]]] = {}
    for m in METHODS:
        cells, stats[m] = metric_cells(task, per[m], keys)
        n = len(users)
        same = sum(r["reply"].strip() == d["reply"].strip() for r, d in zip(per[m], per["dg-pc"], strict=True))
        usage = {k: sum(r["usage"].get(k, 0) for r in per[m]) / n
                 for k in ("calls", "store_hits", "prompt_tokens", "completion_tokens")}
        copies = sum(copied(r) for r in per[m])
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + f" | {usage['calls']:.1f} | {usage['store_hits']:.1f} | "
                     f"{usage['prompt_tokens']:.0f} | {usage['completion_tokens']:.0f} | {100 * same / n:.0f}% | "
                     f"{100 * copies / n:.0f}% |")
    lines += ["", "A step taken from the profile store (a digestion or profile an earlier run made with the same "
              "history, instruction and model) counts as a call with no tokens: the token columns then hold the "
              "other steps.",
              "", "Paired differences (mean over the same users, 95% paired bootstrap interval, paired permutation p; "
              "BLEU here is sentence BLEU):", ""] + paired_table(per, keys)
    guidance = Counter(r.get("guidance", "").strip() for r in per["gpg"]).most_common(3)
    lines += ["", "GPG's answers to the guidance question, most common first: "
              + "; ".join(f"{text!r} ({count} of {len(users)})" for text, count in guidance) + ".", ""]
    if name in FILTERS:
        lines += filtered_section(task, *FILTERS[name], config, per, keys)
    return lines, plot(name, title, keys, stats, len(users))


def metric_cells(task: Task, records: list[dict], keys: list[str]) -> tuple[list[str], dict]:
    """Per metric, the task's summary value with a 95% bootstrap interval, as table cells ("-" where no
    record has the metric) and as (value, low, high) for the plot."""
    summary = task.summarize([r["metrics"] for r in records])
    cells, stats = [], {}
    for k in keys:
        values = [r["metrics"][k] for r in records if r["metrics"].get(k) is not None]
        if not values:
            cells.append("-")
            continue
        lo, hi = bootstrap_ci(values)
        # BLEU's table value is corpus BLEU (as BLEU is defined); its interval is over sentence BLEU.
        stats[k] = (summary[k], lo, hi)
        cells.append(f"{summary[k]:.3f} [{lo:.3f}, {hi:.3f}]" if k != "bleu" else
                     f"{summary[k]:.2f} (sentence [{lo:.2f}, {hi:.2f}])")
    return cells, stats


def paired_table(per: dict[str, list[dict]], keys: list[str]) -> list[str]:
    """One row per pair in PAIRS: mean difference, paired bootstrap interval and permutation p per metric."""
    lines = ["| comparison | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for a, b in PAIRS:
        cells = []
        for k in keys:
            pairs = [(x["metrics"][k], y["metrics"][k]) for x, y in zip(per[a], per[b], strict=True)
                     if x["metrics"].get(k) is not None and y["metrics"].get(k) is not None]
            if not pairs:
                cells.append("-")
                continue
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            mean, lo, hi = paired_bootstrap(xs, ys)
            cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}] {p_clause(paired_permutation_pvalue(xs, ys))}")
        lines.append(f"| {LABELS[a]} − {LABELS[b]} | " + " | ".join(cells) + " |")
    return lines


def filtered_section(task: Task, options: dict, description: str, config: dict,
                     per: dict[str, list[dict]], keys: list[str]) -> list[str]:
    """The same users restricted to the examples a task option keeps (for dialogue: the paper's optional
    filter on the best history-to-reply similarity), so the filter's effect is read off the same replies."""
    filtered = type(task)(**(config.get("task_options") or {}) | options)
    examples, stats = filtered.load(data_path(task, config))
    kept = {ex.example_id for ex in examples}
    sub = {m: [r for r in records if r["example_id"] in kept] for m, records in per.items()}
    n = len(sub["gpg"])
    described = ", ".join(f"{k}={v}" for k, v in options.items())
    lines = [f"### Only the examples `{described}` keeps", "", f"That is {description}. "
             f"{n} of these {len(per['gpg'])} users pass (over the whole file: "
             + ", ".join(f"{k} {v}" for k, v in stats.items()) + ").", ""]
    if n < 2:
        return lines + ["Too few for intervals.", ""]
    lines += ["| method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for m in METHODS:
        lines.append(f"| {LABELS[m]} | " + " | ".join(metric_cells(task, sub[m], keys)[0]) + " |")
    return lines + ["", "Paired differences on them:", ""] + paired_table(sub, keys) + [""]


def plot(name: str, title: str, keys: list[str], stats: dict, n: int) -> Path:
    """Grouped bars, one group per metric (the paper's Figure 3 layout); 0-1 metrics shown as percent like BLEU."""
    fig, ax = plt.subplots(figsize=(2.2 * len(keys) + 2, 4))
    width = 0.8 / len(METHODS)
    for i, m in enumerate(METHODS):
        xs, means, errs = [], [], [[], []]
        for j, k in enumerate(keys):
            if k not in stats[m]:
                continue
            scale = 1 if k == "bleu" else 100
            mean, lo, hi = (v * scale for v in stats[m][k])
            if k == "bleu":  # interval of sentence BLEU around corpus BLEU would mislead: none drawn
                lo = hi = mean
            xs.append(j + (i - 1.5) * width)
            means.append(mean)
            errs[0].append(max(mean - lo, 0))
            errs[1].append(max(hi - mean, 0))
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=LABELS[m])
    ax.set_xticks(range(len(keys)), [k.upper() if k in ("bleu", "st", "bs") else k for k in keys])
    ax.set_ylabel("score x100" + ("; BLEU as is" if "bleu" in keys else ""))
    ax.set_title(f"{title} (n={n})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = RESULTS / f"{name}-four-methods.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    lines = ["# Text tasks: the paper's four methods", "",
             "Generated by `python experiments/report_text_tasks.py` from the runs of `experiments/text_tasks.sh`.", ""]
    for name, title in TASKS.items():
        section, png = task_section(name, title)
        lines += section + ([f"![{name}]({png.name})", ""] if png else [])
    (RESULTS / "text-tasks.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
