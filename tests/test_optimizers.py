"""Optimizers: each one finds a guidance question the scripted model rewards, keeps guidance
question-shaped, counts its calls within its plan, refuses a budget it cannot keep, and the Optuna
study resumes without repeating a call."""

import json
import re
import threading
import time

import dspy
import pytest

from guided_profile.cli import main as cli_main
from guided_profile.cli.optimize import DEFAULT_BUDGET, DEFAULT_DEV_LIMIT, DEFAULT_TRAIN_LIMIT
from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.lm.fake import FakeEngine
from guided_profile.optimizers import BudgetError, TaskMetric, get_optimizer, run_optimizer
from guided_profile.optimizers._guidance_shape import as_guidance_question, clean_proposal, question_shaped
from guided_profile.programs import build_program
from guided_profile.programs.adapter import PREAMBLE
from guided_profile.programs.export import read_compiled
from guided_profile.runs import DEFAULT_CONFIRM
from guided_profile.tasks import get_task

TASK = get_task("preference")
NEW_Q = "Which product families does this person buy again and again?"
SETTINGS = {
    "mipro": {"num_candidates": 3, "num_trials": 4},
    "gepa": {"max_metric_calls": 20},
    "copro": {"breadth": 2},
    "optuna": {"trials": 4, "candidates": 2},
}


def examples(n, prefix):
    return [Example(f"{prefix}{i}", f"{prefix}{i}", (f"item {prefix}{i}", "Glass beaker (category: Lab)"),
                    "Which next?", "B", ("Drill bit", "Pipette tips", "Hose", "Clock")) for i in range(n)]


TRAIN, DEV = examples(5, "t"), examples(4, "d")


def rewarding_rule(system, user):
    """Right (B) only when the digest step asked NEW_Q: its answer reaches the profile, the profile the answer."""
    tail = user.rsplit("\n\n", 1)[-1].lower()
    if "reply with only the guidance" in tail:
        return "families-known" if NEW_Q in user else "tools"
    if "reply with only the profile" in tail:
        return "KNOWN-FAMILIES shopper" if "families-known" in user else "a shopper"
    return "B" if "KNOWN-FAMILIES" in user else "A"


def lms(task_rule=rewarding_rule, proposal=NEW_Q, cache_as=None):
    """Task and prompt models over scripted engines; `cache_as` turns DSPy's answer cache on, under
    model names of its own so no other test's answers are found there."""
    task_engine, prompt_engine = FakeEngine(task_rule), FakeEngine(lambda s, u: proposal)
    suffix, cache = (f"-{cache_as}", True) if cache_as else ("", False)
    return (dspy.LM(f"fake/task{suffix}", engine=task_engine, cache=cache), task_engine,
            dspy.LM(f"fake/prompt{suffix}", engine=prompt_engine, cache=cache), prompt_engine)


def optimize(name, tmp_path, *, proposal=NEW_Q, budget=10_000, task_rule=rewarding_rule, **settings):
    task_lm, task_engine, prompt_lm, prompt_engine = lms(task_rule, proposal)
    optimizer = get_optimizer(name, task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, **(SETTINGS[name] | settings))
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=TRAIN, valset=DEV, budget=budget,
                           log=lambda line: None)
    return result, task_engine, prompt_engine


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_finds_the_rewarded_guidance_and_counts_its_calls_within_plan(name, tmp_path):
    result, task_engine, prompt_engine = optimize(name, tmp_path)
    assert result.program.digest.signature.instructions == NEW_Q
    assert result.scores["dev"] == 1.0 and result.scores["train"] == 1.0  # hand-written scores 0 here
    usage = result.usage
    assert usage["task"]["calls"] == len(task_engine.requests)  # every real call counted, none invented
    assert usage["prompt"]["calls"] == len(prompt_engine.requests) > 0
    assert usage["calls"] <= usage["expected_calls"]  # the plan is an upper bound
    # program steps go through PersonalAdapter, the prompt model through DSPy's chat format
    assert all(r["system"] == PREAMBLE for r in task_engine.requests)
    assert all(PREAMBLE not in r["system"] + r["user"] for r in prompt_engine.requests)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_proposal_that_is_no_question_never_becomes_the_guidance(name, tmp_path):
    result, _, _ = optimize(name, tmp_path, proposal="Think step by step and be thorough")
    assert result.program.digest.signature.instructions == TASK.guidance_question


