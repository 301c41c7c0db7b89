"""One program on one example (`programs/attempt.py`), and the one error rule its three callers share:
a failing LM call is that example's failure and the loop goes on; a set-up error stops everything."""

import json

import dspy
import pytest

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.lm.fake import FakeEngine
from guided_profile.optimizers import get_optimizer, run_optimizer
from guided_profile.optimizers.runner import mean_score
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.attempt import attempt
from guided_profile.programs.stored import using_store
from guided_profile.store import ProfileStore, StoreError
from guided_profile.tasks import get_task

TASK = get_task("preference")
OPTIONS = ("Drill bit", "Pipette tips", "Hose", "Clock")


def examples(n, prefix="u"):
    return [Example(f"{prefix}{i}", f"{prefix}{i}", (f"item {prefix}{i}", "Glass beaker"), "Which next?", "A", OPTIONS)
            for i in range(n)]


def fails_on(marker):
    def rule(system, user):
        if marker in user:
            raise RuntimeError("server went away")
        return "A"
    return rule


def lm_of(rule):
    return dspy.LM("fake/attempt", engine=FakeEngine(rule), cache=False)


def test_a_success_gives_reply_metrics_usage_and_the_record_shape_runs_keep():
    done = attempt(build_program("gpg", TASK), TASK, examples(1)[0], lm=lm_of(lambda s, u: "A"),
                   adapter=PersonalAdapter())
    assert done.error is None and done.reply == "A" and done.score == 1.0 and done.usage.calls == 3
    record = done.record()
    assert list(record) == ["example_id", "user_id", "history_cut", "inputs", "gold", "seconds", "usage", "steps",
                            "error", "guidance", "profile", "reply", "metrics"]
    assert json.loads(json.dumps(record["inputs"])) == {"history": "1. item u0\n2. Glass beaker",
                                                        "question": "Which next?", "options": list(OPTIONS)}
    assert record["usage"]["store_hits"] == 0 and len(record["steps"]) == 3


def test_a_failing_lm_call_is_the_examples_failure_not_the_loops():
    done = attempt(build_program("gpg", TASK), TASK, examples(1)[0], lm=lm_of(fails_on("item")),
                   adapter=PersonalAdapter())
    assert "server went away" in done.error  # "Type: message", as records keep it
    assert done.score == 0.0 and done.reply is None
    assert "reply" not in done.record() and "metrics" not in done.record()


def test_a_store_error_stops_everything():
    class BrokenStore:
        def lookup(self, *args):
            raise StoreError("profile store x: database is locked")

    with pytest.raises(StoreError, match="locked"):
        attempt(build_program("gpg", TASK), TASK, examples(1)[0], lm=lm_of(lambda s, u: "A"),
                adapter=PersonalAdapter(), store=BrokenStore())


def test_the_store_is_used_only_inside_its_context_and_its_hits_are_counted(tmp_path):
    store = ProfileStore(tmp_path / "profiles.sqlite")
    example, lm = examples(1)[0], lm_of(lambda s, u: "A")
    first = attempt(build_program("gpg", TASK), TASK, example, lm=lm, adapter=PersonalAdapter(), store=store)
    again = attempt(build_program("gpg", TASK), TASK, example, lm=lm, adapter=PersonalAdapter(), store=store)
    assert first.usage.store_hits == 0 and again.usage.store_hits == 2 and again.usage.calls == 1
    with using_store(store, example.user_id) as use:
        assert use.store is store and use.user_id == example.user_id
    no_store = attempt(build_program("gpg", TASK), TASK, example, lm=lm, adapter=PersonalAdapter())
    assert no_store.usage.store_hits == 0 and no_store.usage.calls == 3


def test_inputs_say_whether_the_history_was_cut():
    long = Example("u9", "u9", tuple("x" * 50 for _ in range(10)), "Which next?", "A", OPTIONS)
    task = get_task("preference", max_history_chars=120)
    inputs = task.inputs(long)
    assert inputs.history_cut and inputs.history_cut == task.history_text(long)[1]
    assert inputs["history"] == task.history_text(long)[0]
    assert not TASK.inputs(examples(1)[0]).history_cut


def optimizer_over(rule, tmp_path, **settings):
    return get_optimizer("optuna", task=TASK, task_lm=lm_of(rule), prompt_lm=lm_of(lambda s, u: "Which?"),
                         workdir=tmp_path, progress=None, **settings)


def test_an_optimizers_mean_scores_a_failed_example_0_and_goes_on(tmp_path):
    optimizer = optimizer_over(fails_on("item u1"), tmp_path)
    assert mean_score(optimizer, build_program("gpg", TASK), examples(4)) == 0.75


def test_the_optuna_search_fails_a_trial_with_a_failed_example_and_goes_on(tmp_path):
    optimizer = optimizer_over(fails_on("item d1"), tmp_path, trials=2, candidates=0)
    with pytest.raises(ConfigError, match="no completed trial"):  # every trial had the failing example
        run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(2, "t"), valset=examples(3, "d"),
                      budget=10_000, log=lambda line: None)


def test_a_set_up_error_stops_the_optuna_search(tmp_path):
    class NeedsData(dspy.Module):
        def forward(self, **inputs):
            raise ConfigError("the dialogue metrics need all-MiniLM-L6-v2")

    optimizer = optimizer_over(lambda s, u: "A", tmp_path)
    with pytest.raises(ConfigError, match="MiniLM"):
        mean_score(optimizer, NeedsData(), examples(2))


def test_an_attempt_inside_an_optimization_is_measured_and_counted_alike():
    from guided_profile.lm.accounting import attach_counter

    lm = lm_of(lambda s, u: "A")
    counter = attach_counter(lm)  # as every optimizer does to its task model
    done = attempt(build_program("gpg", TASK), TASK, examples(1)[0], lm=lm, adapter=PersonalAdapter())
    assert done.usage.calls == counter.usage.calls == 3
    assert done.usage.prompt_tokens == counter.usage.prompt_tokens > 0
