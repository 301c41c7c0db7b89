"""Updating a profile from the old one reads only the new items, with the program's own guidance."""

import dspy

from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.update import ProfileUpdate
from guided_profile.tasks import get_task


def test_update_digests_only_the_new_items_and_rewrites_the_old_profile(fake_lm):
    task = get_task("preference")
    program = build_program("gpg", task, answer_mode="score")
    program.digest.signature = program.digest.signature.with_instructions("Which brands recur? (tuned)")
    updater = ProfileUpdate(program)
    with dspy.context(lm=fake_lm, adapter=PersonalAdapter()):
        result = updater(new_history="1. Pipette tips (category: Lab)", old_profile="Buys fasteners and drills.")
    digest, update = fake_lm.engine_impl.requests
    assert "Which brands recur? (tuned)" in digest["user"]  # an optimized guidance question is used as is
    assert "Pipette tips" in digest["user"] and "fasteners" not in digest["user"]
    assert "Buys fasteners and drills." in update["user"] and result.guidance in update["user"]
    assert "Use at most 60 words." in update["user"]  # the program's profile instruction still applies
    assert result.profile == update["reply"] and result.guidance == "tools, lab supplies"
