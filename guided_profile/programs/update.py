"""Bring a GPG profile up to date when a person's history grows, instead of writing it again.

Regenerating reads the whole history twice (digestion, then profile).  Updating reads only the
new items: the program's own guidance question is answered about them alone, and the old profile
is rewritten with that answer.  It costs tokens in proportion to what is new, not to the whole
history; what it costs in answer quality is measured by `experiments/profile_update.py`.
"""

from __future__ import annotations

import dspy

from guided_profile.programs.modules import STEP_MAX_TOKENS, GuidedProfile


class UpdateProfile(dspy.Signature):
    """Update the person's profile.  It was written from their earlier items; the history holds only
    the items they added since.  Keep what still holds, add what the new items show, and keep it as
    short as the old profile."""

    history: str = dspy.InputField(desc="only the items added since the profile was written, oldest first")
    guidance: str = dspy.InputField(desc="what the new items show, in brief")
    old_profile: str = dspy.InputField(desc="the profile written from the earlier items")
    profile: str = dspy.OutputField(desc="the updated profile")


class ProfileUpdate(dspy.Module):
    """GPG's first two steps for a grown history, starting from the old profile.

    Shares the digestion step of `program`, so an optimized guidance question is used as is, and
    follows the program's profile instruction (its word limit, for instance).
    """

    def __init__(self, program: GuidedProfile):
        super().__init__()
        self.digest = program.digest
        update = " ".join(UpdateProfile.instructions.split())  # the docstring's line breaks are not meant for the LM
        instructions = f"{update}\n{program.write_profile.signature.instructions}"
        self.update = dspy.Predict(UpdateProfile.with_instructions(instructions), max_tokens=STEP_MAX_TOKENS)

    def forward(self, new_history: str, old_profile: str) -> dspy.Prediction:
        guidance = self.digest(history=new_history).guidance
        profile = self.update(history=new_history, guidance=guidance, old_profile=old_profile).profile
        return dspy.Prediction(guidance=guidance, profile=profile)
