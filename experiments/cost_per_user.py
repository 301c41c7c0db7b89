"""What one user costs, in tokens and in time, and what 10,000 users would cost (issue 20).

Tokens per user are measured: every step of the method's whole pipeline in committed records
(prompt tokens the model computed, prompt tokens reused from the KV cache, generated tokens).  A
run whose digestion and profile came from the profile store (a score-mode run after the generate
run on the same users) takes those steps from the sibling run that computed them.  Time is those
tokens priced at measured rates: this machine's (the benchmark's probe, one sequence at a time, so
an upper bound on a run with several slots), or any server's, given as prompt and generated
tokens/s (`--server-rates P,G`: from the server's own benchmark, or a short `run` against it, whose
records hold tokens and seconds; `bench` measures in-process models only).

    python experiments/cost_per_user.py            # writes experiments/results/cost-per-user.md
    python experiments/cost_per_user.py --server-rates 20000,2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from token_caps import step_kinds  # noqa: E402

from guided_profile.evaluation import RECORDS, answer_step_count, read_records  # noqa: E402

RESULTS = Path(__file__).parent / "results"
USERS = 10_000
# (task, method, answer mode): the run whose answers count, and the siblings that may hold its profiles.
PIPELINES = [
    ("preference", "gpg", "score", "answer-mode-dev-preference-score-1.5b",
     ["answer-mode-dev-preference-generate-1.5b"]),
    ("preference", "dg-pc", "score", "answer-mode-dev-preference-score-1.5b", []),
    ("preference", "gpg", "generate", "answer-mode-dev-preference-generate-1.5b",
     ["answer-mode-dev-preference-score-1.5b"]),
    ("paraphrase", "gpg", "generate", "paraphrase-four-methods-1.5b", []),
    ("paraphrase", "dg-pc", "generate", "paraphrase-four-methods-1.5b", []),
    ("dialogue", "gpg", "generate", "dialogue-four-methods-1.5b", []),
]


def _records(folder: str, method: str) -> dict[str, dict]:
    """One method's finished records in a run folder, by example id (read as every report reads them)."""
    return {r["example_id"]: r for r in read_records(RESULTS / folder / RECORDS)
            if r["method"] == method and not r.get("error")}


def _split(record: dict, config: dict) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(profile-building steps, answer steps) of a record whose steps the model computed, each with its kind
    (digest, profile; answer 1.. for each call of the answer step)."""
    kinds = step_kinds(record["method"], len(record["steps"]), answer_step_count(config, record))
    labelled = list(zip(kinds, record["steps"], strict=True))
    answers = [(f"answer {i}", step) for i, (_, step) in enumerate((x for x in labelled if x[0] == "answer"), 1)]
    return [x for x in labelled if x[0] != "answer"], answers


def user_tokens(folder: str, method: str, siblings: list[str]) -> list[dict[str, int]]:
    """Computed prompt, cached prompt and generated tokens of each user's whole pipeline."""
    config = json.loads((RESULTS / folder / "config.json").read_text())
    others = [(_records(s, method), json.loads((RESULTS / s / "config.json").read_text())) for s in siblings]
    users = []
    for example_id, record in _records(folder, method).items():
        building, answering = _split(record, config)
        if record["usage"].get("store_hits"):
            donors = [(o[example_id], c) for o, c in others
                      if example_id in o and not o[example_id]["usage"].get("store_hits")]
            if not donors:
                continue  # its profile was computed nowhere in the committed records
            building = _split(*donors[0])[0]
        if any(s.get("cache_hits") for _, s in building + answering):
            continue  # a DSPy cache hit computed nothing: it would understate the cost
        steps = building + answering
        users.append({"computed": sum(s["prompt_tokens"] - s["cached_prompt_tokens"] for _, s in steps),
                      "cached": sum(s["cached_prompt_tokens"] for _, s in steps),
                      "generated": sum(s["completion_tokens"] for _, s in steps),
                      "first_cached": steps[0][1]["cached_prompt_tokens"],
                      "steps": [(kind, s["prompt_tokens"] - s["cached_prompt_tokens"], s["completion_tokens"])
                                for kind, s in steps]})
    return alone(users)


