"""Compiled programs: one JSON file that round-trips every field, and refuses what it should."""

import json
from typing import ClassVar

import dspy
import pytest

from guided_profile.cli import main as cli_main
from guided_profile.errors import ConfigError
from guided_profile.evaluation import RunFolder
from guided_profile.lm.fake import FakeEngine
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.export import _checksum, load_compiled, read_compiled, save_compiled
from guided_profile.provenance import data_sha256
from guided_profile.runs import resolve_data
from guided_profile.tasks import TASKS, ChoiceTask, get_task

TASK = get_task("preference")
NEW_Q = "Which product families does this person buy again and again?"
META = {"optimizer": {"name": "optuna", "settings": {"trials": 3}, "info": {"pool": ["a?", "b?"]}},
        "lm": {"spec": "local", "model": "qwen", "sha256": "ab" * 32, "api_base": None, "context": 8192},
        "data": {"path": "/data/x", "sha256": "cd" * 32, "seed": 0, "split_sizes": {"train": 7, "dev": 3}},
        "scores": {"objective": "accuracy", "train": 0.5, "dev": 0.75},
        "usage": {"calls": 120, "task": {"calls": 110}, "prompt": {"calls": 10}}, "version": "0.1.0"}


def tuned_program(method="gpg:pc+g+pp", **answer):
    program = build_program(method, TASK, **answer)
    program.digest.signature = program.digest.signature.with_instructions(NEW_Q)
    program.digest.demos = [dspy.Example(history="1. a beaker", guidance="lab glass")]
    return program


def test_round_trip_keeps_every_field(tmp_path, example):
    path = tmp_path / "tuned.json"
    program = tuned_program(answer_mode="score", rotations=2)
    written = save_compiled(path, program, TASK, META)
    loaded, payload = load_compiled(path, TASK)
    assert payload == written and json.loads(path.read_text()) == written
    for key, value in META.items():
        assert payload[key] == value
    assert payload["method"] == "gpg:pc+g+pp" and payload["switches"] == program.switches
    assert payload["answer"] == {"answer_mode": "score", "rotations": 2, "prompt_layout": "instruction-last"}
    assert loaded.switches == program.switches and loaded.respond.rotations == 2
    assert loaded.dump_state() == json.loads(json.dumps(program.dump_state()))  # instructions and demos
    assert payload["instructions"]["digest"] == NEW_Q
    engine = FakeEngine(lambda s, u: {"A": -0.1, "B": -2.0, "C": -3.0, "D": -4.0})
    with dspy.context(lm=dspy.LM("fake/x", engine=engine, cache=False), adapter=PersonalAdapter()):
        loaded(**TASK.inputs(example))
    assert NEW_Q in engine.requests[0]["user"] and TASK.guidance_question not in engine.requests[0]["user"]
    assert "lab glass" in engine.requests[0]["user"]  # the demo went along


def test_a_step_model_with_a_key_is_not_written(tmp_path, example):
    path = tmp_path / "p.json"
    program = tuned_program()
    program.digest.lm = dspy.LM("openai/gpt-4o-mini", api_key="sk-test-SECRET", api_base="http://me:pw0rd@gpu:8000/v1")
    save_compiled(path, program, TASK, META)
    text = path.read_text()
    assert "SECRET" not in text and "pw0rd" not in text and "gpt-4o-mini" not in text
    loaded, _ = load_compiled(path, TASK)  # and the file still loads, with no model of its own
    assert loaded.digest.lm is None and loaded.digest.signature.instructions == NEW_Q


@pytest.fixture
def other_task(monkeypatch):
    class OtherChoice(ChoiceTask):
        name = "other-choice"
        description = "a second choice task"
        guidance_question = "What does this person like?"
        profile_instruction = guided_profile_instruction = "Write a profile."
        answer_instruction = "Choose."
        gpg_switches: ClassVar[dict] = {"include_context": True, "include_guidance": False, "include_profile": True}
        data_subdir = sample_subdir = "x"

        def load(self, path):
            return [], {}

    monkeypatch.setitem(TASKS, OtherChoice.name, OtherChoice)
    return OtherChoice()


def test_program_for_another_task_is_refused(tmp_path, other_task):
    path = tmp_path / "p.json"
    save_compiled(path, tuned_program(), TASK, META)
    with pytest.raises(ConfigError, match="compiled for task 'preference', not 'other-choice'"):
        load_compiled(path, other_task)