def test_copro_keeps_a_hand_written_guidance_that_is_a_request_not_a_question(tmp_path):
    # The dialogue task's guidance ends in '.', which no proposal may; it must still count as usable.
    request = "List this person's product categories, one by one."
    program = build_program("gpg", TASK)
    program.digest.signature = program.digest.signature.with_instructions(request)
    task_lm, _, prompt_lm, _ = lms(proposal="Think step by step and be thorough")
    optimizer = get_optimizer("copro", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, breadth=2)
    result = run_optimizer(optimizer, program, trainset=TRAIN, valset=DEV, budget=10_000,
                           log=lambda line: None)
    assert result.program.digest.signature.instructions == request


@pytest.mark.parametrize(("proposal", "expected"), [
    (NEW_Q, f"accepted; .*proposed digest: {re.escape(repr(NEW_Q))}"),
    # A refused guidance question is no proposal: the dev set (4) and the parent's minibatch (3), no copy scored.
    ("Think step by step and be thorough", r"^\[gepa\] trial 1 .*nothing proposed; best dev [.0-9]+; metric calls 7/"),
])
def test_gepa_progress_says_what_was_proposed_and_the_verdict(tmp_path, proposal, expected):
    lines = []
    task_lm, _, prompt_lm, _ = lms(proposal=proposal)
    optimizer = get_optimizer("gepa", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=lines.append, **SETTINGS["gepa"])
    run_optimizer(optimizer, build_program("gpg", TASK), trainset=TRAIN, valset=DEV, budget=10_000,
                  log=lambda line: None)
    iterations = [line for line in lines if "metric calls" in line]
    assert any(re.search(expected, line) for line in iterations), iterations


def test_plans_match_measured_calls_for_dspy_optimizers(tmp_path):
    """Without cache hits the formulas are exact for COPRO and for MIPROv2 when bootstrapping finds nothing."""
    never = lambda s, u: "A" if "answer" in u.rsplit("\n\n", 1)[-1].lower() else "x"  # noqa: E731
    for name in ("copro", "mipro"):
        result, task_engine, prompt_engine = optimize(name, tmp_path / name, task_rule=never)
        assert len(task_engine.requests) + len(prompt_engine.requests) == result.usage["expected_calls"], name


def test_budget_too_small_is_refused_before_any_call(tmp_path):
    for name in sorted(SETTINGS):
        with pytest.raises(BudgetError, match="too small for one trial|expects up to"):
            optimize(name, tmp_path / name, budget=10)
    task_lm, task_engine, prompt_lm, prompt_engine = lms()
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path / "b",
                              progress=None, trials=4, candidates=2)
    with pytest.raises(BudgetError):
        run_optimizer(optimizer, build_program("gpg", TASK), trainset=TRAIN, valset=DEV, budget=30,
                      log=lambda line: None)
    assert task_engine.requests == [] and prompt_engine.requests == []


@pytest.mark.parametrize("mode", ["generate", "score"])
def test_every_default_plan_fits_the_default_budget(tmp_path, mode):
    task_lm, _, _, _ = lms()
    program = build_program("gpg", TASK, answer_mode=mode, rotations=4)
    trainset, valset = examples(DEFAULT_TRAIN_LIMIT, "t"), examples(DEFAULT_DEV_LIMIT, "d")
    for name in sorted(SETTINGS):  # with the confirm stage `optimize` runs by default
        optimizer = get_optimizer(name, task=TASK, task_lm=task_lm, workdir=tmp_path / name, progress=None,
                                  confirm=DEFAULT_CONFIRM)
        assert optimizer.plan(program, trainset=trainset, valset=valset).total <= DEFAULT_BUDGET, name


