"""The paper's ablation grid (Table 3 shape) on real users, and what it costs in profile generations.

Runs every row of the grid (which of history PC, guidance G and profile PP the final step sees, plus
the unguided-profile baseline) on the first N test users of the preference task, in one
`guided-profile run` with a fresh profile store and a fresh DSPy answer cache, so every digestion
and profile written is a real generation.  Then counts, from the store, how many digestions and
profiles were generated per user and kind: the profile store should make that one per user and
kind (guided: one digestion + one profile; unguided: one profile), not one per row.

Writes the run folder (records, summary, table) and OUT/generations.json / OUT/generations.md.
The store and cache live in --work (not committed); rerunning the same command resumes.

    python experiments/ablation_grid.py --limit 10 --lm local --out experiments/results/ablation-grid-preference-1.5b
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in main(), after DSPY_CACHEDIR is set
    from guided_profile.report import provenance_line
    from guided_profile.store import ProfileStore

# Every final step that uses guidance or a profile (6 gpg:PARTS rows), the direct answers without and
# with the history, and the unguided profile (PG = history + unguided profile).
ROWS = ["dg-no-pc", "dg-pc", "pg", "gpg:g", "gpg:pp", "gpg:g+pp", "gpg:pc+g", "gpg:pc+pp", "gpg:pc+g+pp"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10, help="first N test users (default 10)")
    parser.add_argument("--lm", default="local", help="local (1.5B, default), local-0.5b, gguf:PATH or fake")
    parser.add_argument("--data", default="real", help="'real' (default), 'sample' or a path to the data")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation-grid"), help="run folder")
    parser.add_argument("--work", type=Path, default=None,
                        help="fresh profile store and DSPy cache for this run (default runs/<out name>-work)")
    return parser.parse_args()


KINDS = ("digest", "guided profile", "unguided profile")


def generations(store: ProfileStore, users: set[str]) -> dict:
    """Store entries per (user, kind): each is one generation, since the run started with an empty store."""
    kinds = Counter()
    for user in users:
        for step in store.for_user(user):
            kind = "digest" if step["kind"] == "digest" else ("guided profile" if step["guidance"]
                                                              else "unguided profile")
            kinds[(user, kind)] += 1
    per_kind = {k: [n for (_, kind), n in kinds.items() if kind == k] for k in KINDS}
    return {"users": len(users), "generations": store.count(),
            "most_per_user_and_kind": max(kinds.values(), default=0),
            "per_kind": {k: {"total": sum(v), "max_per_user": max(v, default=0)} for k, v in per_kind.items()}}


def main() -> int:
    args = parse_args()
    work = args.work or Path("runs") / f"{args.out.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    os.environ["DSPY_CACHEDIR"] = str(work / "dspy")  # before DSPy is imported: its cache starts empty
    from guided_profile.evaluation import RECORDS, read_records
    from guided_profile.runs import RunSettings, run_methods
    from guided_profile.store import ProfileStore

    # The same run as this command line (recorded as the run's command):
    command = ["run", "--task", "preference", "--data", args.data, "--split", "test", "--limit", str(args.limit),
               "--lm", args.lm, "--answer-mode", "score", "--retriever", "recent", "--methods", ",".join(ROWS),
               "--store", str(work / "profiles.sqlite"), "--out", str(args.out), "--no-progress"]
    settings = RunSettings.resolve("preference", data=args.data, split="test", limit=args.limit, lm=args.lm,
                                   answer_mode="score", retriever="recent", store=work / "profiles.sqlite")
    run_methods(settings, ROWS, out=args.out, command=shlex.join(["guided-profile", *command]))
    records = read_records(args.out / RECORDS)
    store = ProfileStore(work / "profiles.sqlite")
    counted = generations(store, {r["user_id"] for r in records})
    store.close()
    counted["store_hits"] = sum(r["usage"].get("store_hits", 0) for r in records)
    counted |= {"rows": ROWS, "command": "python " + " ".join(sys.argv)}
    (args.out / "generations.json").write_text(json.dumps(counted, indent=2))
    lines = [f"# Ablation grid: profile generations, {counted['users']} users x {len(ROWS)} rows", "",
             f"Command: `{counted['command']}`", "",
             provenance_line(json.loads((args.out / "config.json").read_text())), "",
             "| kind | generations | at most per user |", "|---|---|---|"]
    lines += [f"| {k} | {v['total']} | {v['max_per_user']} |" for k, v in counted["per_kind"].items()]
    lines += ["", f"{counted['generations']} generations for {counted['users']} users and {len(ROWS)} rows; "
              f"{counted['store_hits']} more steps were answered by the store (without it, each would have been "
              f"another generation). At most {counted['most_per_user_and_kind']} generation per user and kind."]
    (args.out / "generations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
