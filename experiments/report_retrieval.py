"""Report of the retrieval runs (issue 21): each (retriever, k) folder against the whole-history run, same users.

Reads the folders written by experiments/retrieval_paraphrase.sh and experiments/retrieval_preference.sh (test:
`retrieval-TASK-RETRIEVER-kK-1.5b`; the dev choice: `retrieval-dev-TASK-RETRIEVER-kK-1.5b`) and pairs each
method's records with the same method's records in the committed whole-history run of that task and split
(`paraphrase-four-methods-1.5b`, `table1-preference-titles-score-1.5b`; on dev
`paraphrase-dev-whole-history-1.5b`, `answer-mode-dev-preference-score-1.5b`), on the users both finished.
Per folder and method: each metric's paired difference (retrieved − whole history, in points, with a 95% paired
bootstrap interval and a paired permutation p-value: `metrics.stats`), how often the reply is the same, how many
items were kept, and the prompt tokens per example.  On dev, the pre-registered rule chooses the default
retriever; on test, the same rule reads whether that choice held.

A pairing is only as good as the settings the two runs share, so each folder is first checked against its
whole-history run: task, data and its hash, split, seed, model and weights, answer mode and rotations, task
options (`max_history_chars` among them), step caps and loop rule; and, user by user, the recorded inputs (the
whole history as a run numbers and cuts it, the question, the options) and gold.  Every difference is stated
above the numbers it spoils.

    python experiments/report_retrieval.py        # writes experiments/results/retrieval.md
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from guided_profile.evaluation import RECORDS, answer_step_count, read_records  # noqa: E402
from guided_profile.files import write_text  # noqa: E402
from guided_profile.metrics.stats import paired_bootstrap, paired_permutation_pvalue  # noqa: E402
from guided_profile.programs.adapter import DEFAULT_LAYOUT  # noqa: E402
from guided_profile.programs.conversation import DEFAULT_PROFILE_STEP  # noqa: E402
from guided_profile.report import by_example_id, origin, p_clause  # noqa: E402
from guided_profile.tasks import get_task  # noqa: E402
from guided_profile.tasks.base import gold_probability, history_items  # noqa: E402

RESULTS = Path(__file__).parent / "results"
REPORT = "retrieval.md"
RETRIEVERS = ("recent", "bm25", "dense")  # the report's row order; other retrievers follow by name
LABELS = {"dg-pc": "DG w/ PC", "gpg": "GPG"}
METRIC_WORDS = {"gold_probability": "gold-option probability", "meteor": "METEOR", "rougeL": "ROUGE-L"}
# What a run config made before a setting was recorded ran with: digestion and profile under
# programs.modules.STEP_MAX_TOKENS (256), the answer under the task's cap; no loop rule; no retrieval.
OLD_STEP_CAP = 256
NEAR_COPY = 0.9  # difflib ratio above which a history item counts as a copy of the gold text


@dataclass(frozen=True)
class Study:
    """One task's retrieval runs and the whole-history run they are paired with."""

    task: str
    split: str                   # dev runs choose the default retriever; test runs only report
    baseline: str                # folder of the whole-history run
    prefix: str                  # retrieval folders: PREFIX-RETRIEVER-kK-1.5b
    methods: tuple[str, ...]
    metrics: tuple[str, ...]     # per-example metrics, each a 0-1 score, reported in points
    script: str
    choose_by: str               # the dev rule's ranking of the runs that pass it (one of `metrics`)


STUDIES = (
    Study("paraphrase", "dev", "paraphrase-dev-whole-history-1.5b", "retrieval-dev-paraphrase", ("gpg", "dg-pc"),
          ("meteor", "rougeL"), "experiments/retrieval_paraphrase.sh 60 dev", "meteor"),
    Study("paraphrase", "test", "paraphrase-four-methods-1.5b", "retrieval-paraphrase", ("gpg", "dg-pc"),
          ("meteor", "rougeL"), "experiments/retrieval_paraphrase.sh", "meteor"),
    Study("preference", "dev", "answer-mode-dev-preference-score-1.5b", "retrieval-dev-preference", ("gpg",),
          ("accuracy", "gold_probability"), "experiments/retrieval_preference.sh 60 dev", "gold_probability"),
    Study("preference", "test", "table1-preference-titles-score-1.5b", "retrieval-preference", ("gpg",),
          ("accuracy", "gold_probability"), "experiments/retrieval_preference.sh", "gold_probability"),
)