def test_unknown_optimizer_or_setting_is_a_clear_error(tmp_path, capsys):
    task_lm, _, _, _ = lms()
    with pytest.raises(ConfigError, match="unknown optimizer 'nope'.*copro, gepa, mipro, optuna"):
        get_optimizer("nope", task=TASK, task_lm=task_lm)
    with pytest.raises(ConfigError, match="no setting depthh"):
        get_optimizer("copro", task=TASK, task_lm=task_lm, depthh=2)
    with pytest.raises(ConfigError, match="breadth='many' is not of type int"):
        get_optimizer("copro", task=TASK, task_lm=task_lm, breadth="many")
    with pytest.raises(ConfigError, match="max_words=20 is below min_words=60"):  # before any proposal is paid for
        get_optimizer("optuna", task=TASK, task_lm=task_lm, min_words=60, max_words=20)
    base = ["optimize", "--lm", "fake", "--confirm-fraction", "0", "--out", str(tmp_path / "c.json")]
    assert cli_main([*base, "--optimizer", "nope"]) == 2
    assert cli_main([*base, "--optimizer", "mipro", "--multi-objective"]) == 2
    assert cli_main([*base, "--optimizer", "copro", "--budget", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "Traceback" not in "".join(err) and "too small for one trial" in err[2]
    assert not (tmp_path / "c.json").exists()


def test_a_word_grid_without_the_starting_programs_limit_is_refused_before_any_call(tmp_path):
    """Trial 0 must be the starting program itself: a grid that rounds its 60 words to 70 would make it a near-copy."""
    task_lm, task_engine, prompt_lm, prompt_engine = lms()
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, **(SETTINGS["optuna"] | {"word_step": 25}))
    with pytest.raises(ConfigError, match=r"grid \[20, 45, 70, 95\].*starting program's 60 words"):
        run_optimizer(optimizer, build_program("gpg", TASK), trainset=TRAIN, valset=DEV, budget=10_000,
                      log=lambda line: None)
    assert prompt_engine.requests == [] and task_engine.requests == []


def test_optuna_study_resumes_without_repeating_a_call(tmp_path):
    calls = {"n": 0}

    def dies_after_30(system, user):
        calls["n"] += 1
        if calls["n"] > 30:  # trials 1-2 take 12 calls each: dies in trial 3, after 2 of its 4 examples
            raise KeyboardInterrupt
        return rewarding_rule(system, user)

    with pytest.raises(KeyboardInterrupt):  # proposals from fixed examples: the call counts below stay exact
        optimize("optuna", tmp_path, task_rule=dies_after_30, ground_proposals=False)
    killed = json.loads((tmp_path / "cost.json").read_text())["sessions"]
    assert len(killed) == 1 and killed[0]["model_calls"] >= 30  # the killed session's cost is kept
    task_lm, task_engine, prompt_lm, prompt_engine = lms()
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, ground_proposals=False, **SETTINGS["optuna"])
    plan = optimizer.plan(build_program("gpg", TASK), trainset=TRAIN, valset=DEV)
    assert plan.parts["guidance question candidates (prompt)"] == 0 and plan.trials == 2  # pool and 2 trials kept
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=TRAIN, valset=DEV,
                           budget=10_000, log=lambda line: None)
    assert prompt_engine.requests == []  # the candidate pool came from the study
    assert [t["trial"] for t in result.info["trials"]] == [0, 1, 3, 4]  # trial 2 failed; 3 is its retry
    retry, last = result.info["trials"][2:]
    assert retry["calls"] == 2 * 3  # only the 2 dev examples the killed trial had not finished
    assert last["calls"] <= 4 * 3  # (none at all if TPE picks a configuration already scored)
    assert len(task_engine.requests) == retry["calls"] + last["calls"] + 5 * 3  # + final scoring on train
    assert result.program.digest.signature.instructions == NEW_Q
    total = result.usage["all_sessions"]  # what the export states: both sessions, each call paid once
    assert total["sessions"] == 2 and total["model_calls"] == killed[0]["model_calls"] + result.usage["model_calls"]


def test_a_resumed_optuna_search_shows_the_best_of_its_earlier_sessions(tmp_path):
    first, _, _ = optimize("optuna", tmp_path, trials=2)
    assert max(t["score"] for t in first.info["trials"]) == 1.0  # the rewarded question, found in session 1
    task_lm, _, prompt_lm, _ = lms(task_rule=lambda system, user: "A")  # session 2's new trial is scored 0
    lines: list[str] = []
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=lines.append, **(SETTINGS["optuna"] | {"trials": 3}))
    run_optimizer(optimizer, build_program("gpg", TASK), trainset=TRAIN, valset=DEV, budget=10_000,
                  log=lambda line: None)
    [line] = [line for line in lines if " trial 3/" in line]
    assert "score 0.000" in line and "best 1.000" in line, line  # was "best 0.000": session 1 forgotten


def test_the_cost_ledger_counts_every_session_and_survives_a_bad_file(tmp_path):
    from guided_profile.lm.accounting import attach_counter
    from guided_profile.optimizers._ledger import CostLedger

    for calls in (1, 2):  # two sessions, each a process of its own with a fresh counter
        lm = dspy.LM("fake/ledger", engine=FakeEngine(lambda s, u: "B"), cache=False)
        counter = attach_counter(lm)
        with CostLedger(tmp_path, [counter]) as ledger:
            for _ in range(calls):
                lm("which?")
    assert ledger.totals()["sessions"] == 2 and ledger.totals()["model_calls"] == 1 + 2
    written = json.loads((tmp_path / "cost.json").read_text())["sessions"]
    assert ledger.totals()["seconds"] == round(sum(s["seconds"] for s in written), 1)  # frozen when the block ends
    with CostLedger(None, [counter]) as alone:  # no run folder: this session alone, nothing written
        assert alone.totals()["sessions"] == 1 and alone.totals()["model_calls"] == 2
    assert json.loads((tmp_path / "cost.json").read_text())["sessions"][-1]["model_calls"] == 2  # not rewritten
    (tmp_path / "cost.json").write_text("{cut")
    with pytest.warns(UserWarning, match="cost.json: unreadable"):
        assert CostLedger(tmp_path, [counter]).totals()["sessions"] == 1


