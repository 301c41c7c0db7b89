"""The prompt layout (`--prompt-layout`): where the answer step states its instruction.

`options-last` puts the instruction before the options, so score mode's rotations share every token up to the
options; the default (`instruction-last`) is the prompt every run made before the setting existed.
"""

import dspy
import pytest

from guided_profile.errors import ConfigError
from guided_profile.lm.fake import FakeEngine
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.adapter import DEFAULT_LAYOUT, INSTRUCTION_LAST, OPTIONS_LAST
from guided_profile.programs.answer import answer_config, answer_config_of
from guided_profile.tasks import get_task

TASK = get_task("preference")
HEADER = "Options (one per line, each with its letter):\n"
REQUEST = f"Reply with only the answer ({TASK.answer_desc})."


def prompts(example, layout, method="dg-pc", answer_mode="score", rule=None):
    """Every user message the program sends, in order."""
    engine = FakeEngine(rule or (lambda s, u: {"A": -0.5, "B": -1.0, "C": -2.0, "D": -3.0}))
    lm = dspy.LM("fake/scripted", engine=engine, cache=False)
    program = build_program(method, TASK, answer_mode=answer_mode, prompt_layout=layout)
    with dspy.context(lm=lm, adapter=PersonalAdapter()):
        program(**TASK.inputs(example))
    return [r["user"] for r in engine.requests]


def test_the_default_layout_is_the_prompt_runs_made_before_the_setting():
    assert DEFAULT_LAYOUT == INSTRUCTION_LAST
    assert build_program("gpg", TASK, answer_mode="score").respond.prompt_layout == INSTRUCTION_LAST


def test_options_last_states_the_instruction_before_the_options_and_rotations_differ_only_after_them(example):
    rotations = prompts(example, OPTIONS_LAST)
    assert len(rotations) == 4
    shared, _, _ = rotations[0].partition(HEADER)
    assert TASK.answer_instruction in shared and "Question:\n" in shared
    for user in rotations:
        head, _, rest = user.partition(HEADER)
        assert head == shared  # history, question and instruction: the same tokens in every rotation
        options, request = rest.split("\n\n")
        assert request == REQUEST and TASK.answer_instruction not in rest
        assert len(options.splitlines()) == len(example.options)
    assert len({user.partition(HEADER)[2] for user in rotations}) == 4


def test_the_default_layout_recomputes_the_instruction_in_every_rotation(example):
    rotations = prompts(example, INSTRUCTION_LAST)
    assert len(rotations) == 4
    for user in rotations:
        head, _, rest = user.partition(HEADER)
        assert TASK.answer_instruction not in head
        assert rest.endswith(f"\n\n{TASK.answer_instruction}\n{REQUEST}")


@pytest.mark.parametrize("answer_mode", ["score", "generate"])
def test_options_last_moves_only_the_options_and_the_instruction(example, answer_mode):
    default = prompts(example, INSTRUCTION_LAST, answer_mode=answer_mode, rule=lambda s, u: "A")[0]
    moved = prompts(example, OPTIONS_LAST, answer_mode=answer_mode, rule=lambda s, u: "A")[0]
    *fields, options, last = default.split("\n\n")
    assert options.startswith(HEADER) and last == f"{TASK.answer_instruction}\n{REQUEST}"
    assert moved == "\n\n".join([*fields, TASK.answer_instruction, options, REQUEST])


def test_steps_without_options_are_laid_out_as_before(example):
    def rule(system, user):
        return {"A": -0.1} if HEADER in user else "a guidance or a profile"

    default = prompts(example, INSTRUCTION_LAST, "gpg", rule=rule)
    moved = prompts(example, OPTIONS_LAST, "gpg", rule=rule)
    assert len(default) == len(moved) == 2 + 4
    assert moved[:2] == default[:2]  # the digestion and the profile
    assert moved[2:] != default[2:]


