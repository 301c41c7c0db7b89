"""Personalized dialogue: ParlAI and JSON loaders, honest errors, the similarity filter, embedding scores
with profile quality, the prompts of every method, and a CLI run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from guided_profile.cli import main
from guided_profile.datasets.dialogue import load_dialogues, load_parlai
from guided_profile.datasets.example import Example, samples_dir, split_examples
from guided_profile.errors import ConfigError, DataError
from guided_profile.report import summary_rows
from guided_profile.tasks import get_task

FIXTURES = Path(__file__).parent / "fixtures"
PARLAI = FIXTURES / "personachat" / "mini.txt"
JSONL = FIXTURES / "dialogue_json" / "mini.jsonl"
TASK = get_task("dialogue")
METRICS = ["st", "bs", "profile_quality"]

# What the fixture dialogues were written to exercise (tests/fixtures/personachat/mini.txt).
PARLAI_STATS = {
    "dialogues": 5,
    "built": 2,          # dialogue 0 (with a partner's-persona line), 1 (opens with __SILENCE__)
    "no_gold": 1,        # 4: the last reply is empty
    "no_query": 1,       # 3: the last partner turn is __SILENCE__
    "empty_history": 1,  # 2: a single turn, so no earlier reply
}
JSONL_STATS = {"dialogues": 6, "built": 3, "no_gold": 1, "no_query": 1, "empty_history": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: light on a shared machine


# ---------------------------------------------------------------------------------------------- ParlAI


def test_parlai_one_example_per_dialogue():
    examples, stats = load_dialogues(PARLAI)
    assert stats == PARLAI_STATS
    first, second = examples
    assert first.example_id == "dialogue-0" and first.user_id.startswith("persona-")
    assert first.history == ("great , just back from a walk with my dogs .", "two beagles , they never get tired .")
    assert (first.query, first.gold) == ("do you go far ?", "we hike in the hills every sunday .")
    assert first.meta["persona"] == ("i have two dogs.", "i love hiking.")  # not the partner's "i am a chef."
    assert second.example_id == "dialogue-1" and second.user_id not in ("dialogue-1", first.user_id)
    assert second.history == ("hello , anyone there ?", "i just finished grading papers .")
    assert second.query == "what do you teach ?"


def test_a_persona_played_in_several_dialogues_is_one_user(tmp_path):
    persona = "1 your persona: i have two dogs.\n2 your persona: i love hiking.\n"
    replay = "1 your persona: I love hiking.\n2 your persona: i have two dogs.\n"  # same card, other order
    other = "1 your persona: i am a chef.\n"
    turns = "{n} hi !\tgreat , just back from a walk .\n{m} where ?\tin the hills .\n"
    path = tmp_path / "valid.txt"
    path.write_text("".join(p + turns.format(n=p.count("\n") + 1, m=p.count("\n") + 2)
                            for p in (persona, other, replay)))
    examples, _ = load_dialogues(path)
    assert [e.example_id for e in examples] == ["dialogue-0", "dialogue-1", "dialogue-2"]
    assert examples[0].user_id == examples[2].user_id != examples[1].user_id


def test_persona_never_reaches_the_programs(chat):
    inputs = TASK.inputs(chat)
    assert not any("hiking" in str(v) or "i have two dogs" in str(v) for v in inputs.values())


def test_real_format_sample_has_users_in_every_split():
    examples, stats = TASK.load(samples_dir() / TASK.sample_subdir)
    assert stats["built"] == len(examples) >= 10 and all(e.meta["persona"] for e in examples)
    for split in ("train", "dev", "test"):
        assert split_examples(examples, split)


@pytest.mark.parametrize(("lines", "pattern"), [
    (["1 your persona: a.", "2 hi\tyo", "x no number"], r"mini\.txt: line 3: expected 'N text'"),
    (["1 your persona: a.", "2 hi there without a tab"], r"mini\.txt: line 2: expected 'partner utterance<TAB>"),
    (["1 your persona: a.", "2 hi\tyo", "4 skipped\tturn"], r"line 3: turn number 4 follows 2"),
    (["3 your persona: a.", "4 hi\tyo"], r"mini\.txt: line 1: the file starts at turn 3, not 1"),
])
def test_malformed_parlai_lines_are_named(tmp_path, lines, pattern):
    path = tmp_path / "mini.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=pattern):
        load_parlai(path)


def test_non_utf8_parlai_line_is_named(tmp_path):
    path = tmp_path / "mini.txt"
    path.write_bytes(PARLAI.read_bytes().replace(b"two beagles", b"two b\xeaagles", 1))
    with pytest.raises(DataError, match=r"mini\.txt: line 5: not UTF-8"):
        load_dialogues(path)


# ---------------------------------------------------------------------------------------------- JSON


def test_json_lines_records_in_per_chat_shape():
    examples, stats = load_dialogues(JSONL)
    assert stats == JSONL_STATS
    assert [(e.example_id, e.user_id) for e in examples] == [
        ("dialogue-0", "redditor_a"), ("a-2", "redditor_a"), ("dialogue-5", "dialogue-5")]
    assert examples[0].history == ("I switched to a standing desk last year.",
                                   "My knees thank me for cycling instead of running.")
    assert "persona" not in examples[0].meta  # Reddit data has no true persona: profile quality stays unknown
    assert examples[2].history == ("I collect stamps.",) and examples[2].meta["persona"] == ("i collect stamps.",)


def test_json_list_and_folder_detection(tmp_path):
    examples, stats = load_dialogues(FIXTURES / "dialogue_json" / "mini.json")
    assert stats["built"] == 2 and examples[0].user_id == "u1" and examples[1].user_id == "dialogue-1"
    shutil.copy(PARLAI, tmp_path / "valid.txt")
    assert load_dialogues(tmp_path) == load_dialogues(PARLAI)  # a folder with one file: format from its name
    shutil.copy(JSONL, tmp_path / "more.jsonl")
    with pytest.raises(DataError, match="exactly one dialogue file"):
        load_dialogues(tmp_path)


@pytest.mark.parametrize(("content", "pattern"), [
    ('{"history": ["a"], "query": "q", "response": "r"}\n{"history": ["a"], "query": "q",\n',
     r"bad\.jsonl: line 2: invalid JSON"),
    ('{"history": "not a list", "query": "q", "response": "r"}\n', r"line 1: field 'history' should be a list"),
    ('{"history": ["a"], "query": 3, "response": "r"}\n', r"record 'dialogue-0'.*'query' should be a string"),
    ('{"id": 1, "history": ["a"], "query": "q", "response": "r"}\n{"id": "1", "history": ["b"], "query": "q", '
     '"response": "r"}\n', r"line 2: id appears twice"),
    ('["just a string"]', r"record 0: expected an object"),
    ('{"id": 7, "history": ["a"], "query": "q", "reply": "r"}\n', r"record '7'.*line 1: no field 'response' \(fields: "
     r"'id', 'history', 'query', 'reply'\)"),
    ('{\n  "history": ["a"],\n  "query": "q",\n  "response": "r"\n}\n', r"holds one JSON object: expected a JSON list"),
    ("[" * 100_000 + "]" * 100_000, r"invalid JSON at line 1, column 1: nested too deeply to read"),
    ('{"history": ["a"], "query": "q", "response": "r"}\n' + "[" * 100_000 + "\n", r"line 2: invalid JSON"),
])
def test_malformed_json_is_a_data_error(tmp_path, content, pattern):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_dialogues(path)


def test_non_utf8_json_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(JSONL.read_bytes().replace(b"Padded shorts", b"P\xe4dded shorts", 1))
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2: not UTF-8"):
        load_dialogues(path)


# ---------------------------------------------------------------------------------------------- filter


def test_similarity_filter_keeps_replies_between_thresholds(tmp_path):
    records = [
        {"history": ["i love hiking.", "my dog is a beagle."], "query": "q",
         "response": "i walk my dog every morning ."},
        {"history": ["the stock market fell."], "query": "q", "response": "i enjoy long walks with my dogs ."},
        {"history": ["i walk my dog every morning ."], "query": "q", "response": "i walk my dog every morning ."},
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(records))
    examples, stats = get_task("dialogue", similarity_filter=True).load(path)
    assert [e.example_id for e in examples] == ["dialogue-0"]
    assert stats["similarity_too_low"] == 1 and stats["similarity_too_high"] == 1 and stats["built"] == 1
    unfiltered, plain = TASK.load(path)
    assert len(unfiltered) == 3 and "similarity_too_low" not in plain
    wide = get_task("dialogue", similarity_filter=True, similarity_low=-1, similarity_high=1.01)
    assert len(wide.load(path)[0]) == 3


def test_filter_options_are_checked():
    with pytest.raises(ConfigError, match="similarity_filter must be true or false"):
        get_task("dialogue", similarity_filter="yes")
    with pytest.raises(ConfigError, match=r"similarity_low \(0.7\) must be a number <= similarity_high"):
        get_task("dialogue", similarity_low=0.7, similarity_high=0.6)


# ---------------------------------------------------------------------------------------------- scoring


def test_scores_reply_and_profile(chat):
    same = TASK.score(chat, chat.gold, profile=None)
    assert list(same) == METRICS
    assert same["st"] == pytest.approx(1.0, abs=1e-4) and same["bs"] == pytest.approx(1.0, abs=1e-4)
    assert same["profile_quality"] is None  # no profile written: not judged
    related = TASK.score(chat, "we walk up the hills most sundays .", profile="I have two beagles and love hiking.")
    unrelated = TASK.score(chat, "the invoice is attached below .", profile="An accountant who likes spreadsheets.")
    assert related["st"] > unrelated["st"] and related["bs"] > unrelated["bs"]
    assert related["profile_quality"] > unrelated["profile_quality"] + 0.2
    assert TASK.score(chat, "", profile="")["st"] == 0.0 and TASK.score(chat, "", profile="")["profile_quality"] == 0
    no_persona = Example("x", "x", ("a",), "q", "r")
    assert TASK.score(no_persona, "r", profile="a profile")["profile_quality"] is None


def test_summary_averages_profile_quality_only_where_it_exists():
    scores = [{"st": 0.5, "bs": 0.8, "profile_quality": 0.3}, {"st": 0.7, "bs": 0.6, "profile_quality": None},
              {"st": 0.9, "bs": 0.7, "profile_quality": 0.5}]
    row = TASK.summarize(scores)
    assert list(row) == ["st", "bs", "profile_quality", "profile_quality_n", "n"]
    assert row == pytest.approx({"st": 0.7, "bs": 0.7, "profile_quality": 0.4, "profile_quality_n": 2, "n": 3})
    none = TASK.summarize([{"st": 0.5, "bs": 0.5, "profile_quality": None}])
    assert none["profile_quality"] is None and none["profile_quality_n"] == 0
    summary = none | {"ci95": None, "failed": 0, "history_cut": 0, "seconds_per_example": 0.1,
                      "per_example": {"calls": 1.0, "prompt_tokens": 1.0, "cached_prompt_tokens": 0.0,
                                      "completion_tokens": 1.0}}
    header, rows = summary_rows(TASK, {"dg-pc": summary})
    assert rows[0][header.index("profile_quality")] == "-" and rows[0][header.index("st")] == "0.500"


# ---------------------------------------------------------------------------------------------- CLI


def test_fake_lm_run_through_the_command_line(tmp_path, capsys):
    code = main(["run", "--task", "dialogue", "--lm", "fake", "--data", "sample", "--split", "all", "--limit", "4",
                 "--methods", "dg-pc,gpg", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(r["error"] is None for r in records)
    assert all(list(r["metrics"]) == METRICS for r in records)
    by_method = {m: [r for r in records if r["method"] == m] for m in ("dg-pc", "gpg")}
    assert all(r["metrics"]["profile_quality"] is None for r in by_method["dg-pc"])
    assert all(isinstance(r["metrics"]["profile_quality"], float) for r in by_method["gpg"])
    summary = json.loads((tmp_path / "summary.json").read_text())["methods"]
    for row in summary.values():
        assert list(row)[:5] == ["st", "bs", "profile_quality", "profile_quality_n", "n"] and row["n"] == 4
    assert summary["dg-pc"]["profile_quality"] is None and summary["gpg"]["profile_quality_n"] == 4
    table = (tmp_path / "table.md").read_text()
    assert "| method | st | bs | profile_quality | profile_quality_n | st 95% CI |" in table
    assert "| dg-pc | " in table and " | - | 0 | " in table


def test_a_device_is_not_called_missing():
    with pytest.raises(DataError, match="/dev/null: not a regular file or a folder"):
        load_dialogues(Path("/dev/null"))
