"""Report of the preference Table 1 runs in both answer modes, and of the rotation count.

Reads the run folders written by experiments/table1_preference.sh (and rotations_preference.sh),
restricts every comparison to the users all compared runs finished, and writes
experiments/results/table1-preference.md and table1-preference.png.

    python experiments/report_table1.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from guided_profile.evaluation import RECORDS, read_records, summarize  # noqa: E402
from guided_profile.metrics.stats import bootstrap_ci, paired_bootstrap, paired_permutation_pvalue  # noqa: E402
from guided_profile.report import origin, p_clause  # noqa: E402
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


def main() -> None:
    runs = {mode: load(RESULTS / f"table1-preference-{mode}-1.5b") for mode in MODES}
    common = set.intersection(*(users_done(runs[m], METHODS) for m in MODES))
    users = sorted(common, key=int) if all(u.isdigit() for u in common) else sorted(common)
    config = json.loads((RESULTS / "table1-preference-generate-1.5b" / "config.json").read_text())
    lines = [
        "# Preference prediction, Table 1 shape, both answer modes",
        "",
        f"Data: `{config['data']}` ({config['build_stats']['built']} users built by the paper's procedure), "
        f"split `test`, seed {config['seed']}; model {config['lm']['model']} "
        f"(sha256 {config['lm']['sha256'][:12]}...), "
        f"greedy. **n = {len(users)} test users** finished by every method in both modes"
        + (" (the target is 200; `experiments/table1_preference.sh` resumes)." if len(users) < 200 else ".")
        + f" Provenance: {origin(config)}.",
        "",
        "Commands: `experiments/table1_preference.sh` (runs both modes), then `python experiments/report_table1.py`.",
        "Accuracy in %, 95% bootstrap interval; costs are means per example (calls, prompt tokens, of which reused "
        "from llama.cpp's prompt cache, generated tokens). Tokens count only calls that reached the model: a step "
        "served by the profile store (store hits; e.g. score mode reuses the digestions and profiles the generate "
        "run wrote) or by DSPy's answer cache (identical earlier requests) costs none. "
        "Paper (gpt-3.5): DG w/ PC 47.6, PG 55.0, GPG 65.1.",
        "",
    ]
    header = ("| method | acc | 95% CI | n | correct | incorrect | abstain | unparseable | calls | store hits | "
              "DSPy cache hits | prompt tok | cached tok | gen tok |\n" + "|---" * 14 + "|")
    rows = {}
    for mode in MODES:
        lines += [f"## `--answer-mode {mode}`", "", header]
        for m in METHODS:
            rows[(mode, m)] = [runs[mode][(m, u)] for u in users]
            if users:
                lines.append(fmt_row(LABELS[m], row(rows[(mode, m)])))
        lines.append("")
    if users:
        lines += ["## Paired differences (same users; accuracy points, 95% bootstrap interval, permutation p)", "",
                  "| comparison | generate | score |", "|---|---|---|"]
        for a, b in (("gpg", "dg-pc"), ("pg", "dg-pc"), ("gpg", "pg"), ("dg-pc", "dg-no-pc")):
            lines.append(f"| {LABELS[a]} - {LABELS[b]} | " + " | ".join(paired(rows[(mode, a)], rows[(mode, b)])
                                                                     for mode in MODES) + " |")
        lines += ["", "| method | score - generate |", "|---|---|"]
        for m in METHODS:
            lines.append(f"| {LABELS[m]} | {paired(rows[('score', m)], rows[('generate', m)])} |")
        replies = {}
        for r in rows[("generate", "dg-pc")]:
            replies[r["metrics"]["parsed"]] = replies.get(r["metrics"]["parsed"], 0) + 1
        golds = {}
        for r in rows[("generate", "dg-pc")]:
            golds[r["gold"]] = golds.get(r["gold"], 0) + 1
        parsed = dict(sorted(replies.items(), key=str))
        lines += ["", f"Position bias in generate mode, DG w/ PC: parsed answers {parsed} against gold letters "
                  f"{dict(sorted(golds.items()))}.", ""]
    lines += rotation_section(runs["score"], runs["generate"], users)
    (RESULTS / "table1-preference.md").write_text("\n".join(lines) + "\n")
    if users:
        chart(rows, users)
    print("\n".join(lines))


def rotation_section(score_records: dict, generate_records: dict, users: list[str]) -> list[str]:
    """GPG accuracy with 1, 2, 4 rotations. Costs: digestion and profile from the generate run's GPG
    steps (the score runs take them from the profile store), then the first r scoring calls of the
    4-rotation run (rotation k's prompt does not depend on the rotation count, so it costs the same)."""
    runs = {r: load(RESULTS / f"rotations-preference-gpg-r{r}-1.5b") for r in (1, 2)}
    runs[4] = {k: v for k, v in score_records.items() if k[0] == "gpg"}
    done = [u for u in users if all(("gpg", u) in runs[r] for r in runs)]
    if not done:
        return ["## Rotations", "", "Not run yet: `experiments/rotations_preference.sh`.", ""]
    lines = ["## Rotations of the option order (GPG, score mode)", "",
             f"n = {len(done)} users; command `experiments/rotations_preference.sh`. Cost per example: digestion and "
             "profile as measured in the generate run, plus one scoring call per rotation as measured in the "
             "4-rotation run; prompt tokens computed = prompt tokens not reused from llama.cpp's prompt cache.", "",
             "| rotations | acc | 95% CI | calls | prompt tok computed | gen tok | vs 4 rotations |",
             "|---|---|---|---|---|---|---|"]
    full = [runs[4][("gpg", u)] for u in done]
    for r in (1, 2, 4):
        recs = [runs[r][("gpg", u)] for u in done]
        acc = [x["metrics"]["accuracy"] for x in recs]
        lo, hi = bootstrap_ci(acc)
        steps = [generate_records[("gpg", u)]["steps"][:2] + x["steps"][-4:][:r]
                 for u, x in zip(done, full, strict=True)]
        computed = sum(s["prompt_tokens"] - s["cached_prompt_tokens"] for st in steps for s in st) / len(done)
        gen = sum(s["completion_tokens"] for st in steps for s in st) / len(done)
        vs = "-" if r == 4 else paired(recs, full)
        lines.append(f"| {r} | {100 * sum(acc) / len(acc):.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | {2 + r} | "
                     f"{computed:.0f} | {gen:.0f} | {vs} |")
    return lines + [""]


def chart(rows: dict, users: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for i, mode in enumerate(MODES):
        stats = [row(rows[(mode, m)]) for m in METHODS]
        xs = [j + (i - 0.5) * width for j in range(len(METHODS))]
        acc = [100 * s["accuracy"] for s in stats]
        err = [[100 * (s["accuracy"] - s["ci95"][0]) for s in stats],
               [100 * (s["ci95"][1] - s["accuracy"]) for s in stats]]
        ax.bar(xs, acc, width, yerr=err, capsize=3, label=f"--answer-mode {mode}")
    ax.axhline(25, color="grey", linestyle=":", label="chance (4 options)")
    ax.set_xticks(range(len(METHODS)), [LABELS[m] for m in METHODS])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Preference prediction, Qwen2.5-Coder-1.5B, n = {len(users)} test users")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "table1-preference.png", dpi=120)


if __name__ == "__main__":
    main()