@dataclass(frozen=True)
class Run:
    """A run folder's config and its finished records by (method, example id)."""

    folder: Path
    config: dict[str, Any]
    records: dict[tuple[str, str], dict[str, Any]]
    backfilled: int = 0  # records whose gold_probability was read from their choice_probs

    @classmethod
    def read(cls, folder: Path) -> Run:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        records = {(r["method"], r["example_id"]): r for r in read_records(folder / RECORDS) if r.get("error") is None}
        return cls(folder, config, records, sum(map(backfill_gold_probability, records.values())))

    @property
    def retrieval(self) -> dict[str, Any] | None:
        """The config's retrieval if the run retrieved (a k), else None (whole history; older configs lack it)."""
        retrieval = self.config.get("retrieval")
        return retrieval if retrieval and retrieval.get("k") is not None else None

    @property
    def retriever_and_k(self) -> tuple[str, int] | None:
        """(retriever name, k) of a retrieving run, as a task's `default_retrieval` names it; else None."""
        return (self.retrieval["retriever"]["name"], self.retrieval["k"]) if self.retrieval else None

    def users(self, method: str) -> int:
        """How many users `method` finished in this run."""
        return sum(m == method for m, _ in self.records)


def backfill_gold_probability(record: dict[str, Any]) -> bool:
    """Score-mode records written before `gold_probability` was a metric still hold the letter probabilities
    it is computed from: fill it in as the task computes it (True if it was)."""
    metrics, probs = record.get("metrics") or {}, record.get("choice_probs")
    if "gold_probability" in metrics or not probs or "accuracy" not in metrics:
        return False
    metrics["gold_probability"] = gold_probability(probs, record["gold"])
    return True