def _rewrite(path, change, *, keep_checksum=False):
    payload = json.loads(path.read_text())
    change(payload)
    if not keep_checksum:
        payload["checksum"] = _checksum(payload)
    path.write_text(json.dumps(payload))


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_text(p.read_text()[:200]), "not valid JSON"),
    (lambda p: p.write_text("[1, 2]"), "not a compiled guided-profile program"),
    (lambda p: _rewrite(p, lambda d: d["state"]["digest"]["signature"].update(instructions="Say hi."),
                        keep_checksum=True), "changed after it was exported"),
    (lambda p: _rewrite(p, lambda d: d.pop("state")), "missing state"),
    (lambda p: _rewrite(p, lambda d: d.update(method="pg")), "do not fit the pg program"),
    (lambda p: _rewrite(p, lambda d: d["state"].pop("digest")), "saved state has steps"),
    (lambda p: _rewrite(p, lambda d: d["state"]["digest"].update(lm={"model": "openai/x", "api_base": "http://e"})),
     "carries a model configuration"),
    (lambda p: _rewrite(p, lambda d: d["state"]["digest"]["signature"].update(instructions=7)),
     "field state.digest.signature.instructions: input should be a valid string"),
    (lambda p: _rewrite(p, lambda d: d.update(format_version=99)), "format version 99"),
])
def test_broken_or_edited_files_are_refused(tmp_path, damage, message):
    path = tmp_path / "p.json"
    save_compiled(path, tuned_program(), TASK, META)
    damage(path)
    with pytest.raises(ConfigError, match=message):
        load_compiled(path, TASK)


def test_run_accepts_compiled_programs_and_refuses_broken_ones_in_one_line(tmp_path, capsys):
    path = tmp_path / "tuned-gpg.json"
    save_compiled(path, tuned_program(), TASK, META)
    out = tmp_path / "run"
    assert cli_main(["run", "--task", "preference", "--program", str(path), "--methods", "gpg", "--lm", "fake",
                     "--split", "test", "--out", str(out), "--no-progress"]) == 2  # it answers in generate mode
    assert "rerun with --answer-mode generate" in capsys.readouterr().err
    assert cli_main(["run", "--task", "preference", "--program", str(path), "--methods", "gpg", "--lm", "fake",
                     "--split", "test", "--answer-mode", "generate", "--out", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"gpg", "tuned-gpg"}
    assert "tuned-gpg" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["programs"] == {"tuned-gpg": read_compiled(path)["checksum"]}

    # the same name for another file would mix results: refused
    save_compiled(path, build_program("gpg", TASK), TASK, META)
    assert cli_main(["run", "--task", "preference", "--program", str(path), "--lm", "fake", "--split", "test",
                     "--answer-mode", "generate", "--out", str(out), "--no-progress"]) == 2
    assert "other programs named tuned-gpg" in capsys.readouterr().err

    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "guided-profile/compiled-program", "form')
    assert cli_main(["run", "--program", str(broken), "--lm", "fake", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not valid JSON" in err[0]


def test_run_folder_refuses_a_changed_program_of_the_same_name(tmp_path):
    config = {"task": "preference", "split": "test", "seed": 0, "lm": {}, "data": "x", "task_options": {},
              "methods": ["a"], "programs": {"a": "1" * 64}}
    RunFolder.open(tmp_path, config)
    RunFolder.open(tmp_path, config | {"methods": ["b"], "programs": {"b": "2" * 64}})  # another name is fine
    with pytest.raises(ConfigError, match="other programs named a"):
        RunFolder.open(tmp_path, config | {"programs": {"a": "3" * 64}})


def test_data_hash_follows_content(tmp_path):
    (tmp_path / "a.json").write_text("1")
    first = data_sha256(tmp_path)
    assert data_sha256(tmp_path) == first
    (tmp_path / "a.json").write_text("2")
    assert data_sha256(tmp_path) != first


def test_optimize_command_exports_a_program_that_run_accepts(tmp_path, capsys):
    out = tmp_path / "copro-tuned.json"
    assert cli_main(["optimize", "--task", "preference", "--optimizer", "copro", "--option", "breadth=2",
                     "--lm", "fake", "--train-limit", "3", "--dev-limit", "2", "--budget", "200",
                     "--answer-mode", "generate", "--confirm-fraction", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "expected LM calls" in printed and "[copro] trial 1/6" in printed
    payload = read_compiled(out)
    assert payload["task"] == "preference" and payload["method"] == "gpg" and payload["base_method"] == "gpg"
    assert payload["optimizer"]["name"] == "copro" and payload["optimizer"]["settings"]["breadth"] == 2
    assert payload["lm"]["model"] == "scripted-fake" and payload["prompt_lm"] == payload["lm"]
    data = payload["data"]
    assert data["path"] == "sample:amazon_sample"  # named portably, never by this machine's folders
    assert data["sha256"] == data_sha256(resolve_data(TASK, data["path"]))
    assert data["split_sizes"] == {"train": 7, "dev": 3, "test": 2}
    assert data["used"] == {"train": 3, "dev": 2} and len(data["train_ids"]) == 3
    assert set(payload["scores"]) == {"objective", "train", "dev", "dev_on"}
    assert payload["usage"]["calls"] == payload["usage"]["expected_calls"] <= 200  # COPRO's plan is exact
    assert payload["handwritten_instructions"]["digest"] == TASK.guidance_question
    assert cli_main(["run", "--program", str(out), "--lm", "fake", "--split", "test", "--out", str(tmp_path / "r"),
                     "--answer-mode", "generate", "--no-progress"]) == 0
    assert "copro-tuned" in capsys.readouterr().out
