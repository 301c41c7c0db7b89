"""GPG and its baselines as DSPy programs, and the method names the CLI accepts."""

from guided_profile.programs.adapter import PersonalAdapter
from guided_profile.programs.methods import METHODS, build_program, canonical
from guided_profile.programs.modules import DirectAnswer, GuidedProfile, ProfileThenAnswer

__all__ = ["DirectAnswer", "GuidedProfile", "ProfileThenAnswer", "PersonalAdapter", "METHODS",
           "build_program", "canonical"]