def effective_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What a run's prompts and scores depend on besides the retrieval, with what older configs left unsaid
    filled in as the code then ran (task options at their defaults, the old step caps, no loop rule)."""
    task = get_task(config["task"], **(config.get("task_options") or {}))
    options = type(task).option_defaults() | (config.get("task_options") or {})
    lm = config.get("lm") or {}
    score = config.get("answer_mode") == "score"
    caps = {"digest": OLD_STEP_CAP, "profile": OLD_STEP_CAP, "answer": task.answer_max_tokens}
    return {"task": config["task"], "data": config.get("data"), "data_sha256": config.get("data_sha256"),
            "split": config.get("split"), "seed": config.get("seed"), "model": lm.get("model"),
            "weights sha256": lm.get("sha256"), "context window": lm.get("context"),
            "answer_mode": config.get("answer_mode"), "rotations": config.get("rotations") if score else None,
            "task_options": options, "step_max_tokens": config.get("step_max_tokens") or caps,
            "loop_rule": config.get("loop_rule"), "prompt_layout": config.get("prompt_layout", DEFAULT_LAYOUT),
            "profile_step": config.get("profile_step", DEFAULT_PROFILE_STEP), "draft_ngram": lm.get("draft_ngram")}


def setting_problems(run: Run, baseline: Run) -> list[str]:
    """How `run`'s settings differ from the whole-history run's, beyond the retrieval (none: pairing is valid)."""
    problems = []
    if baseline.retrieval is not None:
        problems.append(f"the reference run `{baseline.folder.name}` retrieves too ({baseline.retrieval})")
    if run.retrieval is None:
        problems.append("this folder does not retrieve (no k)")
    ours, theirs = effective_settings(run.config), effective_settings(baseline.config)
    for key in ("data_sha256", "weights sha256"):  # unknown on one side: say so, rather than "None here"
        missing = [who for who, settings in (("this run", ours), ("the whole-history run", theirs))
                   if settings[key] is None]
        problems += [f"{key} not recorded by {who}" for who in missing]
        if missing:
            del ours[key], theirs[key]
    options, their_options = ours.pop("task_options"), theirs.pop("task_options")
    for key in sorted(options.keys() | their_options.keys()):
        if options.get(key) != their_options.get(key):
            problems.append(f"task option {key}: {options.get(key)!r} here, {their_options.get(key)!r} in the "
                            "whole-history run")
    problems += [f"{key}: {value!r} here, {theirs[key]!r} in the whole-history run" for key, value in ours.items()
                 if value != theirs[key]]
    return problems


def pairs(run: Run, baseline: Run, method: str) -> list[tuple[dict, dict]]:
    """(retrieved, whole-history) records of `method` on the users both runs finished, by example id."""
    ids = by_example_id({e for m, e in run.records if m == method and (method, e) in baseline.records})
    return [(run.records[(method, e)], baseline.records[(method, e)]) for e in ids]


def input_mismatches(paired: list[tuple[dict, dict]]) -> list[str]:
    """Example ids whose recorded inputs or gold differ between the two runs (then they are not the same users'
    same questions: other data, another history budget, another option order)."""
    return [r["example_id"] for r, b in paired if (r["inputs"], r["gold"]) != (b["inputs"], b["gold"])]


def gold_in_history(baseline: Run, method: str) -> list[str]:
    """Example ids whose gold text, or a near copy of it (difflib ratio >= NEAR_COPY, with case, spacing and
    @-mentions aside: a tweet sent again to another addressee is the same text), is an item of the person's own
    history as the whole-history run kept it: a retriever that finds that item lets the model copy the answer,
    a property of the data, not of the query."""
    def plain(text: str) -> str:
        return " ".join(re.sub(r"@\w+", "", text).lower().split())

    found = []
    for (m, example_id), record in baseline.records.items():
        if m != method:
            continue
        gold = plain(record["gold"])
        items = [plain(item) for item in history_items(record["inputs"]["history"])]
        if any(difflib.SequenceMatcher(None, gold, item).ratio() >= NEAR_COPY for item in items if item):
            found.append(example_id)
    return by_example_id(found)


def metric_cell(paired: list[tuple[dict, dict]], metric: str) -> str:
    """'whole → retrieved, Δ [lo, hi], p' in points, on the pairs where both records have the metric."""
    both = [(r["metrics"][metric], b["metrics"][metric]) for r, b in paired
            if r["metrics"].get(metric) is not None and b["metrics"].get(metric) is not None]
    if not both:
        return "-"
    ours, theirs = [x for x, _ in both], [y for _, y in both]
    mean, lo, hi = paired_bootstrap(ours, theirs)
    p = paired_permutation_pvalue(ours, theirs)
    note = "" if len(both) == len(paired) else f" (n {len(both)})"
    return (f"{100 * statistics.fmean(theirs):.1f} → {100 * statistics.fmean(ours):.1f}: {100 * mean:+.1f} "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}], {p_clause(p)}{note}")


def kept_whole(record: dict, reference: dict) -> bool:
    """Whether retrieval kept every item of the history: its prompt is the whole-history run's.  Known from the
    records alone: the reference's history was not cut and holds as many numbered lines as items were kept."""
    history = reference["inputs"]["history"]
    lines = history.count("\n") + 1 if history else 0
    return not reference["history_cut"] and len(record["retrieval"]["kept"]) == lines


def computed(record: dict) -> bool:
    """Every step of the record ran on the model (no DSPy cache hit, no profile-store hit): its tokens are real."""
    return not record["usage"].get("cache_hits") and not record["usage"].get("store_hits")


def answer_prompt_tokens(config: dict[str, Any], record: dict) -> int | None:
    """The prompt tokens of the record's answer step(s), None where one was a DSPy cache hit (no tokens then)."""
    steps = record["steps"][-answer_step_count(config, record):]
    return None if any(s.get("cache_hits") for s in steps) else sum(s["prompt_tokens"] for s in steps)


