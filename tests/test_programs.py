"""What each method sends to the model, for every switch of the final step, and save/load."""

import json

import dspy
import pytest

from guided_profile.errors import ConfigError
from guided_profile.lm.fake import FakeEngine
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.methods import ablation_switches, canonical
from guided_profile.programs.modules import GuidedProfile
from guided_profile.tasks import get_task

TASK = get_task("preference")

def run(method, lm, example):
    program = build_program(method, TASK)
    with dspy.context(lm=lm, adapter=PersonalAdapter()):
        prediction = program(**TASK.inputs(example))
    return prediction, lm.engine_impl.requests


def test_digest_prompt_asks_the_guidance_question_and_profile_sees_its_answer(fake_lm, example):
    prediction, requests = run("gpg", fake_lm, example)
    digest, profile, _ = requests
    assert TASK.guidance_question in digest["user"]
    assert prediction.guidance == "tools, lab supplies"  # "guidance:" echo stripped by the adapter
    assert "Guidance (" in profile["user"] and "tools, lab supplies" in profile["user"]
    assert TASK.guided_profile_instruction in profile["user"]


def test_unguided_profile_never_sees_guidance(fake_lm, example):
    _, requests = run("pg", fake_lm, example)
    assert "Guidance (" not in requests[0]["user"]
    assert TASK.profile_instruction in requests[0]["user"]


def test_every_step_starts_with_the_same_history_prefix(fake_lm, example):
    _, requests = run("gpg:pc+g+pp", fake_lm, example)
    history_block = TASK.inputs(example)["history"]
    prefixes = {r["system"] + r["user"][: r["user"].index(history_block) + len(history_block)] for r in requests}
    assert len(prefixes) == 1


def test_ablation_names():
    assert ablation_switches("gpg:pc+pp") == {"include_context": True, "include_guidance": False,
                                              "include_profile": True}
    with pytest.raises(ConfigError, match="uses neither guidance nor profile"):
        ablation_switches("gpg:pc")
    with pytest.raises(ConfigError, match="parts must be some of pc"):
        build_program("gpg:xyz", TASK)
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        build_program("nope", TASK)
    assert canonical("gpg:pp+pc") == canonical("gpg: pc + pp") == "gpg:pc+pp"
    assert canonical("gpg:g+pp+pc") == "gpg:pc+g+pp" and canonical("dg-pc") == "dg-pc"


def test_run_gives_synonyms_one_row(tmp_path, capsys):
    from guided_profile.cli import main

    assert main(["run", "--task", "preference", "--lm", "fake", "--split", "all", "--limit", "1", "--no-progress",
                 "--no-store", "--methods", "gpg:pp+pc,gpg:pc+pp", "--out", str(tmp_path)]) == 0
    assert list(json.loads((tmp_path / "summary.json").read_text())["methods"]) == ["gpg:pc+pp"]


def test_save_load_round_trip_keeps_rewritten_guidance(tmp_path, fake_lm, example):
    program = build_program("gpg", TASK)
    new_question = "Which product families does this person return to most often?"
    program.digest.signature = program.digest.signature.with_instructions(new_question)
    path = tmp_path / "program.json"
    program.save(str(path))
    assert path.read_text().startswith("{")  # DSPy's JSON state, not pickle
    loaded = build_program("gpg", TASK)
    loaded.load(str(path))
    assert loaded.digest.signature.instructions == new_question
    _, requests = run_loaded(loaded, fake_lm, example)
    assert new_question in requests[0]["user"] and TASK.guidance_question not in requests[0]["user"]


def run_loaded(program, lm, example):
    with dspy.context(lm=lm, adapter=PersonalAdapter()):
        return program(**TASK.inputs(example)), lm.engine_impl.requests


def test_adapter_takes_whole_reply():
    adapter = PersonalAdapter()
    signature = build_program("dg-pc", TASK).respond.predict.signature
    assert adapter.parse(signature, "[[ ## answer ## ]]\nB") == {"answer": "B"}
    assert adapter.parse(signature, "Answer: C. Glue") == {"answer": "C. Glue"}
    # narration around the reply (seen with the 1.5B model on dialogue) is dropped; a quote in a reply is kept
    narrated = 'In their voice, consistent with what they have said, they would reply: "That sounds fun!"'
    assert adapter.parse(signature, narrated) == {"answer": "That sounds fun!"}
    assert adapter.parse(signature, 'My mom said: "go to bed"') == {"answer": 'My mom said: "go to bed"'}
    assert adapter.parse(signature, "  ") == {"answer": ""}


def test_an_empty_reply_is_an_unparseable_answer_not_a_failure(example):
    from guided_profile.lm.accounting import usage_of

    lm = dspy.LM("fake/scripted", engine=FakeEngine(lambda s, u: ""), cache=False)
    with dspy.context(lm=lm, adapter=PersonalAdapter()):
        prediction = build_program("dg-pc", TASK)(**TASK.inputs(example))
    assert prediction.answer == "" and usage_of(lm.history).empty_replies == 1
    assert TASK.score(example, prediction.answer)["outcome"] == "unparseable"


@pytest.mark.parametrize("name", ["preference", "paraphrase", "dialogue"])
def test_an_unset_switch_takes_the_tasks_main_gpg_row(name):
    task = get_task(name)
    assert GuidedProfile(task).switches == task.gpg_switches == build_program("gpg", task).switches
    assert GuidedProfile(task, include_guidance=False).switches == task.gpg_switches | {"include_guidance": False}
