"""Report of the preference Table 1 runs in both answer modes, and of the rotation count.

Reads the run folders written by experiments/table1_preference.sh (titles-only history on test, and
the answer-mode choice on dev), the earlier categories-shown runs (and rotations_preference.sh),
restricts every comparison to the users all compared runs finished, and writes
experiments/results/table1-preference.md and table1-preference.png.

    python experiments/report_table1.py
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from guided_profile.evaluation import RECORDS, answer_step_count, read_records, summarize  # noqa: E402
from guided_profile.metrics.stats import bootstrap_ci, paired_bootstrap, paired_permutation_pvalue  # noqa: E402
from guided_profile.report import by_example_id, origin, p_clause  # noqa: E402
from guided_profile.tasks import get_task  # noqa: E402

RESULTS = Path(__file__).parent / "results"
METHODS = ["dg-no-pc", "dg-pc", "pg", "gpg"]
LABELS = {"dg-no-pc": "DG w/o PC", "dg-pc": "DG w/ PC", "pg": "PG", "gpg": "GPG (PC + PP)"}
MODES = ["generate", "score"]
TASK = get_task("preference")


def load(folder: Path) -> dict[tuple[str, str], dict]:
    return {(r["method"], r["example_id"]): r for r in read_records(folder / RECORDS) if r.get("error") is None}


def users_done(records: dict, methods: list[str]) -> set[str]:
    ids = {e for _, e in records}
    return {e for e in ids if all((m, e) in records for m in methods)}


def row(records: list[dict]) -> dict:
    """A method's table row: the run's own summary (accuracy, outcome counts, interval, mean cost)."""
    return summarize(TASK, records)


def fmt_row(name: str, r: dict) -> str:
    per = r["per_example"]
    return (f"| {name} | {100 * r['accuracy']:.1f} | [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] | "
            f"{r['n']} | {r['correct']} | {r['incorrect']} | {r['abstain']} | {r['unparseable']} | "
            f"{per['calls']:.1f} | {per['store_hits']:.1f} | {per['cache_hits']:.1f} | "
            f"{per['prompt_tokens']:.0f} | {per['cached_prompt_tokens']:.0f} | {per['completion_tokens']:.0f} |")


def paired(a: list[dict], b: list[dict]) -> str:
    x = [r["metrics"]["accuracy"] for r in a]
    y = [r["metrics"]["accuracy"] for r in b]
    mean, lo, hi = paired_bootstrap(x, y)
    p = paired_permutation_pvalue(x, y)
    return f"{100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], {p_clause(p)}"


FOLDERS = {"titles": "table1-preference-titles-{mode}-1.5b", "dev": "answer-mode-dev-preference-{mode}-1.5b",
           "categories": "table1-preference-{mode}-1.5b"}
HEADER = ("| method | acc | 95% CI | n | correct | incorrect | abstain | unparseable | calls | store hits | "
          "DSPy cache hits | prompt tok | cached tok | gen tok |\n" + "|---" * 14 + "|")


def finished(variant: str) -> tuple[dict[str, dict], list[str]]:
    """The records of one variant's runs in both modes, and the users every method finished in both."""
    runs = {mode: load(RESULTS / FOLDERS[variant].format(mode=mode)) for mode in MODES}
    return runs, by_example_id(set.intersection(*(users_done(runs[m], METHODS) for m in MODES)))


def finished_per_mode(variant: str) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """The records of one variant's runs, and per mode the users every method finished in that mode: the test
    runs grow the chosen mode (score) first, so each mode's table counts its own users."""
    runs = {mode: load(RESULTS / FOLDERS[variant].format(mode=mode)) for mode in MODES}
    return runs, {mode: by_example_id(users_done(runs[mode], METHODS)) for mode in MODES}


def main() -> None:
    runs, users = finished_per_mode("titles")
    rows = {(mode, m): [runs[mode][(m, u)] for u in users[mode]] for mode in MODES for m in METHODS}
    lines = intro(users) + baseline_section(rows, users["score"])
    for mode in MODES:
        lines += [f"## `--answer-mode {mode}` ({len(users[mode])} test users)", "", HEADER,
                  *(fmt_row(LABELS[m], row(rows[(mode, m)])) for m in METHODS if users[mode]), ""]
    if users["score"]:
        lines += difference_section(runs, users) + position_bias(rows)
    lines += table3_section()
    if users["score"]:
        gpg = {k: v for k, v in runs["score"].items() if k[0] == "gpg"}
        lines += rotation_section("rotations-preference-titles-gpg-r{r}-1.5b", "titles only", gpg, users["score"])
    lines += dev_section() + categories_section(rows, users)
    (RESULTS / "table1-preference.md").write_text("\n".join(lines) + "\n")
    if users["score"]:
        chart(rows, users)
    print("\n".join(lines))


