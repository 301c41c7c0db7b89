"""Compiled programs are untrusted input: every field is checked before anything runs or is printed."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from guided_profile.cli import main as cli_main
from guided_profile.errors import ConfigError
from guided_profile.lm.accounting import Usage
from guided_profile.lm.factory import LMSpec
from guided_profile.optimizers.candidates import Candidate
from guided_profile.optimizers.confirm import ConfirmSettings, Verdict
from guided_profile.programs import build_program
from guided_profile.programs.compiled_schema import (
    CandidateRecord,
    ConfirmSettingsRecord,
    LMIdentity,
    UsageCounts,
    VerdictRecord,
)
from guided_profile.programs.export import _checksum, load_compiled, read_compiled, save_compiled
from guided_profile.runs import optimizer_settings
from guided_profile.tasks import get_task

TASK = get_task("preference")
COMMITTED = Path(__file__).resolve().parents[1] / "experiments" / "results" / "compiled"
META = {"optimizer": {"name": "optuna", "settings": {"name": "optuna", "seed": 0, "trials": 3}},
        "lm": {"spec": "fake", "model": "scripted-fake", "sha256": None, "api_base": None, "context": 8192},
        "scores": {"objective": "accuracy", "train": 0.5, "dev": 0.75}, "usage": {"calls": 12}}


def forged(tmp_path, change, *, version=None):
    """A valid export, changed by `change`, with its checksum made to fit again (a forger can do that)."""
    path = tmp_path / "forged.json"
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", rotations=4), TASK, META)
    payload = json.loads(path.read_text())
    change(payload)
    payload["checksum"] = _checksum(payload)
    path.write_text(json.dumps(payload))
    return path


FORGERIES = {
    "rotations 0": (lambda d: d["answer"].update(rotations=0),
                    "field answer.rotations: input should be greater than or equal to 1 (got int 0)"),
    "rotations as text": (lambda d: d["answer"].update(rotations="4"),
                          "field answer.rotations: input should be a valid integer (got str '4')"),
    "rotations missing in score mode": (lambda d: d["answer"].update(rotations=None),
                                        "field answer: score mode needs rotations"),
    "unknown answer mode": (lambda d: d["answer"].update(answer_mode="vote"),
                            "field answer.answer_mode: input should be 'generate' or 'score' (got str 'vote')"),
    "unknown prompt layout": (lambda d: d["answer"].update(prompt_layout="options-first"),
                              "field answer.prompt_layout: input should be 'instruction-last' or 'options-last'"),
    "instruction not text": (lambda d: d["instructions"].update(digest=["Say", "hi"]),
                             "field instructions.digest: input should be a valid string"),
    "switch not a bool": (lambda d: d["switches"].update(include_profile="yes"),
                          "field switches.include_profile: input should be a valid boolean (got str 'yes')"),
    "api_key at the top": (lambda d: d.update(api_key="sk-planted-secret-123"),
                           "unknown field api_key: no compiled program has it"),
    "api_key beside the model": (lambda d: d["lm"].update(api_key="sk-planted-secret-123"),
                                 "unknown field lm.api_key: no compiled program has it"),
    "a step with a model": (lambda d: d["state"]["digest"].update(lm={"model": "openai/x"}),
                            "field state.digest.lm: the step carries a model configuration"),
    "format version as text": (lambda d: d.update(format_version="1"), "format version '1'; this version reads 1, 2"),
    "negative calls": (lambda d: d["usage"].update(calls=-5), "field usage.calls: input should be greater than"),
    "score as text": (lambda d: d["scores"].update(dev="0.99"), "field scores.dev: input should be a number (got str"),
    "confirm fraction out of range": (
        lambda d: d.update(confirm={"settings": {"fraction": 1.5, "top": 3}, "verdict": None}),
        "field confirm.settings.fraction: input should be less than 1 (got float 1.5)"),
    "a verdict without its means": (
        lambda d: d.update(confirm={"settings": {"fraction": 0.3, "top": 3}, "winner": "finalist 1", "means": {},
                                    "verdict": {"objective": "accuracy", "n": 5, "candidates": 1, "diff": 0.2,
                                                "low": 0.1, "high": 0.3, "p": 0.01, "confirmed": True,
                                                "exported": "candidate", "line": "confirmed"}}),
        "field confirm: the verdict's program 'handwritten' has no mean in `means`"),
    "accuracy of a program never scored": (
        lambda d: d.update(confirm={"settings": {"fraction": 0.3, "top": 3}, "means": {"handwritten": 0.3},
                                    "reported": {"nobody": {"accuracy": 0.5}}}),
        "field confirm: `reported` or `search_ranks` names programs the stage did not score: nobody"),
    "a search rank of a program never scored": (
        lambda d: d.update(confirm={"settings": {"fraction": 0.3, "top": 3}, "means": {"handwritten": 0.3},
                                    "search_ranks": {"handwritten": 0, "nobody": 1}}),
        "field confirm: `reported` or `search_ranks` names programs the stage did not score: nobody"),
    "a negative search rank": (
        lambda d: d.update(confirm={"settings": {"fraction": 0.3, "top": 3}, "means": {"handwritten": 0.3},
                                    "search_ranks": {"handwritten": -1}}),
        "field confirm.search_ranks.handwritten: input should be greater than or equal to 0"),
    "a verdict's accuracy that is not the programs' own": (
        lambda d: d.update(confirm={"settings": {"fraction": 0.3, "top": 3}, "winner": "finalist 1",
                                    "means": {"handwritten": 0.3, "finalist 1": 0.35},
                                    "reported": {"handwritten": {"accuracy": 0.6}, "finalist 1": {"accuracy": 0.4}},
                                    "verdict": {"objective": "gold_probability", "n": 5, "candidates": 1, "diff": 0.05,
                                                "low": 0.01, "high": 0.1, "p": 0.03, "confirmed": True,
                                                "exported": "candidate", "line": "confirmed",
                                                "reported": {"accuracy": [0.9, 0.6]}}}),
        "verdict.reported['accuracy'] is [0.9, 0.6], but `reported` holds [0.4, 0.6]"),
    "setting not a scalar": (lambda d: d["optimizer"]["settings"].update(trials=[8]),
                             "field optimizer.settings.trials: input should be text, a number, true, false or null"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_each_forged_field_is_refused_in_one_line_naming_file_and_field(tmp_path, capsys, name):
    change, message = FORGERIES[name]
    path = forged(tmp_path, change)
    with pytest.raises(ConfigError) as raised:
        load_compiled(path, TASK)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)
    assert cli_main(["run", "--program", str(path), "--lm", "fake", "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "sk-planted" not in err[0]
    assert not (tmp_path / "run" / "records.jsonl").exists()  # nothing ran


def test_the_schema_speaks_before_the_checksum(tmp_path):
    """A forged field is named even when the forger did not fix the checksum."""
    path = forged(tmp_path, lambda d: None)
    payload = json.loads(path.read_text())
    payload["answer"]["rotations"] = 0
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="field answer.rotations"):
        read_compiled(path)


def test_a_setting_the_optimizer_does_not_have_never_reaches_compare_md(tmp_path, capsys):
    path = forged(tmp_path, lambda d: d["optimizer"]["settings"].update(api_key="sk-planted-secret-123"))
    read_compiled(path)  # settings values are plain scalars: only the optimizers know their names
    with pytest.raises(ConfigError, match="field optimizer.settings.api_key: optimizer 'optuna' has no such"):
        read_compiled(path, optimizer_settings())
    out = tmp_path / "cmp"
    assert cli_main(["compare", "--programs", f"handwritten,{path}", "--lm", "fake", "--out", str(out),
                     "--no-progress", "--answer-mode", "score"]) == 2
    assert "optimizer.settings.api_key" in capsys.readouterr().err
    assert not (out / "compare.md").exists()
    other = forged(tmp_path, lambda d: d["optimizer"].update(name="my-own"))
    with pytest.raises(ConfigError, match="field optimizer.name: no optimizer is named 'my-own'"):
        read_compiled(other, optimizer_settings())


@pytest.mark.parametrize("name", ["preference-gepa-1.5b.json", "preference-optuna-1.5b.json"])
def test_committed_version_1_files_still_load_in_todays_shape(tmp_path, name):
    shutil.copy(COMMITTED / name, tmp_path / name)
    assert json.loads((tmp_path / name).read_text())["format_version"] == 1
    program, payload = load_compiled(tmp_path / name, TASK, optimizer_settings())
    assert payload["format_version"] == 2
    assert payload["answer"] == {"answer_mode": "score", "rotations": 4, "prompt_layout": "instruction-last"}
    assert program.respond.rotations == 4
    info = payload["optimizer"]["info"]
    if payload["optimizer"]["name"] == "optuna":
        assert "guidance_pool" not in info and info["guidance_question_pool"][0] == TASK.guidance_question
        assert info["best_trial"]["guidance_question"] == info["guidance_question_pool"][0]


def test_a_version_1_generate_mode_file_loads(tmp_path):
    """Version 1 wrote `rotations: 4` in generate mode too; today's files write null there."""
    path = forged(tmp_path, lambda d: d.update(format_version=1, answer={"answer_mode": "generate", "rotations": 4}))
    program, payload = load_compiled(path, TASK)
    generated = {"answer_mode": "generate", "rotations": None, "prompt_layout": "instruction-last"}
    assert payload["answer"] == generated
    assert not hasattr(program.respond, "rotations")
    save_compiled(tmp_path / "new.json", program, TASK, META)
    assert json.loads((tmp_path / "new.json").read_text())["answer"] == generated


