"""Tweet paraphrasing (LaMP-7): the loader, honest errors, the prompts of every method, scores and a CLI run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dspy
import pytest
import sacrebleu

from guided_profile.cli import main
from guided_profile.datasets.example import samples_dir, split_examples
from guided_profile.datasets.lamp import PREFIX, load_lamp7
from guided_profile.errors import DataError
from guided_profile.tasks import get_task

FIXTURE = Path(__file__).parent / "fixtures" / "lamp7"
TASK = get_task("paraphrase")
METRICS = ["rouge1", "rouge2", "meteor", "rougeL", "bleu"]

# What the fixture questions were written to exercise (tests/fixtures/lamp7/mini_questions.json).
EXPECTED_STATS = {
    "questions": 6,
    "built": 3,                   # 100, 101 (an int id), 104
    "no_gold": 1,                 # 102: no entry in mini_outputs.json
    "empty_profile": 1,           # 103
    "empty_input": 1,             # 105: the prefix and nothing after it
    "blank_profile_items": 1,     # 101: one whitespace-only tweet, dropped
    "unprefixed_input": 1,        # 104: another instruction wording, kept whole
    "golds_without_question": 1,  # 999
}


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "lamp7"))


# ---------------------------------------------------------------------------------------------- loading


def test_fixture_builds_and_counts_every_skip():
    examples, stats = load_lamp7(FIXTURE)
    assert stats == EXPECTED_STATS
    assert [e.example_id for e in examples] == ["100", "101", "104"]
    first = examples[0]
    assert first.user_id == "100"  # one user per question
    assert first.query == "I am very excited about the concert tonight."
    assert first.history == ("cant wait for the weekend!!!", "new shoes came today :)", "ugh mondays...")
    assert first.gold == "sooo excited for the concert tonight!!!"
    assert examples[1].history == ("Train delayed. Again.", "Coffee first, then emails.")
    assert examples[2].query == "Rewrite this tweet: My cat knocked over my coffee."


def test_questions_file_can_be_named_directly():
    assert load_lamp7(FIXTURE / "mini_questions.json") == load_lamp7(FIXTURE)


def test_question_text_is_lamps_own_input(tweet):
    assert TASK.question_text(tweet) == f"{PREFIX} I am very hungry."
    assert TASK.inputs(tweet)["history"] == "1. omg the bus was late AGAIN\n2. sooo hungry lol"


def test_sample_has_users_in_every_split():
    examples, stats = TASK.load(samples_dir() / TASK.sample_subdir)
    assert stats["built"] == len(examples) >= 10
    for split in ("train", "dev", "test"):
        assert split_examples(examples, split)


@pytest.mark.parametrize(("name", "content", "pattern"), [
    ("mini_questions.json", '[{"id": "1", "input": "x",\n "profile": [}]', r"mini_questions\.json.*line 2"),
    ("mini_outputs.json", '{"task": "LaMP_7", "golds": {"id": "1"}}', r"mini_outputs\.json.*golds"),
    ("mini_questions.json", '[{"id": "1", "profile": []}]', r"mini_questions\.json, record '1'.*'input'"),
    ("mini_questions.json", '[{"id": "1", "input": "x"}]', r"record '1'.*missing field 'profile'"),
    ("mini_questions.json", '[{"id": "1", "input": "x", "profile": "a"}]', r"record '1'.*'profile' is str, not a list"),
    ("mini_questions.json", '[{"id": "1", "input": "x", "profile": [{"id": "2"}]}]',
     r"record '1'.*profile item 0"),
    ("mini_questions.json", '[{"id": "1", "input": "x", "profile": []}, {"id": 1, "input": "y", "profile": []}]',
     r"record '1'.*twice"),
    ("mini_questions.json", '[{"input": "x", "profile": []}]', r"question 0.*'id'"),
    ("mini_questions.json", '{"id": "1"}', r"mini_questions\.json.*JSON list"),
])
def test_malformed_files_are_data_errors_naming_file_and_record(tmp_path, name, content, pattern):
    folder = _copy(tmp_path)
    (folder / name).write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_lamp7(folder)


def test_non_utf8_line_is_named(tmp_path):
    folder = _copy(tmp_path)
    data = (folder / "mini_questions.json").read_bytes()
    (folder / "mini_questions.json").write_bytes(data.replace(b"reading all afternoon", b"r\xe9ading", 1))
    with pytest.raises(DataError, match=r"mini_questions\.json: line 7: not UTF-8"):
        load_lamp7(folder)


def test_missing_or_ambiguous_files(tmp_path):
    folder = _copy(tmp_path)
    (folder / "mini_outputs.json").unlink()
    with pytest.raises(DataError, match=r"mini_questions\.json.*no gold file mini_outputs\.json"):
        load_lamp7(folder)
    shutil.copy(FIXTURE / "mini_questions.json", folder / "train_questions.json")
    with pytest.raises(DataError, match="several LaMP splits"):
        load_lamp7(folder)
    with pytest.raises(DataError, match="X_questions.json"):
        load_lamp7(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="LaMP layout"):
        load_lamp7(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------- scoring


def test_score_and_summary_follow_figure_3(tweet):
    perfect = TASK.score(tweet, "  sooo hungry rn lol ")
    # METEOR of an exact 4-token match: one chunk of 4 matches, penalty 0.5 * (1/4)^3
    assert {k: perfect[k] for k in METRICS} == pytest.approx(
        {"rouge1": 1.0, "rouge2": 1.0, "meteor": 1 - 0.5 * (1 / 4) ** 3, "rougeL": 1.0, "bleu": 100.0})
    replies = ["sooo hungry rn lol", "I am very hungry.", ""]
    scores = [TASK.score(tweet, r) for r in replies]
    assert scores[0]["meteor"] > scores[1]["meteor"] > scores[2]["meteor"] == 0.0
    row = TASK.summarize(scores)
    assert list(row) == [*METRICS, "n"] and row["n"] == 3
    assert row["meteor"] == pytest.approx(sum(s["meteor"] for s in scores) / 3)
    corpus = sacrebleu.corpus_bleu(replies, [[tweet.gold] * 3]).score
    assert row["bleu"] == pytest.approx(corpus)  # corpus BLEU, not the mean of sentence BLEU
    assert row["bleu"] != pytest.approx(sum(s["bleu"] for s in scores) / 3)
    assert TASK.metric(tweet, "sooo hungry rn lol") == perfect["meteor"]
    assert TASK.summarize([]) == {**dict.fromkeys(METRICS), "n": 0}


# ---------------------------------------------------------------------------------------------- CLI


def test_fake_lm_run_through_the_command_line(tmp_path):
    methods = "dg-no-pc,dg-pc,pg,gpg"
    code = main(["run", "--task", "paraphrase", "--lm", "fake", "--data", "sample", "--split", "all",
                 "--methods", methods, "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    examples, _ = TASK.load(samples_dir() / TASK.sample_subdir)
    assert len(records) == 4 * len(examples) and all(r["error"] is None for r in records)
    assert all(list(r["metrics"])[:5] == METRICS for r in records)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["build_stats"]["built"] == len(examples)
    for method in methods.split(","):
        row = summary["methods"][method]
        assert list(row)[:6] == [*METRICS, "n"] and row["n"] == len(examples)
        assert all(0 <= row[k] <= 1 for k in METRICS[:4]) and 0 <= row["bleu"] <= 100
    header = "| method | rouge1 | rouge2 | meteor | rougeL | bleu | meteor 95% CI |"
    assert header in (tmp_path / "table.md").read_text()


def test_gepa_feedback_says_when_the_reply_copies_the_input_tweet(tweet):
    from guided_profile.optimizers.metric import TaskMetric

    metric = TaskMetric(get_task("paraphrase"), [tweet])
    gold = dspy.Example(example_id="7")
    copied = metric.gepa(gold, dspy.Prediction(answer="  I am very  hungry. "), None, "respond.predict", None)
    assert "repeats the neutral input tweet" in copied.feedback and "sooo hungry rn lol" in copied.feedback
    rewritten = metric.gepa(gold, dspy.Prediction(answer="im sooo hungry"), None, "respond.predict", None)
    assert "repeats" not in rewritten.feedback and "im sooo hungry" in rewritten.feedback