def answer_token_pairs(run: Run, baseline: Run, paired: list[tuple[dict, dict]]) -> list[tuple[int, int]]:
    """(retrieved, whole-history) answer-step prompt tokens of the pairs where neither step was a cache hit."""
    tokens = [(answer_prompt_tokens(run.config, r), answer_prompt_tokens(baseline.config, b)) for r, b in paired]
    return [(r, b) for r, b in tokens if r is not None and b is not None]


def tokens_cell(values: list[tuple[float, float]]) -> str:
    """'whole → retrieved (n)' as means of (retrieved, whole) pairs; '-' for none."""
    if not values:
        return "-"
    return (f"{statistics.fmean(b for _, b in values):.0f} → {statistics.fmean(r for r, _ in values):.0f} "
            f"(n {len(values)})")


def method_row(study: Study, run: Run, baseline: Run, method: str) -> tuple[list[str], list[str]]:
    """One table row (retriever, k, method, n, metrics, replies, items, tokens) and the problems of its pairs."""
    paired = pairs(run, baseline, method)
    retriever, k = run.retriever_and_k or ("?", "?")
    head = [retriever, str(k), LABELS.get(method, method), str(len(paired))]
    if not paired:
        return head + ["-"] * (len(study.metrics) + 5), []
    mismatched = input_mismatches(paired)
    problems = [f"{method}: other inputs or gold on {len(mismatched)} of {len(paired)} users (first: "
                f"{', '.join(mismatched[:3])})"] if mismatched else []
    same = sum(r["reply"].strip() == b["reply"].strip() for r, b in paired)
    kept = statistics.fmean(len(r["retrieval"]["kept"]) for r, _ in paired)
    whole = [(r, b) for r, b in paired if kept_whole(r, b)]
    whole_same = sum(r["reply"].strip() == b["reply"].strip() for r, b in whole)
    every = [(r["usage"]["prompt_tokens"], b["usage"]["prompt_tokens"]) for r, b in paired
             if computed(r) and computed(b)]
    answers = answer_token_pairs(run, baseline, paired)
    cells = [metric_cell(paired, metric) for metric in study.metrics]
    cells += [f"{100 * same / len(paired):.0f}%", f"{kept:.1f}",
              f"{len(whole)} ({whole_same} same reply)" if whole else "0", tokens_cell(every), tokens_cell(answers)]
    return head + cells, problems


def retrieval_folders(study: Study, results: Path) -> list[Path]:
    """The study's retrieval folders, retrievers in RETRIEVERS order (others after, by name), then k."""
    found = [p for p in results.glob(f"{study.prefix}-*") if (p / "config.json").is_file()]

    def order(path: Path) -> tuple:
        retrieval = json.loads((path / "config.json").read_text(encoding="utf-8")).get("retrieval") or {}
        name = (retrieval.get("retriever") or {}).get("name", "")
        return (RETRIEVERS.index(name) if name in RETRIEVERS else len(RETRIEVERS), name, retrieval.get("k") or 0)

    return sorted(found, key=order)


