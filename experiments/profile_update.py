"""Update a GPG profile from the old profile plus the new items, or regenerate it: cost and accuracy.

For each of the first N test users of the preference task, the history is cut into earlier items
(all but the last quarter) and new items (the last quarter, at least one).  A profile is written from
the earlier items (the starting point both paths share; kept in the profile store), then brought up
to the whole history two ways, each paid in full (no store, no DSPy answer cache):
  regenerate: GPG's digestion and profile on the whole history;
  update:     the guidance question on the new items only, then the old profile rewritten
              (`guided_profile.programs.update.ProfileUpdate`).
Both profiles then answer the user's question the same way (GPG's final step: history + profile,
score mode, 4 rotations).  One JSON line per user goes to OUT/records.jsonl as it finishes (a rerun
resumes); OUT/summary.json and OUT/summary.md hold the means, accuracy with 95% intervals and the
paired difference.

    python experiments/profile_update.py --limit 20 --lm local --out experiments/results/profile-update-preference-1.5b
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import dspy
from tqdm import tqdm

from guided_profile.cli.common import parse_task_options
from guided_profile.evaluation import RECORDS, read_records
from guided_profile.lm import make_lm
from guided_profile.lm.accounting import UsageMeter
from guided_profile.metrics.stats import bootstrap_ci, paired_bootstrap, paired_permutation_pvalue
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.stored import using_store
from guided_profile.programs.update import ProfileUpdate
from guided_profile.provenance import portable
from guided_profile.report import p_clause, provenance_line
from guided_profile.runs import load_split, open_store, provenance
from guided_profile.tasks import get_task

PATHS = ("regenerate", "update")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="real", help="'real' (default), 'sample' or a path to the data")
    parser.add_argument("--limit", type=int, default=20, help="first N test users (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user split (default 0)")
    parser.add_argument("--new-fraction", type=float, default=0.25,
                        help="share of the history that is new (default 0.25; at least one item)")
    parser.add_argument("--lm", default="local", help="local (1.5B, default), local-0.5b, gguf:PATH or fake")
    parser.add_argument("--out", type=Path, default=Path("runs/profile-update"), help="output folder")
    parser.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a preference task option, e.g. show_categories=true (default: none)")
    return parser.parse_args()


def paid(lm: dspy.BaseLM, step) -> tuple[dspy.Prediction, dict]:
    """Run `step()` and return its prediction with what it cost."""
    start = time.perf_counter()
    with UsageMeter(lm) as meter:
        prediction = step()
    usage = meter.usage.to_dict()
    usage["computed_prompt_tokens"] = usage["prompt_tokens"] - usage["cached_prompt_tokens"]
    return prediction, usage | {"seconds": round(time.perf_counter() - start, 3)}


def regenerate(program, history: str) -> dspy.Prediction:
    """GPG's first two steps on the whole history, as a run without the store makes them."""
    guidance = program.digest(history=history).guidance
    return dspy.Prediction(guidance=guidance, profile=program.write_profile(history=history, guidance=guidance).profile)


def one_user(example, task, program, updater, lms: dict[str, dspy.BaseLM], store, new_fraction: float) -> dict:
    """Both paths for one user, and the answer each profile leads to.

    Each path runs on its own model instance (`lms`), so llama.cpp's prompt cache cannot hand one
    path what another computed: regenerating would otherwise find the earlier items' KV entries
    left by writing the old profile, which a later session would not have.
    """
    items = example.history
    n_new = max(1, math.ceil(len(items) * new_fraction))
    earlier = task.history_text(replace(example, history=items[:-n_new]))[0]
    new = task.history_text(replace(example, history=items[-n_new:]))[0]
    inputs = task.inputs(example)
    adapter = PersonalAdapter()
    with dspy.context(lm=lms["old"], adapter=adapter), using_store(store, example.user_id):
        old_profile = regenerate(program, earlier).profile
    record = {"example_id": example.example_id, "user_id": example.user_id, "items": len(items), "new_items": n_new,
              "gold": example.gold, "old_profile": old_profile}
    steps = {"update": lambda: updater(new_history=new, old_profile=old_profile),
             "regenerate": lambda: regenerate(program, inputs["history"])}
    for path, make in steps.items():
        lm = lms[path]
        with dspy.context(lm=lm, adapter=adapter):
            profile, usage = paid(lm, make)
            answer, answer_usage = paid(lm, lambda p=profile: program.respond(
                history=inputs["history"], profile=p.profile, question=inputs["question"], options=inputs["options"]))
            record[path] = {"guidance": profile.guidance, "profile": profile.profile, "usage": usage,
                            "answer": answer.answer, "answer_usage": answer_usage,
                            "metrics": task.score(example, answer.answer)}
    return record