def intro(users: dict[str, list[str]]) -> list[str]:
    folder = RESULTS / FOLDERS["titles"].format(mode="score")
    if not (folder / "config.json").exists():
        return ["# Preference prediction, Table 1 shape, both answer modes", "",
                "The titles-only runs have not started: `experiments/table1_preference.sh`.", ""]
    config = json.loads((folder / "config.json").read_text())
    return [
        "# Preference prediction, Table 1 shape, both answer modes",
        "",
        f"Data: `{config['data']}` ({config['build_stats']['built']} users built by the paper's procedure; the "
        "history lists product titles only, as in the paper: `datasets/README.md`), split `test`, seed "
        f"{config['seed']}; model {config['lm']['model']} (sha256 {config['lm']['sha256'][:12]}...), greedy. "
        f"**n = {len(users['score'])} test users in score mode** (the mode chosen on dev, below) and "
        f"**{len(users['generate'])} in generate mode**, each finished by every method"
        + (" (the target is 200 in both; `experiments/table1_preference.sh` resumes, score mode first)."
           if min(map(len, users.values())) < 200 else ".")
        + f" Provenance: {origin(config)}.",
        "",
        "Commands: `experiments/table1_preference.sh` (both modes, test and dev), then "
        "`python experiments/report_table1.py`. "
        "Accuracy in %, 95% bootstrap interval; costs are means per example (calls, prompt tokens, of which reused "
        "from llama.cpp's prompt cache, generated tokens). Tokens count only calls that reached the model: a step "
        "served by the profile store (store hits: the mode run second on a user reuses the digestions and profiles "
        "the first wrote; generate mode paid for them on its first 22 test users, score mode on the rest) or by "
        "DSPy's answer cache (identical earlier requests) costs none. "
        "Paper (gpt-3.5): DG w/o PC 31.65, DG w/ PC 47.55, PG 54.98, GPG (PC+PP) 65.08. The generate tables "
        "carry the paper's Table 4 split (correct / incorrect / abstain).",
        "",
    ]


def baseline_section(rows: dict, users: list[str]) -> list[str]:
    """What answering without reading anything scores on the score-mode users: each constant letter, and a
    seeded random letter (the gold positions are balanced, so the constants sit at 25% exactly)."""
    if not users:
        return []
    golds = [r["gold"] for r in rows[("score", "gpg")]]
    lines = ["## Baselines (no model)", "", "| answer | acc | 95% CI | n |", "|---|---|---|---|"]
    guesses = {f"always {letter}": [letter] * len(golds) for letter in "ABCD"}
    guesses["random letter (seed 0)"] = [random.Random(f"0:{u}").choice("ABCD") for u in users]
    for name, answers in guesses.items():
        hits = [float(a == g) for a, g in zip(answers, golds, strict=True)]
        lo, hi = bootstrap_ci(hits)
        lines.append(f"| {name} | {100 * sum(hits) / len(hits):.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | {len(hits)} |")
    return lines + [""]


def difference_section(runs: dict[str, dict], users: dict[str, list[str]]) -> list[str]:
    """Methods against each other within a mode (its own users), and the modes against each other on the users
    both finished."""
    lines = ["## Paired differences (same users; accuracy points, 95% bootstrap interval, permutation p)", "",
             "| comparison | " + " | ".join(f"{mode} (n = {len(users[mode])})" for mode in MODES) + " |",
             "|---|---|---|"]
    for a, b in (("gpg", "dg-pc"), ("pg", "dg-pc"), ("gpg", "pg"), ("dg-pc", "dg-no-pc")):
        cells = [paired([runs[mode][(a, u)] for u in users[mode]], [runs[mode][(b, u)] for u in users[mode]])
                 if users[mode] else "-" for mode in MODES]
        lines.append(f"| {LABELS[a]} - {LABELS[b]} | " + " | ".join(cells) + " |")
    both = [u for u in users["score"] if u in set(users["generate"])]
    lines += ["", f"| method | score - generate (n = {len(both)}) |", "|---|---|"]
    return lines + [f"| {LABELS[m]} | " + (paired([runs['score'][(m, u)] for u in both],
                                                  [runs['generate'][(m, u)] for u in both]) if both else "-") + " |"
                    for m in METHODS] + [""]