def test_the_schema_follows_the_records_it_mirrors():
    """These parts of a compiled program are written from dataclasses: a new field there must be declared in
    the schema too, or every new export would be refused."""
    assert set(LMIdentity.model_fields) == {f.name for f in dataclasses.fields(LMSpec)}
    assert set(UsageCounts.model_fields) == {f.name for f in dataclasses.fields(Usage)}
    assert set(ConfirmSettingsRecord.model_fields) == {f.name for f in dataclasses.fields(ConfirmSettings)}
    assert set(VerdictRecord.model_fields) == {f.name for f in dataclasses.fields(Verdict)} | {"line"}
    assert set(CandidateRecord.model_fields) == {f.name for f in dataclasses.fields(Candidate)}


RETRIEVAL_FORGERIES = {
    "k 0": ({"retriever": {"name": "bm25", "k1": 1.5, "b": 0.75}, "k": 0, "steps": "all"},
            "field retrieval.k: input should be greater than or equal to 1 (got int 0)"),
    "k as text": ({"retriever": {"name": "bm25"}, "k": "8", "steps": "all"},
                  "field retrieval.k: input should be a valid integer (got str '8')"),
    "unknown steps": ({"retriever": {"name": "bm25"}, "k": 8, "steps": "profile"},
                      "field retrieval.steps: input should be 'all', 'digest' or 'answer'"),
    "unknown retriever": ({"retriever": {"name": "grep"}, "k": 8, "steps": "all"},
                          "field retrieval.retriever: no retriever is named 'grep'"),
    "a setting the retriever lacks": ({"retriever": {"name": "bm25", "api_key": "sk-planted-secret-123"}, "k": 8,
                                       "steps": "all"},
                                      "field retrieval.retriever: retriever 'bm25' has no setting 'api_key'"),
    "where this machine keeps embeddings": ({"retriever": {"name": "dense", "cache_path": "/etc/x"}, "k": 2,
                                             "steps": "all"},
                                            "retriever 'dense' has no setting 'cache_path'"),
    "a setting not a scalar": ({"retriever": {"name": "bm25", "k1": [1.2]}, "k": 8, "steps": "all"},
                               "field retrieval.retriever: setting k1: input should be text, a number"),
    "bm25 without k": ({"retriever": {"name": "bm25"}, "k": None, "steps": "all"},
                       "field retrieval: retriever 'bm25' needs k"),
    "no retriever": ({"k": 8, "steps": "all"}, "missing retrieval.retriever, a required field"),
    "an extra key": ({"retriever": {"name": "bm25"}, "k": 8, "steps": "all", "query": "x"},
                     "unknown field retrieval.query: no compiled program has it"),
}