def test_optuna_multi_objective_returns_a_pareto_front(tmp_path):
    result, _, _ = optimize("optuna", tmp_path, trials=8, multi_objective=True)
    front = result.info["pareto_front"]
    assert front and result.info["best_trial"] == front[0]
    trials = result.info["trials"]
    for point in front:  # no trial is at least as good on both and better on one
        assert not any(t["score"] >= point["score"] and t["tokens_per_example"] <= point["tokens_per_example"]
                       and (t["score"], t["tokens_per_example"]) != (point["score"], point["tokens_per_example"])
                       for t in trials)
    assert front[0]["score"] == 1.0 and front[0]["guidance_question"] == NEW_Q


def test_gepa_metric_gives_the_gold_answer_as_feedback():
    metric = TaskMetric(TASK, examples(1, "t"))
    gold = dspy.Example(example_id="t0")
    feedback = metric.gepa(gold, dspy.Prediction(answer="A", guidance="tools"), None, "digest", None)
    assert feedback.score == 0.0
    assert "right answer was B (Pipette tips)" in feedback.feedback and "'A'" in feedback.feedback
    assert "'tools'" in feedback.feedback  # the digest step sees what its question produced
    assert metric(gold, dspy.Prediction(answer="B")) == 1.0


def test_question_shape():
    assert question_shaped("Which brands does this person prefer?")
    assert question_shaped("List the categories, split by a comma:")
    assert not question_shaped("Think step by step.")
    assert not question_shaped("")
    assert not question_shaped("Why? " * 100)
    assert clean_proposal('Proposed instruction: "Which stores?"') == "Which stores?"
    # a small model's question followed by a comment (seen with the 0.5B model): the question is kept
    assert as_guidance_question("Which brands does this person return to? This shows their loyalty.") == \
        "Which brands does this person return to?"
    assert as_guidance_question("Think step by step. Then answer.") is None


@pytest.fixture
def own_dspy_cache(tmp_path):
    """A DSPy answer cache of the test's own, empty: what the test asserts is what that cache holds, whatever
    earlier tests of the session left in the shared one (a full CI run once found it unreadable here)."""
    shared = dspy.cache
    dspy.configure_cache(disk_cache_dir=str(tmp_path / "dspy-cache"))
    yield
    dspy.cache = shared


@pytest.mark.usefixtures("own_dspy_cache")
def test_call_counter_counts_completions_and_cache_hits(tmp_path):
    from guided_profile.lm.accounting import attach_counter

    engine = FakeEngine(lambda s, u: "x")
    lm = dspy.LM("fake/counted", engine=engine, cache=True)
    counter = attach_counter(lm)
    lm("one prompt for the cache test", n=3, temperature=1.0)
    lm("one prompt for the cache test", n=3, temperature=1.0)
    assert counter.usage.calls == 6 and counter.usage.cache_hits == 3 and len(engine.requests) == 3
    assert counter.tokens > 0 and len(lm.history) == 2  # left for a UsageMeter to read (DSPy caps it)


@pytest.mark.parametrize("machine", ["same", "another"])
@pytest.mark.parametrize("name", ["copro", "gepa", "mipro"])
@pytest.mark.usefixtures("own_dspy_cache")
def test_dspy_optimizer_rerun_after_a_kill_repeats_no_call(name, machine, tmp_path):
    """DSPy's optimizers resume through DSPy's answer cache: what the killed run asked is never asked again, also
    where that cache is empty (another machine) and only the run folder came along (its answers.jsonl)."""
    asked: list[str] = []

    def dies_after_20(system, user):
        asked.append(user)
        if len(asked) > 20:
            raise KeyboardInterrupt
        return rewarding_rule(system, user)

    def run(task_rule):
        task_lm, task_engine, prompt_lm, _ = lms(task_rule, cache_as=tmp_path.name)
        optimizer = get_optimizer(name, task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                                  progress=None, **SETTINGS[name])
        result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=TRAIN, valset=DEV,
                               budget=10_000, log=lambda line: None)
        return result, task_engine

    with pytest.raises(KeyboardInterrupt):
        run(dies_after_20)
    killed = set(asked[:20])  # the 21st was never answered, so it was not cached
    if machine == "another":
        dspy.configure_cache(disk_cache_dir=str(tmp_path / "another-machine"))
    result, task_engine = run(rewarding_rule)
    again = [r["user"] for r in task_engine.requests]
    assert again and not killed & set(again)
    assert result.usage["task"]["cache_hits"] >= len(killed)
    assert result.program.digest.signature.instructions == NEW_Q


