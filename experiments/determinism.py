"""Do two identical runs give identical replies?  GPG (score mode) twice with 1 server slot and twice with 4,
every call sent to the model (--no-cache also bypasses the profile store), on the same test users.

With one slot each request is computed the same way every time; with several, llama.cpp batches whichever
requests are in flight together, and a different batch changes the floating-point order of the sums, so greedy
decoding can take another token.  This measures how often that happens and what it does to accuracy.

Usage: python experiments/determinism.py [--limit 10] [--lm local-0.5b] [--out experiments/results/determinism-0.5b]
Rerunning resumes (each run folder keeps its records); the comparison is rewritten at the end.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guided_profile.evaluation import read_records  # noqa: E402
from guided_profile.report import provenance_line  # noqa: E402
from guided_profile.runs import RunSettings, run_methods  # noqa: E402

SLOTS = (1, 4)
REPEATS = ("a", "b")
TEXTS = ("guidance", "profile", "reply")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10, help="first N test users (default 10)")
    parser.add_argument("--lm", default="local-0.5b", help="model, as for `guided-profile run` (default local-0.5b)")
    parser.add_argument("--data", default="real", help="as for `guided-profile run` (default real)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/determinism-0.5b"),
                        help="folder for the four run folders and summary.md")
    return parser.parse_args()


def run_argv(args: argparse.Namespace, slots: int, repeat: str) -> list[str]:
    return ["run", "--task", "preference", "--methods", "gpg", "--data", args.data, "--split", "test",
            "--limit", str(args.limit), "--seed", "0", "--lm", args.lm, "--answer-mode", "score",
            "--retriever", "recent",
            "--parallel", str(slots), "--no-cache", "--no-progress", "--out", str(args.out / f"slots{slots}-{repeat}")]


def by_example(folder: Path) -> dict[str, dict]:
    return {r["example_id"]: r for r in read_records(folder / "records.jsonl") if r.get("error") is None}


def compare(first: dict[str, dict], second: dict[str, dict]) -> dict:
    """Per text field, how many examples read the same in both runs; the largest change of an option's
    probability; and how many final answers differ."""
    shared = sorted(set(first) & set(second))
    same = {field: sum(first[i].get(field) == second[i].get(field) for i in shared) for field in TEXTS}
    deltas = [abs(p - q) for i in shared
              for p, q in zip(first[i].get("choice_probs") or [], second[i].get("choice_probs") or [], strict=True)]
    parsed = sum(first[i]["metrics"]["parsed"] != second[i]["metrics"]["parsed"] for i in shared)
    accuracy = [sum(run[i]["metrics"]["accuracy"] for i in shared) / len(shared) for run in (first, second)]
    return {"n": len(shared), "identical": same, "max_prob_change": max(deltas, default=0.0),
            "answers_changed": parsed, "accuracy": accuracy}


def markdown(results: dict[int, dict], commands: list[str], args: argparse.Namespace) -> str:
    lines = ["# Do identical runs repeat exactly?", "",
             f"GPG in score mode (4 rotations), first {args.limit} test users of the preference task, "
             f"--lm {args.lm}, greedy, every call sent to the model (no answer cache, no profile store); "
             "each configuration run twice.", "",
             provenance_line(json.loads((args.out / f"slots{next(iter(results))}-{REPEATS[0]}" / "config.json")
                                        .read_text())), "",
             "| server slots | n | same guidance | same profile | same reply | largest option-probability change "
             "| answers changed | accuracy (run a / run b) |", "|---|---|---|---|---|---|---|---|"]
    for slots, r in results.items():
        same = r["identical"]
        lines.append(f"| {slots} | {r['n']} | {same['guidance']} | {same['profile']} | {same['reply']} | "
                     f"{r['max_prob_change']:.4f} | {r['answers_changed']} | "
                     f"{100 * r['accuracy'][0]:.0f}% / {100 * r['accuracy'][1]:.0f}% |")
    lines += ["", "Commands (run by this script, in this order):", ""]
    lines += [f"    {c}" for c in commands]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    commands, results = [], {}
    for slots in SLOTS:
        for repeat in REPEATS:
            commands.append(shlex.join(["guided-profile", *run_argv(args, slots, repeat)]))  # the same run, typed
            settings = RunSettings.resolve("preference", data=args.data, split="test", limit=args.limit, seed=0,
                                           lm=args.lm, answer_mode="score", retriever="recent", parallel=slots,
                                           cache=False)
            run_methods(settings, ["gpg"], out=args.out / f"slots{slots}-{repeat}", command=commands[-1])
        results[slots] = compare(*(by_example(args.out / f"slots{slots}-{r}") for r in REPEATS))
    (args.out / "summary.json").write_text(json.dumps({"lm": args.lm, "limit": args.limit, "results": results},
                                                      indent=2))
    text = markdown(results, commands, args)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