def test_the_layout_is_part_of_the_answer_config_and_checked():
    program = build_program("gpg", TASK, answer_mode="score", rotations=2, prompt_layout=OPTIONS_LAST)
    assert answer_config_of(program) == {"answer_mode": "score", "rotations": 2, "prompt_layout": OPTIONS_LAST}
    generate = build_program("dg-pc", TASK, prompt_layout=OPTIONS_LAST)
    assert answer_config_of(generate)["prompt_layout"] == OPTIONS_LAST
    assert answer_config("score", 4)["prompt_layout"] == DEFAULT_LAYOUT  # records made before the setting
    with pytest.raises(ConfigError, match="unknown prompt layout 'options-first'"):
        build_program("gpg", TASK, answer_mode="score", prompt_layout="options-first")


def test_a_task_without_options_refuses_a_layout_that_would_change_nothing():
    paraphrase = get_task("paraphrase")
    assert build_program("gpg", paraphrase).respond.prompt_layout == INSTRUCTION_LAST
    with pytest.raises(ConfigError, match="no options to move"):
        build_program("gpg", paraphrase, prompt_layout=OPTIONS_LAST)


def test_a_compiled_program_keeps_its_layout_and_one_exported_before_the_setting_loads_with_the_default(tmp_path):
    import json

    from guided_profile.programs.export import _checksum, load_compiled, save_compiled

    path = tmp_path / "moved.json"
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", rotations=2, prompt_layout=OPTIONS_LAST),
                  TASK, {})
    program, payload = load_compiled(path, TASK)
    assert payload["answer"] == {"answer_mode": "score", "rotations": 2, "prompt_layout": OPTIONS_LAST}
    assert program.respond.prompt_layout == OPTIONS_LAST and program.respond.rotations == 2
    before = json.loads(path.read_text())
    del before["answer"]["prompt_layout"]  # as exported before the layout was a setting
    before["checksum"] = _checksum(before)
    path.write_text(json.dumps(before))
    program, payload = load_compiled(path, TASK)
    assert payload["answer"]["prompt_layout"] == INSTRUCTION_LAST == program.respond.prompt_layout


def run_command(tmp_path, *extra):
    from guided_profile.cli import main

    return main(["run", "--task", "preference", "--lm", "fake", "--split", "all", "--limit", "1", "--methods", "dg-pc",
                 "--no-progress", "--no-store", "--out", str(tmp_path / "run"), *extra])


def test_settings_carry_the_layout_into_programs_records_and_folder_names():
    from guided_profile.runs import RunSettings

    default = RunSettings.resolve("preference", lm="fake", retriever="recent")  # no retrieval: names as before
    moved = RunSettings.resolve("preference", lm="fake", retriever="recent", prompt_layout=OPTIONS_LAST)
    assert default.answer == {"answer_mode": "score", "rotations": 4, "prompt_layout": INSTRUCTION_LAST}
    assert moved.answer == default.answer | {"prompt_layout": OPTIONS_LAST}
    assert default.default_out().name == "preference-test-sample-fake-score4-seed0"  # as before the setting
    assert moved.default_out().name == "preference-test-sample-fake-score4-options-last-seed0"
    with pytest.raises(ConfigError, match="unknown prompt layout"):
        RunSettings.resolve("preference", prompt_layout="sideways")


def test_compare_refuses_a_compiled_program_laid_out_otherwise(tmp_path):
    from guided_profile.programs.export import save_compiled
    from guided_profile.runs import RunSettings, compare_programs

    path = tmp_path / "moved.json"
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", prompt_layout=OPTIONS_LAST), TASK, {})
    settings = RunSettings.resolve("preference", lm="fake", split="all", limit=1, cache=False)
    with pytest.raises(ConfigError, match="--prompt-layout options-last"):
        compare_programs(settings, [str(path)], out=tmp_path / "compare", log=lambda _: None)


def test_run_refuses_a_compiled_program_that_answers_otherwise_than_the_run_records(tmp_path, capsys):
    """config.json states one way of answering; a program laid out otherwise would be recorded wrongly."""
    from guided_profile.programs.export import save_compiled

    path = tmp_path / "moved.json"
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", prompt_layout=OPTIONS_LAST), TASK, {})
    assert run_command(tmp_path, "--program", str(path), "--methods", "") == 2
    assert "--prompt-layout options-last" in capsys.readouterr().err
    assert run_command(tmp_path, "--program", str(path), "--methods", "", "--prompt-layout", OPTIONS_LAST) == 0
