import os
import tempfile
from collections.abc import Callable

# Keep every cache of the test session away from the user's (DSPy reads DSPY_CACHEDIR at import).
_tmp = tempfile.mkdtemp(prefix="guided-profile-tests-")
os.environ.setdefault("GUIDED_PROFILE_CACHE", os.path.join(_tmp, "cache"))
os.environ["DSPY_CACHEDIR"] = os.path.join(_tmp, "dspy")

import dspy  # noqa: E402
import pytest  # noqa: E402

from guided_profile.datasets.example import Example  # noqa: E402
from guided_profile.lm.fake import FakeEngine  # noqa: E402

# One small example per registered task: tests parametrized over the tasks take theirs from here, so a new
# task adds its example here (the README's "Adding a task").
EXAMPLES = {
    "preference": Example(
        example_id="u1", user_id="u1",
        history=("Stanley staples 1/2 inch (category: Fasteners)", "Glass beaker 250 ml (category: Lab)",
                 "Nitrile gloves, size M (category: Lab, Safety & Cleaning)"),
        query="Which of the following products is the user most likely to buy next?",
        gold="B", options=("Drill bit set", "Pipette tips 200 ul", "Garden hose", "Wall clock"),
    ),
    "paraphrase": Example("7", "7", ("omg the bus was late AGAIN", "sooo hungry lol"), "I am very hungry.",
                          "sooo hungry rn lol"),
    "dialogue": Example("dialogue-0", "dialogue-0", ("great , just back from a walk with my dogs .",
                                                     "two beagles , they never get tired ."),
                        "do you go far ?", "we hike in the hills every sunday .",
                        meta={"persona": ("i have two dogs.", "i love hiking.")}),
}


@pytest.fixture
def example_of() -> Callable[[str], Example]:
    """The example of a task by its name; a registered task without one fails here, saying so."""
    def of(task: str) -> Example:
        assert task in EXAMPLES, f"task {task!r} has no example in tests/conftest.py EXAMPLES"
        return EXAMPLES[task]

    return of


@pytest.fixture
def example() -> Example:
    """A preference example: three purchases, four options."""
    return EXAMPLES["preference"]


@pytest.fixture
def tweet() -> Example:
    """A paraphrase example: two tweets, a neutral tweet to rewrite and the author's own."""
    return EXAMPLES["paraphrase"]


@pytest.fixture
def chat() -> Example:
    """A dialogue example with the person's true persona (which no prompt may show)."""
    return EXAMPLES["dialogue"]


@pytest.fixture
def fake_lm():
    """A dspy.LM over a scripted engine; `fake_lm.engine_impl.requests` holds every prompt."""
    engine = FakeEngine()
    lm = dspy.LM("fake/scripted", engine=engine, temperature=0.0, max_tokens=64, cache=False)
    lm.engine_impl = engine
    return lm


@pytest.fixture
def fake_calls(monkeypatch) -> list[str]:
    """Every prompt any FakeEngine answers from now on, also those the command line builds itself."""
    seen: list[str] = []
    complete = FakeEngine.complete

    def counted(self, request):
        seen.append("\n".join(m.text or "" for m in request.messages))
        return complete(self, request)

    monkeypatch.setattr(FakeEngine, "complete", counted)
    return seen


@pytest.fixture(scope="module")
def one_torch_thread():
    """Keep the embedding tests light on a shared machine: one torch thread for the module, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
