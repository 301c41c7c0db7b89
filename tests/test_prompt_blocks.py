"""What every method sends to the model, for every registered task: one table of prompt blocks.

A method's final step sees exactly the parts its switches let through (the paper's PC, G, PP), whatever
the task; the task only decides what its main GPG row is (`Task.gpg_switches`) and how the question
and options read.  A new task is covered by adding its example to `tests/conftest.py`.
"""

import dspy
import pytest

from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.answer import lettered
from guided_profile.programs.methods import PARTS, parts_of
from guided_profile.tasks import TASKS, get_task

BLOCK_OF_PART = {"pc": "History (", "g": "Guidance (", "pp": "Profile ("}
# The methods without a digest step: (LM calls, parts the final step sees).
DIRECT = {"dg-no-pc": (1, set()), "dg-pc": (1, {"pc"}), "pg": (2, {"pc", "pp"})}
ABLATIONS = ["gpg:pc+g+pp", "gpg:pc+g", "gpg:g+pp", "gpg:pc+pp", "gpg:g", "gpg:pp"]


def expected(method, task):
    """(LM calls, parts the final step sees): GPG digests, writes a profile if the final step sees one,
    and answers; `gpg` is the task's main row."""
    if method in DIRECT:
        return DIRECT[method]
    parts = parts_of(task.gpg_switches) if method == "gpg" else method.split(":", 1)[1]
    seen = set(parts.split("+"))
    return 2 + ("pp" in seen), seen


@pytest.mark.parametrize("method", [*DIRECT, "gpg", *ABLATIONS])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_final_prompt_holds_exactly_the_switched_parts(name, method, fake_lm, example_of):
    task, example = get_task(name), example_of(name)
    calls, seen = expected(method, task)
    with dspy.context(lm=fake_lm, adapter=PersonalAdapter()):
        prediction = build_program(method, task)(**task.inputs(example))
    requests = fake_lm.engine_impl.requests
    assert len(requests) == calls
    final = requests[-1]["user"]
    for part, marker in BLOCK_OF_PART.items():
        assert (marker in final) == (part in seen), (method, PARTS[part])
    assert ("1. " + example.history[0] in final) == ("pc" in seen)
    assert f"Question:\n{task.question_text(example)}" in final and task.answer_instruction in final
    assert ("Options (" in final) == task.has_options
    if task.has_options:
        assert f"Options (one per line, each with its letter):\n{lettered(example.options)}" in final
        assert final.index("Question:") < final.index("Options (") < final.index(task.answer_instruction)
    if method.startswith("gpg"):
        digest = requests[0]["user"]
        assert task.guidance_question in digest and "1. " + example.history[0] in digest
        assert task.question_text(example) not in digest  # the digestion sees the history, not the question
    if "pp" in seen:
        assert prediction.profile and prediction.profile in final
    hidden = [text for value in example.meta.values() for text in value]  # e.g. the true persona
    assert not any(text in r["user"] for text in hidden for r in requests)
    assert prediction.answer == "A"  # the scripted reply


@pytest.mark.parametrize("name", sorted(TASKS))
def test_declared_columns_are_the_summary_keys_in_order(name):
    task = get_task(name)
    assert [key for key in task.summarize([]) if key != "n"] == list(task.columns)
    assert task.objective in task.columns