def study_section(study: Study, results: Path) -> list[str]:
    title = (f"## {study.task}, {study.split} users: {', '.join(LABELS.get(m, m) for m in study.methods)} against "
             "the whole history")
    base_folder = results / study.baseline
    folders = retrieval_folders(study, results)
    if not (base_folder / "config.json").is_file():
        return [title, "", f"No whole-history run `{study.baseline}` to pair with.", ""]
    if not folders:
        return [title, "", f"No retrieval folder `{study.prefix}-*` yet: run `{study.script}`.", ""]
    baseline = Run.read(base_folder)
    config = baseline.config
    mode = config.get("answer_mode") + (f" ({config.get('rotations')} rotations)" if config.get("rotations") else "")
    lines = [title, "", f"Whole-history run `{study.baseline}`: data `{config.get('data')}`, split "
             f"{config.get('split')}, seed {config.get('seed')}, model {(config.get('lm') or {}).get('model')}, "
             f"answer mode {mode}; {origin(config)}.  Retrieval runs: `{study.script}`.", ""]
    if baseline.backfilled:
        lines += [f"The whole-history run's records predate the gold-probability metric: on {baseline.backfilled} "
                  "records it is read from their recorded letter probabilities (`choice_probs`), as the task "
                  "computes it.", ""]
    if not config.get("step_max_tokens"):
        lines += ["The whole-history run's config predates recorded step caps: it is taken to have run under the "
                  f"caps of its time (digestion and profile {OLD_STEP_CAP} tokens, the answer the task's own), "
                  "today's defaults.", ""]
    metric_names = [m.replace("_", " ") for m in study.metrics]
    table = ["| retriever | k | method | n | " + " | ".join(f"{m}: whole → retrieved, Δ [95% CI], p"
                                                       for m in metric_names)
             + " | same reply | items kept | kept whole (same reply) | prompt tok/ex, every step computed | "
             "prompt tok/ex, answer step(s) |", "|---" * (9 + len(study.metrics)) + "|"]
    checks, runs, invalid = [], [], []
    for folder in folders:
        run = Run.read(folder)
        runs.append(run)
        problems, rows = setting_problems(run, baseline), []
        for method in study.methods:
            row, record_problems = method_row(study, run, baseline, method)
            rows.append(row)
            problems += record_problems
        for row in rows:
            if problems:  # the row stays, marked where it is read, not only in the checks above
                row[0] = f"{row[0]} (**not a valid pairing**)"
            table.append("| " + " | ".join(row) + " |")
        if problems:
            invalid.append(folder.name)
            checks.append(f"- `{folder.name}`: **not a valid pairing**: " + "; ".join(problems) + ".")
        else:
            checks.append(f"- `{folder.name}`: same settings as the whole-history run apart from the retrieval, "
                          f"and the same inputs and gold on every paired user; {origin(run.config)}.")
    lines += ["Pairing checks:", "", *checks, "", *table, ""]
    if not get_task(study.task).has_options:
        copies = gold_in_history(baseline, study.methods[0])
        lines += [f"Gold in the history: {len(copies)} of {baseline.users(study.methods[0])} users have their gold "
                  f"text, or a near copy (difflib ratio ≥ {NEAR_COPY} with case, spacing and @-mentions aside), "
                  "among the items the whole-history run kept"
                  + (f" (example ids {', '.join(copies)})" if copies else "") + ". A retriever that ranks that "
                  "item first lets the model copy the answer; items beyond the kept 6,000 characters are not "
                  "checked.", ""]
    if study.split == "dev":
        lines += dev_choice(study, baseline, runs, invalid)
    else:
        lines += test_reading(study, baseline, runs, invalid)
    return lines


def passing_score(study: Study, run: Run, baseline: Run) -> float | None:
    """The run's mean `study.choose_by` if it passes the dev rule against the whole history, else None: on the
    study's first method, every one of its metrics at least the whole history's, and fewer answer-step tokens."""
    paired = pairs(run, baseline, study.methods[0])

    def mean(side: int, metric: str) -> float:
        return statistics.fmean(p[side]["metrics"][metric] for p in paired)

    tokens = answer_token_pairs(run, baseline, paired)
    fewer = bool(tokens) and statistics.fmean(r for r, _ in tokens) < statistics.fmean(b for _, b in tokens)
    at_least = all(mean(0, metric) >= mean(1, metric) for metric in study.metrics)
    return mean(0, study.choose_by) if at_least and fewer else None


def rule_metrics(study: Study) -> str:
    """'accuracy and gold-option probability' (the study's metrics as the rule names them)."""
    return " and ".join(METRIC_WORDS.get(metric, metric) for metric in study.metrics)


