"""The Optuna search races configurations on the dev users: a clearly worse one is stopped early, the
scores it paid for stay in the study, and dev examples are scored in parallel."""

import io
import json
import logging
import re

import optuna
import pytest
from optuna.trial import TrialState
from test_optimizers import NEW_Q, TASK, examples, lms

from guided_profile.optimizers import get_optimizer, run_optimizer
from guided_profile.programs import build_program


def handwritten_wins(system, user):
    """Right (B) only with the hand-written question: the proposed NEW_Q is clearly worse."""
    tail = user.rsplit("\n\n", 1)[-1].lower()
    if "reply with only the guidance" in tail:
        return "families-unknown" if NEW_Q in user else "tools"
    if "reply with only the profile" in tail:
        return "a shopper" if "families-unknown" in user else "TOOLS shopper"
    return "B" if "TOOLS" in user else "A"


def handwritten_wins_more_often(system, user):
    """As `handwritten_wins`, but NEW_Q is right for every other dev user too: its scores are not all alike."""
    user_number = re.search(r"item d(\d+)", user)
    if "KNOWN-NONE" in user and user_number and int(user_number.group(1)) % 2 == 0:
        return "B"
    tail = user.rsplit("\n\n", 1)[-1].lower()
    if "reply with only the profile" in tail and "families-unknown" in user:
        return "KNOWN-NONE shopper"
    return handwritten_wins(system, user)


def search(tmp_path, parallel=1, rule=handwritten_wins, **settings):
    task_lm, engine, prompt_lm, _ = lms(rule)
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, parallel=parallel, trials=2, candidates=1, search_switches=False,
                              min_examples=5, **settings)
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(3, "t"),
                           valset=examples(40, "d"), budget=100_000, log=lambda line: None)
    study = optuna.load_study(study_name=result.info["study_name"], storage=f"sqlite:///{tmp_path / 'study.db'}")
    return result, study, engine


def test_a_clearly_worse_candidate_is_stopped_early_and_its_scores_are_kept(tmp_path):
    result, study, _ = search(tmp_path, rule=handwritten_wins_more_often)
    trials = {t.params["guidance"]: t for t in study.get_trials()}
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == 1.0
    worse = trials[1]
    assert worse.state == TrialState.PRUNED and 5 <= worse.user_attrs["pruned_after_examples"] < 40
    seen = json.loads(worse.user_attrs["example_scores"]).values()
    assert 0 < sum(seen) < len(seen)  # right for some users: its mean is no one user's score
    assert worse.user_attrs["mean_so_far"] == pytest.approx(sum(seen) / len(seen), abs=1e-4)
    assert sum(key.startswith("score:g1|") for key in study.user_attrs) == worse.user_attrs["paid_examples"]
    racing = result.info["racing"]
    assert racing == {"trials": 2, "pruned": 1, "dev_examples_scored": 40 + worse.user_attrs["paid_examples"],
                      "full_evaluation": 80, "saved": 40 - worse.user_attrs["paid_examples"],
                      "paid": 40 + worse.user_attrs["paid_examples"]}
    assert result.program.digest.signature.instructions == TASK.guidance_question


def test_without_racing_every_trial_sees_every_dev_user(tmp_path):
    result, study, _ = search(tmp_path, racing=False)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
    assert result.info["racing"]["saved"] == 0


def test_dev_examples_are_scored_in_parallel_with_the_same_scores(tmp_path):
    one, _, engine_one = search(tmp_path / "one", racing=False)
    four, _, engine_four = search(tmp_path / "four", racing=False, parallel=4)
    assert [t["score"] for t in one.info["trials"]] == [t["score"] for t in four.info["trials"]]
    assert sorted(r["user"] for r in engine_one.requests) == sorted(r["user"] for r in engine_four.requests)
    assert one.info["trials"][0]["tokens_per_example"] == four.info["trials"][0]["tokens_per_example"]


def test_a_long_trial_says_how_far_it_is_every_20_dev_examples(tmp_path):
    task_lm, _, prompt_lm, _ = lms(handwritten_wins)
    lines = []
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=lines.append, trials=1, candidates=1, search_switches=False, racing=False)
    run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(3, "t"), valset=examples(45, "d"),
                  budget=100_000, log=lambda line: None)
    moving = [line for line in lines if "dev examples," in line]
    assert moving == ["[optuna] trial 1/1: 20 of 45 dev examples, 1.000 so far",
                      "[optuna] trial 1/1: 40 of 45 dev examples, 1.000 so far"]


def test_an_interrupted_trial_is_one_line_of_optuna_log_without_a_traceback(tmp_path):
    from guided_profile.errors import Interrupted

    task_lm, _, prompt_lm, _ = lms(handwritten_wins)
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, trials=1, candidates=1, search_switches=False, racing=False)

    attempts = optimizer.attempts

    def stopped(program, shown):  # the train users the proposals see are scored; the first dev batch is not
        if any(e.example_id.startswith("d") for e in shown):
            raise Interrupted("SIGTERM", 143)
        return attempts(program, shown)

    optimizer.attempts = stopped
    seen = logging.StreamHandler(io.StringIO())  # what Optuna's own stderr handler prints, formatted alike
    logging.getLogger("optuna").addHandler(seen)
    try:
        with pytest.raises(Interrupted):
            run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(3, "t"),
                          valset=examples(8, "d"), budget=100_000, log=lambda line: None)
    finally:
        logging.getLogger("optuna").removeHandler(seen)
    err = seen.stream.getvalue()
    assert "Trial 0 failed with parameters" in err and "Interrupted('SIGTERM')" in err
    assert "Traceback" not in err