def position_bias(rows: dict) -> list[str]:
    if not rows[("generate", "dg-pc")]:
        return []
    replies = Counter(r["metrics"]["parsed"] for r in rows[("generate", "dg-pc")])
    golds = Counter(r["gold"] for r in rows[("generate", "dg-pc")])
    return ["", f"Position bias in generate mode, DG w/ PC: parsed answers {dict(sorted(replies.items(), key=str))} "
            f"against gold letters {dict(sorted(golds.items()))}.", ""]


def dev_section() -> list[str]:
    """The answer mode is chosen here, on dev users, before test is read."""
    runs, users = finished("dev")
    lines = ["## Choosing the answer mode on dev", ""]
    if not users:
        return lines + ["Not run yet: `experiments/table1_preference.sh` grows the dev runs with the test runs.", ""]
    lines += [f"The same four methods on the first **{len(users)} dev users**, both modes (the default `auto` = "
              "`score` for choice tasks is justified by these rows, not by the test rows above).", "",
              "| method | generate | score | score - generate |", "|---|---|---|---|"]
    for m in METHODS:
        recs = {mode: [runs[mode][(m, u)] for u in users] for mode in MODES}
        acc = {mode: 100 * row(recs[mode])["accuracy"] for mode in MODES}
        lines.append(f"| {LABELS[m]} | {acc['generate']:.1f} | {acc['score']:.1f} | "
                     f"{paired(recs['score'], recs['generate'])} |")
    return (lines + ["", *length_bias([runs["score"][("dg-no-pc", u)] for u in users])] + layout_section(runs["score"])
            + profile_step_section(runs["score"]))


def length_bias(records: list[dict]) -> list[str]:
    """Why DG w/o PC can score below chance: with nothing to read, which option does scoring favour?"""
    def longest(record: dict) -> int:
        return max(range(len(record["inputs"]["options"])), key=lambda i: len(record["inputs"]["options"][i]))

    picked = sum(r["metrics"]["parsed"] == "ABCD"[longest(r)] for r in records)
    gold = sum(r["gold"] == "ABCD"[longest(r)] for r in records)
    return [f"DG w/o PC in score mode picks the option with the longest title for {picked} of {len(records)} dev "
            f"users; the gold is the longest option for {gold} of them.", ""]


LAYOUT_FOLDER = "prompt-layout-dev-preference-options-last-score-1.5b"


def layout_section(default: dict) -> list[str]:
    """`--prompt-layout options-last` against the default layout on the same dev users (score mode): may it
    become the default?  Prompt tokens computed per example count only the answer steps (profiles came from
    the store in both runs)."""
    lines = ["## Prompt layout on dev (`experiments/prompt_layout_dev.sh`)", ""]
    if not (RESULTS / LAYOUT_FOLDER / RECORDS).exists():
        return lines + ["Not run yet.", ""]
    layout = load(RESULTS / LAYOUT_FOLDER)
    configs = {name: json.loads((RESULTS / folder / "config.json").read_text())
               for name, folder in (("default", FOLDERS["dev"].format(mode="score")), ("layout", LAYOUT_FOLDER))}
    users = by_example_id(users_done(layout, METHODS) & users_done(default, METHODS))
    lines += [f"Score mode, the first **{len(users)} dev users**: `options-last` (the answer instruction before the "
              "options) against the default `instruction-last`, same users.", "",
              "| method | instruction-last | options-last | difference | same answer | computed prompt tok, answer "
              "step: instruction-last | options-last |", "|---|---|---|---|---|---|---|"]
    for m in METHODS:
        old, new = [default[(m, u)] for u in users], [layout[(m, u)] for u in users]
        same = sum(a["reply"] == b["reply"] for a, b in zip(old, new, strict=True))
        lines.append(f"| {LABELS[m]} | {100 * row(old)['accuracy']:.1f} | {100 * row(new)['accuracy']:.1f} | "
                     f"{paired(new, old)} | {same} of {len(users)} | {answer_tokens(old, configs['default'])} | "
                     f"{answer_tokens(new, configs['layout'])} |")
    return lines + [""]


PROFILE_STEP_FOLDER = "profile-step-dev-preference-continued-score-1.5b"