def dev_choice(study: Study, baseline: Run, runs: list[Run], invalid: list[str]) -> list[str]:
    """The rule the study's script fixed before the dev runs (`passing_score`), applied once every folder is a
    valid pairing with every user of the whole-history run."""
    method = study.methods[0]
    users = baseline.users(method)
    rule = (f"**The rule** (fixed in `{study.script}` before the runs): a (retriever, k) becomes the default only "
            f"if, on all {users} users, its {LABELS.get(method, method)} {rule_metrics(study)} are each at least "
            "the whole history's and its answer steps read fewer prompt tokens; of several, the highest "
            f"{METRIC_WORDS.get(study.choose_by, study.choose_by)} (on a tie, the first in the table); otherwise "
            "`recent` with the whole kept history stays the default.")
    short = [run.folder.name for run in runs if len(pairs(run, baseline, method)) < users]
    if invalid:
        outcome = f"Not applied: {', '.join(invalid)} not a valid pairing (above)."
    elif short:
        outcome = (f"Not applied yet: {len(short)} folders have fewer than {users} paired users "
                   f"({', '.join(short)}); rerun `{study.script}`.")
    else:
        outcome = outcome_sentence([(score, run) for run in runs
                                    if (score := passing_score(study, run, baseline)) is not None])
    return [rule, "", outcome, ""]


def test_reading(study: Study, baseline: Run, runs: list[Run], invalid: list[str]) -> list[str]:
    """Whether the task's default retriever, chosen on dev, held on these test users: the dev rule applied to
    its folder once it has every user of the whole-history run (before, a partial reading, labelled as such)."""
    chosen = get_task(study.task).default_retrieval
    run = next((r for r in runs if r.retriever_and_k == chosen), None)
    if run is None:
        return []
    method = study.methods[0]
    name = f"{chosen[0]} k = {chosen[1]}"
    if run.folder.name in invalid:
        return [f"The dev choice ({name}) is not read: its folder is not a valid pairing (above).", ""]
    paired, users = pairs(run, baseline, method), baseline.users(method)
    held = "held" if passing_score(study, run, baseline) is not None else "did not hold"
    if len(paired) < users:
        return [f"The dev choice ({name}) under the dev rule, so far: it {held} on the first {len(paired)} of "
                f"{users} users.  Partial: what counts is the reading on all {users}.", ""]
    return [f"**The dev choice ({name}) {held} on all {users} test users** under the dev rule ({rule_metrics(study)} "
            "at least the whole history's, fewer answer-step tokens; its row above).", ""]


def outcome_sentence(passing: list[tuple[float, Run]]) -> str:
    if not passing:
        return "**Outcome: no (retriever, k) passes; `recent` with the whole kept history stays the default.**"
    _, best = max(passing, key=lambda pair: pair[0])  # max keeps the first of equals
    names = ", ".join(f"{name} k = {k}" for name, k in (r.retriever_and_k for _, r in passing))
    name, k = best.retriever_and_k
    return f"**Outcome: {len(passing)} pass ({names}); the default becomes {name} with k = {k}.**"


def markdown(results: Path) -> str:
    lines = ["# Retrieval before digestion: k items kept against the whole history (issue 21)", "",
             "Generated by `python experiments/report_retrieval.py`.  Each row pairs one retrieval folder's method "
             "with the same method of the whole-history run on the users both finished (n).  Differences are "
             "retrieved − whole history in points: the mean, its 95% paired bootstrap interval and the paired "
             "permutation p-value.  *Items kept*: history items per example after retrieval (before the "
             "`max_history_chars` cut).  *Kept whole*: users whose every item was kept, so both runs sent the same "
             "prompts; their replies mostly come from DSPy's answer cache and the profile store, so they are the same "
             "by construction and are no measure of noise.  Prompt tokens: means over the "
             "pairs where both runs computed every step (a DSPy cache or profile-store hit records no tokens), and "
             "of the answer step(s) alone (one per rotation in score mode) where neither was a cache hit.  "
             "*The control* (`recent` with k = 1000, run with `--no-cache --no-store` where a script has one) keeps "
             "every item, so it sends the whole-history run's prompts again, computed afresh: its differences are "
             "what a rerun alone moves (server slots are not bit-repeatable) plus any drift of the code since the "
             "whole-history run, the yardstick for the retrievers' rows.  The p-values are not corrected for the "
             "number of rows and metrics compared: read one near 0.05 with that in mind.", ""]
    for study in STUDIES:
        lines += study_section(study, results)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the run folders (default results/)")
    args = parser.parse_args(argv)
    text = markdown(args.results)
    write_text(args.results / REPORT, text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