def alone(users: list[dict[str, int]]) -> list[dict[str, int]]:
    """The tokens of each user's pipeline run by itself.

    A run of several methods computes a user's history once, in the first method, and the others reuse
    it from the KV cache, so a later method's first step looks cheap.  Run alone, its first step reuses
    only what every request shares (the system preamble: the least any user's first step reused); the
    rest of that step's reused prompt is counted as computed.
    """
    shared = min((u["first_cached"] for u in users), default=0)
    return [{"computed": u["computed"] + u["first_cached"] - shared, "cached": u["cached"] - u["first_cached"] + shared,
             "generated": u["generated"],
             "steps": [(kind, computed + (u["first_cached"] - shared if i == 0 else 0), generated)
                       for i, (kind, computed, generated) in enumerate(u["steps"])]} for u in users]


def by_step(users: list[dict]) -> str:
    """Mean computed prompt and generated tokens per step of one pipeline (the first step as if run alone)."""
    kinds = list(dict.fromkeys(kind for u in users for kind, _, _ in u["steps"]))
    rows = ["| step | computed prompt | generated |", "|---|---|---|"]
    for kind in kinds:
        mine = [(c, g) for u in users for k, c, g in u["steps"] if k == kind]
        computed, generated = statistics.fmean(c for c, _ in mine), statistics.fmean(g for _, g in mine)
        rows.append(f"| {kind} | {computed:.0f} | {generated:.0f} |")
    return "\n".join(rows)


def seconds(tokens: dict[str, float], rates: tuple[float, float]) -> float:
    """Model time of those tokens at (prompt, generated) tokens/s; reused prompt tokens cost nothing."""
    return tokens["computed"] / rates[0] + tokens["generated"] / rates[1]


def table(cpu: tuple[float, float], server: tuple[float, float] | None) -> str:
    """One row per pipeline of PIPELINES: mean tokens per user, then seconds per user and hours per 10k users."""
    head = ("| task | method | mode | split | users measured | computed prompt | cached prompt | generated "
            "| CPU s/user | 10k users on this CPU (h) |")
    if server:
        head += " 10k users on the server (h) |"
    rows, details = [head, "|" + "---|" * (head.count("|") - 1)], ["## By step", ""]
    for task, method, mode, folder, siblings in PIPELINES:
        users = user_tokens(folder, method, siblings)
        if not users:
            continue
        mean = {k: statistics.fmean(u[k] for u in users) for k in ("computed", "cached", "generated")}
        details.append(f"### {task}, {method}, {mode}\n\n{by_step(users)}\n")
        config = json.loads((RESULTS / folder / "config.json").read_text())
        row = (f"| {task} | {method} | {mode} | {config['split']} (`{folder}`) | {len(users)} | "
               f"{mean['computed']:.0f} | {mean['cached']:.0f} | "
               f"{mean['generated']:.0f} | {seconds(mean, cpu):.1f} | {seconds(mean, cpu) * USERS / 3600:.0f} |")
        if server:
            row += f" {seconds(mean, server) * USERS / 3600:.2f} |"
        rows.append(row)
    return "\n".join(rows) + "\n\n" + "\n".join(details)


def cpu_rates() -> tuple[float, float]:
    """This machine's measured single-sequence (prompt, generated) tokens/s: the committed benchmark's probe."""
    speed = json.loads((RESULTS / "bench-preference-1.5b" / "bench.json").read_text())["probe_speed"]
    return speed["prompt_tokens_per_s"], speed["generated_tokens_per_s"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-rates", help="a server's aggregate prompt,generated tokens/s (default: none)")
    args = parser.parse_args(argv)
    server = tuple(float(x) for x in args.server_rates.split(",")) if args.server_rates else None
    cpu = cpu_rates()
    text = (f"# Cost per user and for {USERS:,} users\n\nCommand: `python experiments/cost_per_user.py"
            f"{' --server-rates ' + args.server_rates if server else ''}`\n\n"
            f"Embedded Qwen2.5-Coder-1.5B (Q4_K_M), tokens per user measured in the committed records named in "
            f"the script (mean over the users whose steps were all computed, none answered by a cache), each "
            f"method's pipeline as if run alone (its first step computes the history; in a run of four methods the "
            f"first method computes it and the others reuse it).  CPU time "
            f"prices them at this machine's measured single-sequence rates ({cpu[0]:g} prompt and {cpu[1]:g} "
            f"generated tokens/s, `bench-preference-1.5b/bench.json`, 2 cores); runs with 4 slots decode several "
            f"users at once and go faster than this.  Cached prompt tokens are reused, not computed: a server "
            f"without prefix caching computes them too."
            + (f"  Server: {server[0]:g} prompt and {server[1]:g} generated tokens/s aggregate, as given." if server
               else "") + "\n\n" + table(cpu, server) + "\n")
    (RESULTS / "cost-per-user.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
