"""A scripted engine for tests and dry runs: no model, deterministic replies, every request kept.

`--lm fake` uses the default rule, which answers each GPG step with a recognisable text and
every question with the first option, so a whole pipeline can be run and inspected in seconds.
"""

from __future__ import annotations

import os
import time

from guided_profile.lm.scripted import Rule, ScriptedEngine

DELAY_ENV = "GUIDED_PROFILE_FAKE_DELAY"  # seconds each reply takes: tests of interrupts and locks need a slow run


def default_rule(system: str, user: str) -> str:
    tail = user.rsplit("\n\n", 1)[-1].lower()
    # The request made last: a continued profile step's conversation also holds the digestion's request.
    asked = max(("guidance", "profile"), key=lambda step: tail.rfind(f"reply with only the {step}"))
    if f"reply with only the {asked}" not in tail:
        return "A"
    return "guidance: tools, lab supplies" if asked == "guidance" else "A shopper who buys tools and lab supplies."


class FakeEngine(ScriptedEngine):
    """The scripted engine of `--lm fake` and of the tests: `default_rule` unless told otherwise."""

    def __init__(self, rule: Rule = default_rule):
        super().__init__(rule)
        self.delay = float(os.environ.get(DELAY_ENV) or 0)

    def complete(self, request):
        if self.delay:
            time.sleep(self.delay)
        return super().complete(request)
