"""The profile step's form (`--profile-step`): a prompt of its own, or the digestion's conversation continued.

`continued` sends [system, the digestion's user message, its reply, the profile instruction], so a prefix cache
reuses everything through the digestion's reply; `separate` (the default) is the prompt every run made before
the setting existed.  Only GPG's profile step changes: the final step never sees the digestion's conversation.
"""

import json

import dspy
import pytest

from guided_profile.errors import ConfigError
from guided_profile.lm.fake import FakeEngine
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.adapter import PREAMBLE
from guided_profile.programs.conversation import CONTINUED, DEFAULT_PROFILE_STEP, SEPARATE
from guided_profile.programs.stored import using_store
from guided_profile.store import ProfileStore
from guided_profile.tasks import get_task

TASK = get_task("preference")
GUIDANCE = "tools, lab supplies"  # the fake model's digestion, as the adapter parses it
PROFILE_REQUEST = "Reply with only the profile (a short profile of the person)."
DIGEST_REQUEST = "Reply with only the guidance (a short answer to the question)."


def calls(example, profile_step=DEFAULT_PROFILE_STEP, method="gpg", answer_mode="generate", store=None,
          program=None):
    """The messages of every call the program makes, in order."""
    lm = dspy.LM("fake/scripted", engine=FakeEngine(), cache=False)
    program = program or build_program(method, TASK, answer_mode=answer_mode, profile_step=profile_step)
    with dspy.context(lm=lm, adapter=PersonalAdapter()), using_store(store, example.user_id):
        program(**TASK.inputs(example))
    return [entry["messages"] for entry in lm.history]


def history_block(example):
    return f"History (the person's past items, oldest first):\n{TASK.inputs(example)['history']}"


def test_the_default_is_the_separate_prompt_runs_made_before_the_setting(example):
    assert DEFAULT_PROFILE_STEP == SEPARATE
    assert build_program("gpg", TASK).profile_step == SEPARATE
    digest, profile, _ = calls(example)
    assert profile == [
        {"role": "system", "content": PREAMBLE},
        {"role": "user", "content": f"{history_block(example)}\n\n"
                                    f"Guidance (what the person's history shows, in brief):\n{GUIDANCE}\n\n"
                                    f"{TASK.guided_profile_instruction}\n{PROFILE_REQUEST}"}]
    assert digest[1]["content"] == f"{history_block(example)}\n\n{TASK.guidance_question}\n{DIGEST_REQUEST}"


def test_continued_profile_step_is_the_digestions_conversation_and_the_profile_instruction(example):
    digest, profile, _ = calls(example, CONTINUED)
    assert len(digest) == 2 and digest == calls(example)[0]  # the digestion itself does not change
    assert profile == [*digest, {"role": "assistant", "content": GUIDANCE},
                       {"role": "user", "content": f"{TASK.guided_profile_instruction}\n{PROFILE_REQUEST}"}]


@pytest.mark.parametrize("answer_mode", ["generate", "score"])
def test_the_answer_step_never_sees_the_digestions_conversation(example, answer_mode):
    separate = calls(example, SEPARATE, answer_mode=answer_mode)
    continued = calls(example, CONTINUED, answer_mode=answer_mode)
    assert len(separate) == len(continued) > 2
    assert continued[2:] == separate[2:]  # the answer step (every rotation in score mode) is unchanged
    assert all(len(messages) == 2 for messages in continued[2:])


def test_pg_has_no_digestion_to_continue(example):
    assert calls(example, CONTINUED, method="pg") == calls(example, SEPARATE, method="pg")


def test_the_prior_turn_is_formatted_from_the_digest_step_as_an_optimizer_left_it(example):
    from guided_profile.optimizers._guidance_shape import set_instruction

    program = build_program("gpg", TASK, profile_step=CONTINUED)
    set_instruction(program, "digest", "Which brands does the person come back to?")
    digest, profile, _ = calls(example, program=program)
    assert "Which brands does the person come back to?" in profile[1]["content"]
    assert TASK.guidance_question not in profile[1]["content"]
    assert profile[:2] == digest


