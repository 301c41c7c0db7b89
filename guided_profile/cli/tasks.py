"""`guided-profile tasks`: list the registered tasks, their hand-written guidance question and their settings."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    return sub.add_parser("tasks", help="list the registered tasks, their hand-written guidance question and settings")


def main(args: argparse.Namespace) -> int:
    from guided_profile.tasks import TASKS

    for name, cls in sorted(TASKS.items()):
        options = ", ".join(f"{key}={value}" for key, value in cls.option_defaults().items())
        retriever, k = cls.default_retrieval
        task = cls()
        modes = ("score", "generate") if cls.has_options else ("generate",)
        choices = "; ".join(f"{mode} mode: {', '.join(task.objectives(mode))}" for mode in modes)
        print(f"{name}: {cls.description}\n  guidance question: {cls.guidance_question}\n  objective: {cls.objective}\n"
              f"  columns: {', '.join(cls.columns)}\n  --objective choices: {choices}\n"
              f"  default retrieval (--retriever, --k): {retriever}, " + ("every item" if k is None else f"k {k}")
              + f"\n  settings (--task-option KEY=VALUE): {options}")
    return 0
