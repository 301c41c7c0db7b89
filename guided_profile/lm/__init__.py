"""Turns `--lm local | local-0.5b | gguf:PATH | provider/model` into a configured `dspy.LM`."""

from guided_profile.lm.factory import LMSpec, make_lm

__all__ = ["LMSpec", "make_lm"]