@pytest.mark.parametrize("name", RETRIEVAL_FORGERIES)
def test_a_forged_retrieval_is_refused_in_one_line(tmp_path, capsys, name):
    value, message = RETRIEVAL_FORGERIES[name]
    path = forged(tmp_path, lambda d: d.update(retrieval=value))
    with pytest.raises(ConfigError) as raised:
        load_compiled(path, TASK)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)
    assert "\n" not in str(raised.value) and "sk-planted" not in str(raised.value)
    assert cli_main(["run", "--program", str(path), "--lm", "fake", "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "sk-planted" not in err[0]


def test_a_retrieving_program_round_trips_and_one_without_has_no_field(tmp_path):
    from guided_profile.programs.retrieved import Retrieval, retrieval_of

    path = tmp_path / "bm25.json"
    retrieval = Retrieval("bm25", k=8, settings={"k1": 1.2}, steps="digest")
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", retrieval=retrieval), TASK, META)
    written = json.loads(path.read_text())["retrieval"]
    assert written == {"retriever": {"name": "bm25", "k1": 1.2, "b": 0.75}, "k": 8, "steps": "digest"}
    program, payload = load_compiled(path, TASK, optimizer_settings())
    assert retrieval_of(program) == retrieval and payload["retrieval"] == written
    save_compiled(tmp_path / "again.json", program, TASK, META)
    assert json.loads((tmp_path / "again.json").read_text())["retrieval"] == written
    plain = forged(tmp_path, lambda d: None)
    assert "retrieval" not in json.loads(plain.read_text())
    assert retrieval_of(load_compiled(plain, TASK)[0]) is None


def test_the_schema_knows_the_retrieval_words():
    from guided_profile.programs import compiled_schema, retrieved

    assert compiled_schema.RETRIEVAL_STEPS == retrieved.STEPS
    assert compiled_schema.WHOLE_HISTORY == retrieved.WHOLE_HISTORY
