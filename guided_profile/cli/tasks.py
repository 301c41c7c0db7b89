"""`guided-profile tasks`: list the registered tasks and their hand-written guidance."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    return sub.add_parser("tasks", help="list the registered tasks and their hand-written guidance")


def main(args: argparse.Namespace) -> int:
    from guided_profile.tasks import TASKS

    for name, cls in sorted(TASKS.items()):
        print(f"{name}: {cls.description}\n  guidance: {cls.guidance}\n  objective: {cls.objective}")
    return 0
