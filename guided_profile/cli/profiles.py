"""`guided-profile profiles show USER`: the digestions and profiles kept for one person."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from guided_profile.runs import open_store


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("profiles", help="show what the profile store keeps for a user",
                            description=__doc__)
    parser.add_argument("action", choices=["show"], help="show: print every stored step of USER")
    parser.add_argument("user", help="the user id, as in records.jsonl")
    parser.add_argument("--store", type=Path, default=None,
                        help="profile store file (default: profiles.sqlite in the cache folder)")
    return parser


def main(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    rows = store.for_user(args.user)
    if not rows:
        print(f"no stored digestions or profiles for user {args.user!r} in {store.path} ({store.count()} steps kept)")
        return 1
    for row in rows:
        when = datetime.datetime.fromtimestamp(row["created"]).isoformat(timespec="seconds")
        print(f"[{row['kind']}] {when}  lm={row['lm']}  {row['prompt_tokens']} prompt + "
              f"{row['completion_tokens']} generated tokens, {row['seconds']} s")
        print(f"  instruction: {row['instruction']}")
        if row["guidance"]:
            print(f"  guidance:    {row['guidance']}")
        print(f"  text:        {row['text']}\n")
    return 0