def summarize(records: list[dict]) -> dict:
    n = len(records)
    out: dict = {"n": n}
    for path in PATHS:
        acc = [r[path]["metrics"]["accuracy"] for r in records]
        cost = {k: sum(r[path]["usage"][k] for r in records) / n
                for k in ("calls", "prompt_tokens", "computed_prompt_tokens", "completion_tokens", "model_seconds",
                          "seconds")}
        out[path] = {"accuracy": sum(acc) / n, "ci95": bootstrap_ci(acc), "per_user": cost}
    a = [r["update"]["metrics"]["accuracy"] for r in records]
    b = [r["regenerate"]["metrics"]["accuracy"] for r in records]
    mean, lo, hi = paired_bootstrap(a, b)
    out["update_minus_regenerate"] = {"accuracy": mean, "ci95": [lo, hi], "p": paired_permutation_pvalue(a, b)}
    out["same_answer"] = sum(r["update"]["answer"] == r["regenerate"]["answer"] for r in records) / n
    out["new_items_share"] = sum(r["new_items"] / r["items"] for r in records) / n
    return out


def markdown(summary: dict, config: dict) -> str:
    lines = ["# Profile update vs regeneration, preference", "", f"Command: `{config['command']}`", "",
             provenance_line(config), "",
             f"Model {config['lm']['model']}; {summary['n']} test users of {config['data']} (seed {config['seed']}); "
             f"new items are {100 * summary['new_items_share']:.0f}% of a history on average; "
             "the final step is GPG's (history + profile), score mode, 4 rotations.", "",
             "| path | accuracy % | 95% CI | calls | prompt tok | computed prompt tok | generated tok | model s |",
             "|---|---|---|---|---|---|---|---|"]
    for path in PATHS:
        s, c = summary[path], summary[path]["per_user"]
        lines.append(f"| {path} | {100 * s['accuracy']:.1f} | [{100 * s['ci95'][0]:.1f}, {100 * s['ci95'][1]:.1f}] "
                     f"| {c['calls']:.1f} | {c['prompt_tokens']:.0f} | {c['computed_prompt_tokens']:.0f} | "
                     f"{c['completion_tokens']:.0f} | {c['model_seconds']:.1f} |")
    d = summary["update_minus_regenerate"]
    lines += ["", "Costs are per user and cover making the profile only (the answer step costs the same for both).",
              f"Update − regenerate accuracy: {100 * d['accuracy']:+.1f} points [{100 * d['ci95'][0]:+.1f}, "
              f"{100 * d['ci95'][1]:+.1f}], paired permutation {p_clause(d['p'])}; same answer for "
              f"{100 * summary['same_answer']:.0f}% of users."]
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    args = parse_args()
    task_options = parse_task_options(args.task_option)
    task = get_task("preference", seed=args.seed, **task_options)
    examples, source = load_split(task, args.data, "test", args.seed, args.limit)
    # every call paid now (no DSPy cache): this measures cost; one model instance per path (see one_user)
    made = {name: make_lm(args.lm, cache=False) for name in ("old", *PATHS)}
    lms = {name: lm for name, (lm, _) in made.items()}
    identity = made["old"][1]
    program = build_program("gpg", task, answer_mode="score", rotations=4)
    updater = ProfileUpdate(program)
    store = open_store(None)
    args.out.mkdir(parents=True, exist_ok=True)
    config = {"command": "python " + " ".join(sys.argv), "lm": identity.to_dict(), "data": source.name,
              "task_options": task_options, "seed": args.seed, "split": "test", "limit": args.limit,
              "new_fraction": args.new_fraction,
              **provenance(source, len(examples))}
    config_file = args.out / "config.json"
    if config_file.exists():  # resume only what the same settings made
        old = json.loads(config_file.read_text())
        old["data"] = portable(old.get("data", ""))  # made before data was named portably
        old.setdefault("task_options", {})  # made before task options were recorded
        keys = ("lm", "data", "task_options", "seed", "split", "new_fraction")
        changed = [k for k in keys if old.get(k) != config[k]]
        if changed:
            sys.exit(f"error: {args.out} holds a run with different {', '.join(changed)}; use another --out")
    config_file.write_text(json.dumps(config, indent=2))
    path = args.out / RECORDS
    records = read_records(path, repair=True)
    done = {r["example_id"] for r in records}
    for example in tqdm([e for e in examples if e.example_id not in done], desc="users", unit="user"):
        if len(example.history) < 2:
            continue  # nothing can be new
        record = one_user(example, task, program, updater, lms, store, args.new_fraction)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        records.append(record)
    records = [r for r in records if r["example_id"] in {e.example_id for e in examples}]
    summary = summarize(records)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.md").write_text(markdown(summary, config))
    print(markdown(summary, config))


if __name__ == "__main__":
    main()