def test_a_stored_digestion_is_the_prior_turn_and_the_two_forms_keep_separate_profiles(example, tmp_path):
    store = ProfileStore(tmp_path / "profiles.sqlite")
    assert len(calls(example, SEPARATE, store=store)) == 3  # digestion and separate profile stored
    digest_user = calls(example, SEPARATE)[0][1]
    continued = calls(example, CONTINUED, store=store)
    assert len(continued) == 2  # the digestion from the store; the continued profile is not the separate one
    assert continued[0] == [{"role": "system", "content": PREAMBLE}, digest_user,
                            {"role": "assistant", "content": GUIDANCE},
                            {"role": "user", "content": f"{TASK.guided_profile_instruction}\n{PROFILE_REQUEST}"}]
    assert len(calls(example, CONTINUED, store=store)) == 1  # now both stored: only the answer is asked
    assert len(calls(example, SEPARATE, store=store)) == 1  # and the separate profile is still its own


def test_a_continued_profile_is_stored_per_guidance_question(example, tmp_path):
    from guided_profile.optimizers._guidance_shape import set_instruction

    store = ProfileStore(tmp_path / "profiles.sqlite")
    calls(example, CONTINUED, store=store)
    program = build_program("gpg", TASK, profile_step=CONTINUED)
    set_instruction(program, "digest", "Which brands does the person come back to?")
    assert len(calls(example, store=store, program=program)) == 3  # another question: another prompt, another row


def test_a_continued_profile_step_refuses_demos_it_could_not_show(example):
    program = build_program("gpg", TASK, profile_step=CONTINUED)
    program.write_profile.demos = [dspy.Example(history="h", guidance="g", profile="p")]
    with pytest.raises(ConfigError, match="--profile-step separate"):
        calls(example, program=program)


def test_an_unknown_profile_step_is_refused():
    with pytest.raises(ConfigError, match="unknown profile step 'merged'"):
        build_program("gpg", TASK, profile_step="merged")


def test_settings_carry_the_profile_step_into_programs_and_folder_names():
    from guided_profile.runs import RunSettings

    default = RunSettings.resolve("preference", lm="fake", retriever="recent")  # no retrieval: names as before
    continued = RunSettings.resolve("preference", lm="fake", retriever="recent", profile_step=CONTINUED)
    assert default.program_options == default.answer | {"profile_step": SEPARATE}
    assert continued.program_options["profile_step"] == CONTINUED
    assert default.default_out().name == "preference-test-sample-fake-score4-seed0"  # as before the setting
    assert continued.default_out().name == "preference-test-sample-fake-score4-profile-continued-seed0"
    with pytest.raises(ConfigError, match="unknown profile step"):
        RunSettings.resolve("preference", profile_step="merged")


def run_command(tmp_path, *extra):
    from guided_profile.cli import main

    return main(["run", "--task", "preference", "--lm", "fake", "--split", "all", "--limit", "1", "--methods", "gpg",
                 "--no-progress", "--no-store", "--out", str(tmp_path / "run"), *extra])


def test_a_compiled_program_keeps_its_profile_step_and_an_older_file_loads_separate(tmp_path):
    from guided_profile.programs.export import _checksum, load_compiled, save_compiled

    path = tmp_path / "continued.json"
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", profile_step=CONTINUED), TASK, {})
    program, payload = load_compiled(path, TASK)
    assert payload["profile_step"] == CONTINUED == program.profile_step
    before = json.loads(path.read_text())
    del before["profile_step"]  # as exported before the setting existed
    before["checksum"] = _checksum(before)
    path.write_text(json.dumps(before))
    program, payload = load_compiled(path, TASK)
    assert payload["profile_step"] == SEPARATE == program.profile_step


def test_compare_and_run_refuse_a_compiled_gpg_whose_profile_step_differs(tmp_path, capsys):
    from guided_profile.programs.export import save_compiled
    from guided_profile.runs import RunSettings, compare_programs

    path = tmp_path / "continued.json"
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", profile_step=CONTINUED), TASK, {})
    settings = RunSettings.resolve("preference", lm="fake", split="all", limit=1, cache=False)
    with pytest.raises(ConfigError, match="--profile-step continued"):
        compare_programs(settings, [str(path)], out=tmp_path / "compare", log=lambda _: None)
    assert run_command(tmp_path, "--program", str(path), "--methods", "") == 2
    assert "--profile-step continued" in capsys.readouterr().err
    assert run_command(tmp_path, "--program", str(path), "--methods", "", "--profile-step", CONTINUED) == 0


def test_optuna_studies_of_the_default_form_keep_their_names():
    from guided_profile.optimizers.optuna_search import _study_answer

    assert "profile_step" not in _study_answer(build_program("gpg", TASK, answer_mode="score"))
    assert _study_answer(build_program("gpg", TASK, answer_mode="score", profile_step=CONTINUED))["profile_step"] \
        == CONTINUED