def profile_step_section(default: dict) -> list[str]:
    """`--profile-step continued` against the default on the same dev users (GPG, score mode): may it become
    the default?  Accuracy only: the continued run took its digestions from the profile store, so its profile
    steps also computed the digestion's turn, which a run that has just generated it reuses; the benchmark
    measures that saving."""
    lines = ["## Profile step on dev (`experiments/profile_step_dev.sh`)", ""]
    if not (RESULTS / PROFILE_STEP_FOLDER / RECORDS).exists():
        return lines + ["Not run yet.", ""]
    continued = load(RESULTS / PROFILE_STEP_FOLDER)
    users = by_example_id(users_done(continued, ["gpg"]) & users_done(default, METHODS))
    old, new = [default[("gpg", u)] for u in users], [continued[("gpg", u)] for u in users]
    same = sum(a["reply"] == b["reply"] for a, b in zip(old, new, strict=True))
    return lines + [
        f"GPG in score mode, the first **{len(users)} dev users**: the profile step `continued` (the digestion's next "
        "turn) against the default `separate`, same users and digestions (from the profile store). Tokens are not "
        "compared here: with a stored digestion the continued prompt computes the digestion's turn too, which a "
        "run that has just generated it reuses (`guided-profile bench`, `profile-continued`, measures that).", "",
        "| profile step | acc | difference | same answer |", "|---|---|---|---|",
        f"| separate | {100 * row(old)['accuracy']:.1f} | | |",
        f"| continued | {100 * row(new)['accuracy']:.1f} | {paired(new, old)} | {same} of {len(users)} |", ""]


def answer_tokens(records: list[dict], config: dict) -> str:
    """Mean prompt tokens the answer step computed (not reused from llama.cpp's cache), over the records whose
    answer was no DSPy cache hit (a hit records no tokens)."""
    steps = [r["steps"][-answer_step_count(config, r):] for r in records]
    paid = [st for st in steps if not any(s.get("cache_hits") for s in st)]
    if not paid:
        return "-"
    return f"{sum(s['prompt_tokens'] - s['cached_prompt_tokens'] for st in paid for s in st) / len(paid):.0f}"


def categories_section(rows: dict, users: dict[str, list[str]]) -> list[str]:
    """The earlier runs, whose history printed each product's category: a labelled variant, compared with
    the titles-only runs on the users both finished, per mode (the gold's position differs between the two
    builds)."""
    runs, old_users = finished("categories")
    both = {mode: [u for u in users[mode] if u in set(old_users)] for mode in MODES}
    lines = ["## Variant: history with categories shown (`show_categories=true`, the runs before 2026-11-26)", "",
             "Folders `" + "`, `".join(FOLDERS["categories"].format(mode=mode) for mode in MODES) + "`"
             f" ({len(old_users)} test users; option order and gold positions of the older build). Those histories "
             "print the held-out product's category while the distractors' categories are never shown, and GPG's "
             "guidance mostly copied the labels back. Titles-only minus categories-shown, per method, on the "
             "users both finished in that mode:", "",
             "| method | " + " | ".join(f"{mode}: titles | categories | difference (n = {len(both[mode])})"
                                       for mode in MODES) + " |", "|---" * 7 + "|"]
    for m in METHODS:
        cells = []
        for mode in MODES:
            index = {u: i for i, u in enumerate(users[mode])}
            new = [rows[(mode, m)][index[u]] for u in both[mode]]
            old = [runs[mode][(m, u)] for u in both[mode]]
            cells += [f"{100 * row(new)['accuracy']:.1f}", f"{100 * row(old)['accuracy']:.1f}", paired(new, old)] \
                if new else ["-", "-", "-"]
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    score = {k: v for k, v in runs["score"].items() if k[0] == "gpg"}
    return lines + ["", *rotation_section("rotations-preference-gpg-r{r}-1.5b", "categories shown", score, old_users,
                                          pipeline=runs["generate"])]


