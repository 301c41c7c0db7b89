"""What was saved under the old names still reads: Optuna studies made before the guidance question had its own
name, or before examples were read through `Task.as_read`, resume with their pool and under their old study name."""

import hashlib
import json

import optuna
import pytest

from guided_profile.datasets.example import samples_dir
from guided_profile.optimizers.optuna_search import POOL_ATTR, _examples_digest, _stored_pool, _study_answer
from guided_profile.programs import build_program
from guided_profile.tasks import get_task

TASK = get_task("preference")


def test_a_pool_kept_under_its_old_name_is_found():
    study = optuna.create_study()
    assert _stored_pool(study) is None
    study.set_user_attr("guidance_pool", ["What?", "Which?"])
    assert _stored_pool(study) == ["What?", "Which?"]
    study.set_user_attr(POOL_ATTR, ["Who?"])
    assert _stored_pool(study) == ["Who?"]


def test_a_study_is_named_from_the_answer_settings_as_before():
    """Before answer_config was the one description, generate mode stated rotations 4: the study name hashed it."""
    assert _study_answer(build_program("gpg", TASK)) == {"answer_mode": "generate", "rotations": 4}
    scored = build_program("gpg", TASK, answer_mode="score", rotations=2)
    assert _study_answer(scored) == {"answer_mode": "score", "rotations": 2}
    moved = build_program("gpg", TASK, answer_mode="score", rotations=2, prompt_layout="options-last")
    assert _study_answer(moved) == {"answer_mode": "score", "rotations": 2, "prompt_layout": "options-last"}


@pytest.mark.parametrize("name", ["preference", "paraphrase", "dialogue"])
def test_a_study_is_named_from_its_examples_as_before(name):
    """Studies hash the JSON of `[[id, inputs, gold], ...]` as the search first wrote it, inline below: a
    change of that text would rename every stored study, and a committed search would start over."""
    task = get_task(name)
    examples, _ = task.load(samples_dir() / task.sample_subdir)
    content = [[e.example_id, task.inputs(e), e.gold] for e in examples]
    before = hashlib.sha256(json.dumps(content, sort_keys=True, default=list).encode()).hexdigest()[:16]
    assert _examples_digest(task, examples) == before
