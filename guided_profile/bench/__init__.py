"""Throughput benchmark: GPG run several ways on the same users, against an ideal floor and plain DSPy.

1. Configurations (`runner.py`), each from a fresh model load with DSPy's answer cache and the
   profile store off: `plain-dspy` (DSPy's default ChatAdapter, no prompt-prefix reuse, one request
   at a time, generate-and-parse answers: the only ones its format allows), and per answer mode
   (score with `run`'s 4 rotations, and generate) this project's settings with one slot (`default`)
   and with N slots (`parallel-N`); in score mode also the options-last prompt layout (`options-last`),
   llama.cpp's n-gram drafts (`draft-ngram-3`) and the profile step continuing the digestion's
   conversation (`profile-continued`), each with one slot.
2. Speeds (`speed.py`): each run's own, a fixed prompt's, and the aggregate decode rate of 1-4
   sequences at once; the floor takes the best prompt rate and the best generation rate.
3. The ideal floor (`tokens.py`): per user the history once, each step's own instruction once, the
   question and options once, each output generated once and never re-read, one token per rotation;
   wall/floor for every configuration, and the tokens each step computed by category.
4. Same accuracy, measured (`paired.py`): each configuration against plain DSPy and against its mode's
   `default` on the same users (paired difference, interval, p), and the outputs batching changed
   against one slot, per step.
"""

from guided_profile.bench.report import write_report
from guided_profile.bench.runner import ROTATIONS, BenchConfig, bench, default_configs

__all__ = ["ROTATIONS", "BenchConfig", "bench", "default_configs", "write_report"]