def rotation_section(folders: str, label: str, four: dict, users: list[str],
                     pipeline: dict | None = None) -> list[str]:
    """GPG accuracy with 1, 2, 4 rotations on the users every count finished.  Costs: the first r scoring
    calls of the 4-rotation run (rotation k's prompt does not depend on the rotation count, so it costs the
    same), plus, given `pipeline` (records whose first two steps are GPG's digestion and profile as computed),
    those two steps."""
    runs = {r: load(RESULTS / folders.format(r=r)) for r in (1, 2)} | {4: four}
    done = [u for u in users if all(("gpg", u) in runs[r] for r in runs)]
    title = f"### Rotations of the option order (GPG, score mode, {label})"
    if not done:
        return [title, "", "Not run yet: `experiments/rotations_preference.sh`.", ""]
    counted = ("digestion and profile as measured in the generate run, plus one scoring call per rotation"
               if pipeline else "the scoring calls only (one per rotation; digestion and profile are the same "
               "for every count)")
    lines = [title, "", f"n = {len(done)} users; command `experiments/rotations_preference.sh`. Cost per example: "
             f"{counted} as measured in the 4-rotation run; prompt tokens computed = prompt tokens not reused from "
             "llama.cpp's prompt cache.", "",
             "| rotations | acc | 95% CI | calls | prompt tok computed | gen tok | vs 4 rotations |",
             "|---|---|---|---|---|---|---|"]
    full = [four[("gpg", u)] for u in done]
    for r in (1, 2, 4):
        recs = [runs[r][("gpg", u)] for u in done]
        acc = [x["metrics"]["accuracy"] for x in recs]
        lo, hi = bootstrap_ci(acc)
        steps = [(pipeline[("gpg", u)]["steps"][:2] if pipeline else []) + x["steps"][-4:][:r]
                 for u, x in zip(done, full, strict=True)]
        computed = sum(s["prompt_tokens"] - s["cached_prompt_tokens"] for st in steps for s in st) / len(done)
        gen = sum(s["completion_tokens"] for st in steps for s in st) / len(done)
        vs = "-" if r == 4 else paired(recs, full)
        lines.append(f"| {r} | {100 * sum(acc) / len(acc):.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | "
                     f"{(2 if pipeline else 0) + r} | {computed:.0f} | {gen:.0f} | {vs} |")
    return lines + [""]


TABLE3_FOLDER = "table3-preference-titles-score-1.5b"
TABLE3 = {"dg-no-pc": "DG w/o PC", "dg-pc": "DG w/ PC", "pg": "PG (PC + P)", "gpg:g": "GPG: G",
          "gpg:pp": "GPG: PP", "gpg:g+pp": "GPG: G + PP", "gpg:pc+g": "GPG: PC + G", "gpg:pc+pp": "GPG: PC + PP",
          "gpg:pc+g+pp": "GPG: PC + G + PP"}


def table3_section() -> list[str]:
    """The ablation grid (the paper's Table 3 shape): which of history (PC), guidance answer (G) and profile
    (PP) GPG's final step reads, in score mode on the users every row finished, each row paired against
    GPG (PC + PP), the Table 1 row, and against DG w/ PC."""
    folder = RESULTS / TABLE3_FOLDER
    records = load(folder) if (folder / RECORDS).exists() else {}
    users = by_example_id(users_done(records, list(TABLE3)))
    title = "## Ablation grid (Table 3 shape), score mode, titles only"
    if not users:
        return [title, "", "Not run yet: `experiments/table3_preference.sh`.", ""]
    config = json.loads((folder / "config.json").read_text())
    rows = {m: [records[(m, u)] for u in users] for m in TABLE3}
    lines = [title, "", f"`{TABLE3_FOLDER}/`, the first **{len(users)} test users** every row finished (the Table 1 "
             f"users; `experiments/table3_preference.sh`); {origin(config)}. Digestions and profiles come from the "
             "profile store, so each row differs from the others only in what its final step reads.", "",
             "| final step reads | acc | 95% CI | vs GPG (PC + PP) | vs DG w/ PC |", "|---|---|---|---|---|"]
    for m, name in TABLE3.items():
        r = row(rows[m])
        lines.append(f"| {name} | {100 * r['accuracy']:.1f} | [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] | "
                     f"{'-' if m == 'gpg:pc+pp' else paired(rows[m], rows['gpg:pc+pp'])} | "
                     f"{'-' if m == 'dg-pc' else paired(rows[m], rows['dg-pc'])} |")
    return lines + [""]


def chart(rows: dict, users: dict[str, list[str]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for i, mode in enumerate(MODES):
        if not users[mode]:
            continue
        stats = [row(rows[(mode, m)]) for m in METHODS]
        xs = [j + (i - 0.5) * width for j in range(len(METHODS))]
        acc = [100 * s["accuracy"] for s in stats]
        err = [[100 * (s["accuracy"] - s["ci95"][0]) for s in stats],
               [100 * (s["ci95"][1] - s["accuracy"]) for s in stats]]
        ax.bar(xs, acc, width, yerr=err, capsize=3, label=f"--answer-mode {mode} (n = {len(users[mode])})")
    ax.axhline(25, color="grey", linestyle=":", label="chance (4 options)")
    ax.set_xticks(range(len(METHODS)), [LABELS[m] for m in METHODS])
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Preference prediction (titles only), Qwen2.5-Coder-1.5B, test users")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "table1-preference.png", dpi=120)


if __name__ == "__main__":
    main()
