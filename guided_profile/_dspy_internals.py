"""Every place this package leans on DSPy's private names, in one module.  Written against DSPy 3.4.1.

DSPy's public API does not offer four things we need: the log-probability types of its vendored
`lm15` client (our engines build responses with them), a hook on an adapter's raw replies before
parsing (DSPy raises on an empty reply that our single-output steps must keep), hooks on
MIPROv2's candidate pool and trial logging (we drop malformed guidance question candidates and print our
progress line), and a way to turn off the second copies `Evaluate` sends of slow examples.  Each is
reached here and nowhere else, behind a small public face, so a DSPy upgrade breaks this module only;
`tests/test_dspy_internals.py` fails loudly, naming what moved.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import dspy
from dspy._vendor.lm15.types import TokenLogprob, TopLogprob
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.teleprompt import MIPROv2
from dspy.utils.parallelizer import ParallelExecutor

WRITTEN_AGAINST = "3.4.1"

# What is overridden or imported here, with the parameters our overrides pass on: checked by the tests.
OVERRIDDEN: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "ChatAdapter._call_postprocess": (ChatAdapter._call_postprocess,
                                      ("self", "processed_signature", "original_signature", "outputs", "lm",
                                       "lm_kwargs")),
    "MIPROv2._propose_instructions": (MIPROv2._propose_instructions, ("self", "program")),
    "MIPROv2._log_normal_eval": (MIPROv2._log_normal_eval,
                                 ("self", "score", "best_score", "chosen_params", "score_data", "trial", "num_trials")),
    "MIPROv2._log_minibatch_eval": (MIPROv2._log_minibatch_eval,
                                    ("self", "score", "best_score", "batch_size", "chosen_params", "score_data",
                                     "trial", "adjusted_num_trials")),
}

# Modules whose `ParallelExecutor` name `no_straggler_copies` swaps: Evaluate's (every DSPy optimizer scores
# through it) and dspy.Parallel's.
EXECUTOR_USERS = ("dspy.evaluate.evaluate", "dspy.predict.parallel")

__all__ = ["EXECUTOR_USERS", "OVERRIDDEN", "WRITTEN_AGAINST", "HookedMIPROv2", "RepliesHookAdapter", "TokenLogprob",
           "TopLogprob", "drift", "no_straggler_copies"]


def drift() -> list[str]:
    """What no longer matches DSPy 3.4.1: each overridden method whose leading parameters changed."""
    problems = []
    for name, (method, expected) in OVERRIDDEN.items():
        params = tuple(inspect.signature(method).parameters)
        if params[: len(expected)] != expected:
            problems.append(f"{name}{params} no longer starts with {expected}")
    return problems


class RepliesHookAdapter(ChatAdapter):
    """ChatAdapter with a public hook, `prepare_outputs`, on the LM's raw outputs before DSPy parses them.

    DSPy has no such hook; its private `_call_postprocess` is where the raw outputs pass.
    """

    def prepare_outputs(self, signature: type[dspy.Signature], outputs: list) -> list:
        return outputs

    def _call_postprocess(self, processed_signature, original_signature, outputs, lm, lm_kwargs):
        outputs = self.prepare_outputs(original_signature, outputs)
        return super()._call_postprocess(processed_signature, original_signature, outputs, lm, lm_kwargs)


class HookedMIPROv2(MIPROv2):
    """MIPROv2 with two public hooks on its private steps.

    Args:
        filter_candidates: `(program, {predictor index: [instructions]}) -> same`, applied to the
            proposed instruction pool before the trials choose from it.
        on_trial: `(trial number from 1, trials, score in 0..1 or None, note)`, after each evaluation
            MIPROv2 logs (a full dev evaluation, or a minibatch one with a note).
    """

    def __init__(self, *, filter_candidates: Callable[[Any, dict[int, list[str]]], dict[int, list[str]]],
                 on_trial: Callable[[int, int, float | None, str], None], **kwargs: Any):
        super().__init__(**kwargs)
        self.filter_candidates = filter_candidates
        self.on_trial = on_trial

    def _propose_instructions(self, program, *args, **kwargs):
        return self.filter_candidates(program, super()._propose_instructions(program, *args, **kwargs))

    def _log_normal_eval(self, score, best_score, chosen_params, score_data, trial, num_trials, *args, **kwargs):
        super()._log_normal_eval(score, best_score, chosen_params, score_data, trial, num_trials, *args, **kwargs)
        self.on_trial(trial.number + 1, num_trials + 1, score / 100, "")  # DSPy's Evaluate scores in percent

    def _log_minibatch_eval(self, score, best_score, batch_size, chosen_params, score_data, trial,
                            adjusted_num_trials, *args, **kwargs):
        super()._log_minibatch_eval(score, best_score, batch_size, chosen_params, score_data, trial,
                                    adjusted_num_trials, *args, **kwargs)
        self.on_trial(trial.number + 1, adjusted_num_trials, None,
                      f"minibatch {score / 100:.3f}, best full {best_score / 100:.3f}")


class SingleCopyExecutor(ParallelExecutor):
    """DSPy's ParallelExecutor without its straggler copies (`timeout` 0 turns them off)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.timeout = 0


@contextlib.contextmanager
def no_straggler_copies() -> Iterator[None]:
    """Within the block, DSPy's `Evaluate` never sends a slow example a second time.

    Its executor sends another copy of any example still running after 120 s once at most 3 are left,
    without stopping the first.  On a CPU, where one example takes minutes, that pays for slow calls
    twice, outside any plan; and the copy's answer can differ from the first's (llama.cpp is not
    batch-invariant), so a search replayed from its kept answers could take another path.
    """
    modules = [importlib.import_module(name) for name in EXECUTOR_USERS]
    before = [module.ParallelExecutor for module in modules]
    for module in modules:
        module.ParallelExecutor = SingleCopyExecutor
    try:
        yield
    finally:
        for module, executor in zip(modules, before, strict=True):
            module.ParallelExecutor = executor
