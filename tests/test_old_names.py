"""What was saved under the old names still reads: Optuna studies made before the guidance question had its own
name resume with their pool and under their old study name."""

import optuna

from guided_profile.optimizers.optuna_search import POOL_ATTR, _stored_pool, _study_answer
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
