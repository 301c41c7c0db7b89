"""Guided Profile Generation (GPG) for LLM personalization, written as DSPy programs."""

import os as _os

from guided_profile.paths import cache_dir as _cache_dir

# DSPy reads these when it is first imported: keep it offline (no cost-map download) and keep its
# answer cache inside our cache folder.  A value the user set wins.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
_os.environ.setdefault("DSPY_CACHEDIR", str(_cache_dir() / "dspy"))

__version__ = "0.1.0"