@pytest.mark.parametrize("task_name", ["paraphrase", "dialogue"])
def test_text_tasks_optimize_and_compare_through_the_command_line(task_name, tmp_path, capsys):
    task = get_task(task_name)
    out = tmp_path / "tuned.json"
    assert cli_main(["optimize", "--task", task_name, "--lm", "fake", "--optimizer", "optuna", "--option", "trials=2",
                     "--option", "candidates=1", "--train-limit", "3", "--dev-limit", "3", "--confirm-fraction", "0",
                     "--out", str(out)]) == 0
    payload = read_compiled(out)
    assert payload["task"] == task_name and payload["scores"]["objective"] == task.objective
    assert 0.0 <= payload["scores"]["dev"] <= 1.0 and payload["optimizer"]["info"]["trials"]
    folder = tmp_path / "cmp"
    assert cli_main(["compare", "--task", task_name, "--programs", f"handwritten,{out}", "--lm", "fake",
                     "--split", "test", "--limit", "3", "--out", str(folder), "--no-progress"]) == 0
    report = (folder / "compare.md").read_text()
    assert "| tuned |" in report and task.guidance_question in report
    assert all(column in report for column in task.columns)


def test_compile_is_shaped_like_dspys_with_the_metric_given_at_construction(tmp_path):
    task_lm, _, prompt_lm, _ = lms()
    metric = TaskMetric(TASK)
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, metric=metric,
                              workdir=tmp_path, progress=None, **SETTINGS["optuna"])
    student = build_program("gpg", TASK)
    with pytest.raises(TypeError):
        optimizer.compile(student, TRAIN, DEV)  # keywords only, in DSPy's order
    with pytest.raises(ConfigError, match="one development example"):
        optimizer.compile(student, trainset=TRAIN)  # selecting on train would be a silent guess
    compiled = optimizer.compile(student, trainset=TRAIN, valset=DEV)
    assert optimizer.metric is metric and set(metric.by_id) == {ex.example_id for ex in TRAIN + DEV}
    assert compiled.digest.signature.instructions == NEW_Q
    assert student.digest.signature.instructions == TASK.guidance_question  # the student is left as it was


def test_optuna_proposals_are_grounded_in_what_the_handwritten_program_gets_wrong(tmp_path):
    result, task_engine, prompt_engine = optimize("optuna", tmp_path)
    seen = prompt_engine.requests[0]["user"]
    assert "The system answered: A (score 0.00)" in seen and "Its guidance answer was: tools" in seen
    assert result.usage["calls"] <= result.usage["expected_calls"]  # the plan counts the probe


def test_optuna_proposals_show_only_train_users_the_handwritten_program_gets_wrong(tmp_path):
    def right_for_t0_and_t1(system, user):
        return "B" if "item t0" in user or "item t1" in user else rewarding_rule(system, user)

    _, _, prompt_engine = optimize("optuna", tmp_path, task_rule=right_for_t0_and_t1)
    shown = "\n".join(r["user"] for r in prompt_engine.requests)
    assert "item t2" in shown and "item t0" not in shown and "item t1" not in shown


class InFlight:
    """A task rule that counts how many requests the engine serves at once."""

    def __init__(self, rule):
        self.rule, self.now, self.most, self.lock = rule, 0, 0, threading.Lock()

    def __call__(self, system, user):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.01)
        try:
            return self.rule(system, user)
        finally:
            with self.lock:
                self.now -= 1


@pytest.mark.parametrize("name", ["copro", "gepa", "mipro"])
def test_dspy_optimizers_score_dev_examples_in_parallel_and_count_every_call(name, tmp_path):
    rule = InFlight(rewarding_rule)
    result, task_engine, _ = optimize(name, tmp_path, task_rule=rule, parallel=2)
    assert rule.most == 2  # two dev examples at once, never more than asked
    assert result.program.digest.signature.instructions == NEW_Q
    assert result.usage["task"]["calls"] == len(task_engine.requests)
