"""Which smooth objective ranks preference programs the way accuracy does?  Dev users only (issue 18).

The preference search maximised the gold option's probability (score mode's rotation-averaged letter
probabilities): smooth, so two programs separate on fewer users than their 0/1 accuracies need.  On its confirm
users every finalist's mean probability lay within 0.4 points of 27% while their accuracies spanned 45% to 64%.
This script asks, on the committed score-mode dev runs (the first 60 dev users; every folder `*dev*preference*`
in score mode, each method a configuration: methods, prompt layouts, profile steps, retrievers), how well each
candidate objective agrees with accuracy across configurations:

- `gold_probability`: the gold option's probability (the search's objective);
- `gold_margin`: the gold option's probability minus the best other option's (> 0 exactly when the answer is right);
- `log_probability`: the log of the gold option's probability.

Per objective: Kendall's tau between the configurations' mean objective and mean accuracy, and, over the pairs of
configurations whose accuracies differ, how often the objective orders the pair as accuracy does.  The test
split is not read.

    python experiments/objective_check.py     # writes experiments/results/objective-check-dev-preference.md
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from guided_profile.evaluation import RECORDS, read_records  # noqa: E402
from guided_profile.files import write_text  # noqa: E402
from guided_profile.report import markdown_table, origin  # noqa: E402
from guided_profile.tasks.base import gold_margin, gold_probability  # noqa: E402

RESULTS = Path(__file__).parent / "results"
REPORT = RESULTS / "objective-check-dev-preference.md"
OBJECTIVES = ("gold_probability", "gold_margin", "log_probability")
RESAMPLES = 1000


def objectives(probs: list[float], gold: str) -> dict[str, float]:
    """Each candidate objective of one answer, from its letter probabilities (letter order): the task's own
    two, and the log of the gold option's probability."""
    return {"gold_probability": gold_probability(probs, gold), "gold_margin": gold_margin(probs, gold),
            "log_probability": math.log(max(gold_probability(probs, gold), 1e-12))}


def config_means(found: dict[str, dict[str, dict[str, float]]], users: list[str],
                 names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Each configuration's mean accuracy and objectives over `users` (repeats count: a resample's draw)."""
    return {name: {key: statistics.fmean(found[name][u][key] for u in users) for key in ("accuracy", *OBJECTIVES)}
            for name in (names if names is not None else found)}


def configurations(results: Path) -> tuple[dict[str, dict[str, dict[str, float]]], dict]:
    """{folder:method -> {example id -> accuracy and each objective}} over the score-mode dev runs of one data
    build, and the first folder's config (for provenance)."""
    found, first = {}, None
    for folder in sorted(p for p in results.glob("*dev*preference*") if (p / "config.json").is_file()):
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("split") != "dev" or config.get("answer_mode") != "score":
            continue
        first = first or config
        if config.get("data_sha256") != first.get("data_sha256"):
            continue  # another build of the data: other users' questions
        for record in read_records(folder / RECORDS):
            if record.get("error") is None and record.get("choice_probs"):
                found.setdefault(f"{folder.name}:{record['method']}", {})[record["example_id"]] = {
                    "accuracy": record["metrics"]["accuracy"], **objectives(record["choice_probs"], record["gold"])}
    return found, first or {}


def agreement(means: dict[str, dict[str, float]], objective: str) -> tuple[float, int, int]:
    """(Kendall's tau of the objective's means against accuracy's, pairs ordered as accuracy orders them, pairs
    whose accuracies differ)."""
    names = sorted(means)
    tau = kendalltau([means[n][objective] for n in names], [means[n]["accuracy"] for n in names]).statistic
    pairs = [(a, b) for a, b in itertools.combinations(names, 2) if means[a]["accuracy"] != means[b]["accuracy"]]
    same = sum((means[a][objective] - means[b][objective]) * (means[a]["accuracy"] - means[b]["accuracy"]) > 0
               for a, b in pairs)
    return tau, same, len(pairs)


def resampled(found: dict[str, dict[str, dict[str, float]]], users: list[str], names: list[str],
              rounds: int = RESAMPLES, seed: int = 0) -> dict[str, list[float]]:
    """Each objective's tau with accuracy over `names`, recomputed on `rounds` resamples of the users (with
    replacement, seeded): how much of a difference between objectives the users' draw alone moves."""
    rng = random.Random(seed)
    taus: dict[str, list[float]] = {objective: [] for objective in OBJECTIVES}
    for _ in range(rounds):
        means = config_means(found, [rng.choice(users) for _ in users], names)
        for objective in OBJECTIVES:
            taus[objective].append(agreement(means, objective)[0])
    return taus


def markdown(results: Path) -> str:
    found, config = configurations(results)
    users = sorted(set.intersection(*(set(scores) for scores in found.values()))) if found else []
    means = config_means(found, users)
    rows = [[name, f"{m['accuracy']:.1%}", *(f"{m[o]:+.4f}" for o in OBJECTIVES)]
            for name, m in sorted(means.items(), key=lambda item: -item[1]["accuracy"])]
    reading = {name: m for name, m in means.items() if not name.endswith(":dg-no-pc")}
    summary = []
    for objective in OBJECTIVES:
        cells = []
        for chosen in (means, reading):
            tau, same, pairs = agreement(chosen, objective)
            cells += [f"{tau:+.2f}", f"{same} of {pairs}"]
        summary.append([objective, *cells])
    taus = resampled(found, users, sorted(reading))
    diffs = [m - g for m, g in zip(taus["gold_margin"], taus["gold_probability"], strict=True)
             if not (math.isnan(m) or math.isnan(g))]  # a resample where a tau is undefined (all tied) is left out
    low, high = np.quantile(diffs, [0.025, 0.975])
    share = sum(d > 0 for d in diffs) / len(diffs)
    return "\n".join([
        "# Which smooth objective ranks preference programs as accuracy does? (dev users)", "",
        "Generated by `python experiments/objective_check.py` from the committed score-mode dev runs; the test "
        f"split is not read. {len(means)} configurations on the same {len(users)} dev users; data "
        f"`{config.get('data')}`, seed {config.get('seed')}, model {(config.get('lm') or {}).get('model')}; "
        f"{origin(config)} (of the first folder).", "",
        markdown_table(["objective", "Kendall's tau with accuracy, all", "pairs ordered as accuracy orders them, all",
                        f"tau, the {len(reading)} that read the history", "pairs, those"], summary), "",
        "Tau is over the configurations' means; a pair counts when its two accuracies differ. *That read the "
        "history*: DG w/o PC left out, which every objective puts last: the programs a search compares all read "
        "the history.", "",
        f"**How sure:** over {RESAMPLES} resamples of the {len(users)} users (with replacement, seed 0), the "
        f"margin's tau exceeds the probability's in {share:.0%} of them; the difference's 95% interval is "
        f"[{low:+.2f}, {high:+.2f}]. Both are measured against accuracy on the same users, and the margin is above 0 "
        "exactly where an answer counts as right, so part of its agreement is accuracy's own noise. Suggestive, not "
        "conclusive.", "",
        "Per configuration (folder:method), means over those users:", "",
        markdown_table(["configuration", "accuracy", *OBJECTIVES], rows), "",
        f"Accuracy on {len(users)} users is itself noisy (one user is {1 / max(1, len(users)):.1%}), so this "
        "measures agreement, not which "
        "objective is right; ties in accuracy are left out of the pair count.", ""])


def main() -> None:
    text = markdown(RESULTS)
    write_text(REPORT, text)
    print(text)


if __name__ == "__main__":
    main()
