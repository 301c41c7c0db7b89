"""Settings that change prompts (`--prompt-layout`, `--profile-step`) are stated in config.json, and a run folder
is resumed only with the value it was made with; a folder made before the setting existed used its default."""

from __future__ import annotations

import json

import pytest

from guided_profile.errors import ConfigError
from guided_profile.evaluation import RunFolder

# (flag, config key, the value that is not the default, the default, a method whose prompt it changes)
SETTINGS = [("--prompt-layout", "prompt_layout", "options-last", "instruction-last", "dg-pc"),
            ("--profile-step", "profile_step", "continued", "separate", "gpg")]


def run_command(tmp_path, method, *extra):
    from guided_profile.cli import main

    return main(["run", "--task", "preference", "--lm", "fake", "--split", "all", "--limit", "1", "--methods", method,
                 "--no-progress", "--no-store", "--out", str(tmp_path / "run"), *extra])


@pytest.mark.parametrize(("flag", "key", "value", "default", "method"), SETTINGS)
def test_a_run_states_the_setting_and_a_rerun_with_another_value_is_refused(tmp_path, capsys, flag, key, value,
                                                                            default, method):
    assert run_command(tmp_path, method, flag, value) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())[key] == value
    capsys.readouterr()
    assert run_command(tmp_path, method) == 2  # the default
    assert f"holds a run with different {key}" in capsys.readouterr().err
    assert run_command(tmp_path, method, flag, value) == 0  # the same value resumes


@pytest.mark.parametrize(("flag", "key", "value", "default", "method"), SETTINGS)
def test_a_run_made_before_the_setting_was_recorded_resumes_only_with_the_default(tmp_path, flag, key, value,
                                                                                   default, method):
    old = {"task": "preference", "split": "test", "seed": 0, "lm": {}, "data": "sample:amazon_sample",
           "task_options": {}, "answer_mode": "score", "rotations": 4, "methods": [method]}
    RunFolder.open(tmp_path / "old", old).close()
    RunFolder.open(tmp_path / "old", old | {key: default}).close()
    with pytest.raises(ConfigError, match=f"different {key}"):
        RunFolder.open(tmp_path / "old", old | {key: value})
