"""experiments/objective_check.py on hand-made dev folders: objectives from letter probabilities, agreement."""

import json

import pytest
from _scripts import experiment_script


@pytest.fixture(scope="module")
def check():
    with experiment_script("objective_check") as module:
        yield module


def folder(results, name, probs_by_user, split="dev", sha="d" * 64):
    """A score-mode run of gpg whose user u answered with letter probabilities probs_by_user[u] (gold A)."""
    path = results / name
    path.mkdir(parents=True)
    config = {"split": split, "answer_mode": "score", "data_sha256": sha, "data": "real:x", "seed": 0,
              "lm": {"model": "m"}, "git": {"commit": "c" * 40, "dirty": False}, "version": "0.1.0"}
    (path / "config.json").write_text(json.dumps(config))
    lines = [{"method": "gpg", "example_id": u, "error": None, "gold": "A", "choice_probs": probs,
              "metrics": {"accuracy": float(max(probs) == probs[0] and probs.count(probs[0]) == 1)}}
             for u, probs in probs_by_user.items()]
    (path / "records.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_objectives_are_read_from_the_letter_probabilities(check):
    found = check.objectives([0.25, 0.29, 0.23, 0.23], "B")
    assert found["gold_probability"] == 0.29 and found["gold_margin"] == pytest.approx(0.04)


def test_agreement_counts_the_pairs_an_objective_orders_as_accuracy_does(check, tmp_path):
    results = tmp_path / "results"
    # a: right on both users with a thin margin; b: right on one; c: wrong on both but with high gold mass
    folder(results, "x-dev-preference-a", {"1": [0.26, 0.25, 0.25, 0.24], "2": [0.26, 0.25, 0.25, 0.24]})
    folder(results, "x-dev-preference-b", {"1": [0.40, 0.30, 0.20, 0.10], "2": [0.20, 0.30, 0.25, 0.25]})
    folder(results, "x-dev-preference-c", {"1": [0.45, 0.55, 0.0, 0.0], "2": [0.45, 0.55, 0.0, 0.0]})
    folder(results, "x-dev-preference-other-data", {"1": [1.0, 0, 0, 0], "2": [1.0, 0, 0, 0]}, sha="e" * 64)
    found, _ = check.configurations(results)
    assert sorted(found) == ["x-dev-preference-a:gpg", "x-dev-preference-b:gpg", "x-dev-preference-c:gpg"]
    means = check.config_means(found, ["1", "2"])
    assert check.agreement(means, "gold_margin")[1:] == (3, 3)  # the margin orders a > b > c, as accuracy does
    assert check.agreement(means, "gold_probability")[1:] == (0, 3)  # the probability orders them c > b > a
