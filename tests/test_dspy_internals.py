"""DSPy's private names this package depends on are still there, with the parameters we pass on.

When one of these fails, DSPy changed under `guided_profile/_dspy_internals.py`: read the new DSPy's
code for the names below, update that module (and its `WRITTEN_AGAINST`), then these tests.
"""

import importlib
import time

import dspy

from guided_profile import _dspy_internals


def test_dspy_is_the_version_the_overrides_were_written_against():
    assert dspy.__version__ == _dspy_internals.WRITTEN_AGAINST, (
        f"DSPy {dspy.__version__} is installed but guided_profile/_dspy_internals.py was written against "
        f"{_dspy_internals.WRITTEN_AGAINST}: check its overrides against the new DSPy, then update WRITTEN_AGAINST")


def test_overridden_private_methods_keep_their_parameters():
    assert _dspy_internals.drift() == [], "DSPy's private methods changed: update guided_profile/_dspy_internals.py"


def test_vendored_logprob_types_still_build_what_our_engines_return():
    top = _dspy_internals.TopLogprob(token="A", logprob=-0.1)
    token = _dspy_internals.TokenLogprob(token="A", logprob=-0.1, top=(top,))
    assert token.top[0].token == "A"


def test_drift_names_a_method_whose_parameters_changed(monkeypatch):
    def moved(self, outputs, signature):  # a DSPy that reordered the parameters
        return outputs

    monkeypatch.setitem(_dspy_internals.OVERRIDDEN, "ChatAdapter._call_postprocess",
                        (moved, ("self", "processed_signature", "original_signature")))
    assert _dspy_internals.drift() == ["ChatAdapter._call_postprocess('self', 'outputs', 'signature') no longer starts "
                                       "with ('self', 'processed_signature', 'original_signature')"]


def _calls_of_a_slow_example(executor):
    """How many times `executor` runs each of 2 examples when one takes 2.5 s (DSPy's default copies after 120 s;
    here after 1 s)."""
    calls = {"fast": 0, "slow": 0}

    def run(name):
        calls[name] += 1
        time.sleep(2.5 if name == "slow" else 0)
        return name

    assert executor.execute(run, ["fast", "slow"]) == ["fast", "slow"]
    return calls


def test_dspy_still_sends_slow_examples_twice_and_the_guard_stops_it():
    """If the first assertion fails, DSPy dropped its straggler copies: `no_straggler_copies` may go."""
    from dspy.utils.parallelizer import ParallelExecutor

    assert _calls_of_a_slow_example(ParallelExecutor(num_threads=2, timeout=1))["slow"] >= 2
    guarded = _dspy_internals.SingleCopyExecutor(num_threads=2, timeout=1)
    assert _calls_of_a_slow_example(guarded) == {"fast": 1, "slow": 1}


def test_no_straggler_copies_swaps_the_executor_evaluate_builds_and_restores_it():
    modules = [importlib.import_module(name) for name in _dspy_internals.EXECUTOR_USERS]
    before = [module.ParallelExecutor for module in modules]
    with _dspy_internals.no_straggler_copies():
        assert all(module.ParallelExecutor is _dspy_internals.SingleCopyExecutor for module in modules)
    assert [module.ParallelExecutor for module in modules] == before
