"""One `guided-profile optimize` worker process for tests/test_postgres.py, with a scripted model that
tells configurations apart and logs every request.

Run as `python tests/optuna_worker.py LOG SECONDS -- OPTIMIZE-ARGS...`: the command line's own `optimize`,
with `--lm fake` replaced by a rule whose every reply carries a digest of its prompt. A guidance question,
a part switch or a word limit therefore changes every later prompt of that example, and the answer letter
(from the digest too) gives configurations different scores, so "the same best program" can be told from
luck. Each request sleeps SECONDS, so a worker can be killed in the middle of a trial, and is appended to
LOG as one JSON line (pid, step, prompt) before the reply is returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from guided_profile.lm import fake


def step_of(system: str, user: str) -> str:
    """Which program step asked: the proposal of a guidance question, or one of GPG's three steps."""
    if "guidance_question" in system + user:
        return "propose"
    tail = user.rsplit("\n\n", 1)[-1].lower()
    if "reply with only the guidance" in tail:
        return "digest"
    if "reply with only the profile" in tail:
        return "profile"
    return "answer"


def scripted_rule(log_path: str, seconds: float):
    def rule(system: str, user: str) -> str:
        time.sleep(seconds)
        step = step_of(system, user)
        digest = hashlib.sha256((system + "\n" + user).encode()).hexdigest()
        line = json.dumps({"pid": os.getpid(), "step": step, "prompt": system + "\n" + user}) + "\n"
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())  # one write to an O_APPEND file: two workers' lines never interleave
        finally:
            os.close(fd)
        if step == "propose":
            return f"Which product lines, like kind {digest[:6]}, does this person buy again and again?"
        if step == "digest":
            return f"guidance: tools, lab supplies ({digest[:8]})"
        if step == "profile":
            return f"A shopper who buys tools and lab supplies ({digest[:8]})."
        return "ABCD"[int(digest, 16) % 4]

    return rule


class LoggingFake(fake.FakeEngine):
    rule_factory = None

    def __init__(self, rule=None):
        super().__init__(rule or LoggingFake.rule_factory)


def main(argv: list[str]) -> int:
    log_path, seconds, sep, *args = argv
    assert sep == "--", "usage: optuna_worker.py LOG SECONDS -- OPTIMIZE-ARGS..."
    LoggingFake.rule_factory = scripted_rule(log_path, float(seconds))
    fake.FakeEngine = LoggingFake  # `--lm fake` builds its engine from this module attribute

    from guided_profile.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
