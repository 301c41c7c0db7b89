"""experiments/cold_start_counts.py on a small LaMP-7 folder: cold-start users, lengths and what the option adds."""

import json
from pathlib import Path

import pytest
from _scripts import experiment_script

from guided_profile.runs import DataSource
from guided_profile.tasks import get_task

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def counts():
    with experiment_script("cold_start_counts") as module:
        yield module


def lamp_folder(tmp_path: Path) -> Path:
    """Twelve users with 1..12 tweets of 20 characters each, and one user with none."""
    prefix = "Paraphrase the following tweet without any explanation before or after it: "
    questions = [{"id": str(i), "input": prefix + f"tweet {i}",
                  "profile": [{"id": f"{i}-{j}", "text": f"{'x' * 14} {j:05d}"} for j in range(i)]} for i in range(13)]
    (tmp_path / "x_questions.json").write_text(json.dumps(questions))
    (tmp_path / "x_outputs.json").write_text(json.dumps({"golds": [{"id": q["id"], "output": "gold"}
                                                                   for q in questions]}))
    return tmp_path


def source(task, folder: Path) -> DataSource:
    examples, stats = task.load(folder)
    return DataSource(folder, "test:lamp", "0" * 64, examples, stats)


def totals(result: dict, key: str) -> int:
    return sum(result["splits"][split][key] for split in SPLITS)


def test_empty_histories_are_cold_start_only_with_the_option(counts, tmp_path):
    folder = lamp_folder(tmp_path)
    plain = counts.variant_counts(get_task("paraphrase", max_history_chars=130), source(get_task("paraphrase"), folder),
                                  seed=0)
    task = get_task("paraphrase", max_history_chars=130, include_empty_history=True)
    empty = counts.variant_counts(task, source(task, folder), seed=0)
    assert totals(plain, "examples") == 12 and totals(plain, "cold_start") == 0
    assert totals(empty, "examples") == 13 and totals(empty, "cold_start") == 1 == totals(empty, "empty_history")
    # Each tweet costs its 20 characters plus 6 (numbering, newline): 130 hold five, so the 6..12-tweet users are cut.
    assert totals(plain, "over_max_history_chars") == 7
    assert totals(plain, "at_most_4_items") == 4 and totals(plain, "at_most_8_items") == 8
    lines = counts.verdict(plain, empty | {"same_first_test": False})
    assert lines[0].startswith("**Under the defaults: 0 cold-start users**")
    assert "adds 1 examples with an empty history" in lines[1] and "no longer the same users" in lines[1]


def test_spread_takes_an_observed_p90(counts):
    assert counts.spread(list(range(1, 11))) == {"min": 1, "median": 5.5, "p90": 9, "max": 10}
    assert counts.spread([]) is None
