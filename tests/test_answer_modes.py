"""Choice scoring: rotation averaging, mapping back through rotations, and the fallback path."""

import re

import dspy
import pytest

from guided_profile.datasets.example import samples_dir
from guided_profile.errors import ConfigError
from guided_profile.lm.fake import FakeEngine
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.answer import letter_probabilities
from guided_profile.tasks import get_task

TASK = get_task("preference")
TASK_SAMPLE = samples_dir() / TASK.sample_subdir


def shown_options(user: str) -> list[str]:
    block = user.split("Options (one per line, each with its letter):\n", 1)[1].split("\n\n", 1)[0]
    return [re.sub(r"^[A-D]\. ", "", line) for line in block.splitlines()]


def run(rule, example, method="dg-pc", rotations=4):
    engine = FakeEngine(rule)
    lm = dspy.LM("fake/scripted", engine=engine, cache=False)
    program = build_program(method, TASK, answer_mode="score", rotations=rotations)
    with dspy.context(lm=lm, adapter=PersonalAdapter()):
        return program(**TASK.inputs(example)), engine.requests


def position_bias(system, user):
    return {"A": -2.0, "B": -0.1, "C": -2.0, "D": -2.0}


def test_pure_position_bias_scores_every_option_equally_and_ties_go_to_the_first(example):
    prediction, requests = run(position_bias, example)
    assert len(requests) == 4 and all(r["logprobs"] for r in requests)
    assert len(set(prediction.choice_probs)) == 1
    assert prediction.answer == "A" and prediction.answer_path == "logprobs"


def test_plain_scoring_follows_the_position_bias(example):
    prediction, requests = run(position_bias, example, rotations=1)
    assert len(requests) == 1 and prediction.answer == "B"


def test_content_preference_maps_back_through_rotations(example):
    def likes_pipettes(system, user):
        position = shown_options(user).index("Pipette tips 200 ul")
        return {letter: (-0.05 if i == position else -3.0) for i, letter in enumerate("ABCD")}

    prediction, requests = run(likes_pipettes, example)
    orders = [shown_options(r["user"]) for r in requests]
    assert orders[0] == list(example.options)
    assert orders[1] == list(example.options[1:] + example.options[:1])  # rotation k starts at option k
    assert {o.index("Pipette tips 200 ul") for o in orders} == {0, 1, 2, 3}  # seen once in every position
    assert prediction.answer == "B" == example.gold
    assert prediction.choice_probs[1] > 0.8
    assert TASK.score(example, prediction.answer)["outcome"] == "correct"


@pytest.mark.parametrize(("reply", "label"), [("C) Garden hose", "C"), ("(B)", "B"), ("D", "D"), ("Answer: C", "C"),
                                              ("Based on the", None), ("A pair of", None)])
def test_no_logprobs_falls_back_to_generating_one_letter(example, reply, label):
    prediction, requests = run(lambda s, u: reply, example)
    assert prediction.answer_path == "fallback-generate"
    assert TASK.parse_choice(example, prediction.answer)[0] == label
    assert len(requests) == 2  # the scoring attempt, then one generation


def test_gpg_in_score_mode_generates_guidance_and_profile_then_scores(example):
    def rule(system, user):
        if "Options (" in user:
            return position_bias(system, user)
        return "a guidance or a profile"

    prediction, requests = run(rule, example, method="gpg")
    assert len(requests) == 2 + 4
    assert [r["logprobs"] for r in requests] == [False, False, True, True, True, True]
    assert prediction.profile == "a guidance or a profile" and prediction.answer == "A"


def test_letter_probabilities_renormalise_over_letters():
    logprobs = {"content": [{"top_logprobs": [{"token": " B", "logprob": -0.1}, {"token": "The", "logprob": -1.0},
                                              {"token": "A", "logprob": -2.0}]}]}
    probs = letter_probabilities(logprobs, 4)
    assert probs[2] == probs[3] == 0.0 and abs(sum(probs) - 1) < 1e-9 and probs[1] > probs[0]
    assert letter_probabilities({"content": [{"top_logprobs": [{"token": "Hi", "logprob": 0.0}]}]}, 4) == [0.0] * 4
    assert letter_probabilities(None, 4) is None and letter_probabilities({"content": []}, 4) is None


@pytest.mark.parametrize("seed", range(20))
def test_any_pure_position_bias_is_an_exact_tie(example, seed):
    import random

    rng = random.Random(seed)
    bias = {letter: -rng.uniform(0.01, 5) for letter in "ABCD"}
    prediction, _ = run(lambda s, u: bias, example)
    assert len(set(prediction.choice_probs)) == 1 and prediction.answer == "A"


def test_a_rotation_without_any_letter_counts_zero_for_every_option(example):
    calls = []

    def rule(system, user):
        calls.append(1)
        return {"The": -0.1} if len(calls) == 2 else position_bias(system, user)

    prediction, requests = run(rule, example)
    assert len(requests) == 4 and prediction.answer_path == "logprobs"
    assert prediction.rotations_without_letter == 1 and abs(sum(prediction.choice_probs) - 0.75) < 1e-3


def test_no_letter_in_any_rotation_is_no_answer_not_option_a(example):
    prediction, requests = run(lambda s, u: {"The": -0.1, "I": -1.2}, example)
    assert len(requests) == 4 and prediction.rotations_without_letter == 4
    assert prediction.answer == "" and TASK.score(example, prediction.answer)["outcome"] == "unparseable"


def test_score_mode_needs_options():
    class NoOptions(type(TASK)):
        has_options = False

    with pytest.raises(ConfigError, match="has no options to score"):
        build_program("gpg", NoOptions(), answer_mode="score")
    with pytest.raises(ConfigError, match="unknown answer mode 'guess'"):
        build_program("gpg", TASK, answer_mode="guess")


def test_the_run_summary_says_which_answer_path_was_taken(tmp_path):
    from guided_profile.evaluation import RunFolder, evaluate

    engine = FakeEngine(lambda s, u: "B")  # no log-probabilities: every answer takes the fallback
    lm = dspy.LM("fake/scripted", engine=engine, cache=False)
    run = RunFolder.open(tmp_path, {"task": "preference", "methods": ["dg-pc"]})
    example = TASK.load(TASK_SAMPLE)[0][0]
    summary = evaluate({"dg-pc": build_program("dg-pc", TASK, answer_mode="score")}, TASK, [example], lm, run)
    assert summary["dg-pc"]["answer_paths"] == {"fallback-generate": 1}


def test_the_gold_margin_is_above_zero_exactly_when_the_gold_letter_wins():
    from guided_profile.tasks.base import gold_margin, gold_probability

    probs = [0.25, 0.29, 0.23, 0.23]
    assert gold_margin(probs, "B") == pytest.approx(0.04) and gold_probability(probs, "B") == 0.29
    assert gold_margin(probs, "C") == pytest.approx(-0.06)  # a near-uniform miss: the probability alone says 0.23
    assert gold_margin([0.5, 0.5], "A") == 0.0  # a tie is no win
