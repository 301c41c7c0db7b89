"""What several optuna workers on one study rely on, checked in one process on a SQLite study (fast and
deterministic; tests/test_postgres.py runs real workers on PostgreSQL): a worker that joins or resumes a
study does not replay the random configurations already scored, a configuration another worker is scoring
is not paid twice, and every worker exports the best of the first `trials` trials to complete."""

from __future__ import annotations

import hashlib

import dspy
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from guided_profile.datasets.example import Example
from guided_profile.lm.fake import FakeEngine
from guided_profile.optimizers import get_optimizer, run_optimizer
from guided_profile.optimizers.optuna_search import PART_CHOICES
from guided_profile.programs import build_program
from guided_profile.tasks import get_task

TASK = get_task("preference")
CANDIDATE = "Which product families does this person buy again and again?"


def examples(n: int, prefix: str) -> list[Example]:
    return [Example(f"{prefix}{i}", f"{prefix}{i}", (f"item {prefix}{i}", "Glass beaker (category: Lab)"),
                    "Which next?", "B", ("Drill bit", "Pipette tips", "Hose", "Clock")) for i in range(n)]


def varied(system: str, user: str) -> str:
    """Every reply carries a digest of its prompt: each configuration gets prompts, and a score, of its own."""
    digest = hashlib.sha256((system + user).encode()).hexdigest()
    tail = user.rsplit("\n\n", 1)[-1].lower()
    if "reply with only the guidance" in tail:
        return f"tools {digest[:8]}"
    if "reply with only the profile" in tail:
        return f"a shopper {digest[:8]}"
    return "ABCD"[int(digest, 16) % 4]


def worker(tmp_path, trials: int, engine: FakeEngine | None = None):
    """One worker on the shared study: its result and its model's engine (every request it made)."""
    engine = engine or FakeEngine(varied)
    task_lm = dspy.LM("fake/task", engine=engine, cache=False)
    prompt_lm = dspy.LM("fake/prompt", engine=FakeEngine(lambda s, u: CANDIDATE), cache=False)
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, trials=trials, candidates=1, study_name="shared",
                              storage=f"sqlite:///{tmp_path / 'shared.db'}")
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(5, "t"), valset=examples(4, "d"),
                           budget=10_000, log=lambda line: None)
    return result, engine


def study(tmp_path) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'shared.db'}")


def test_a_joining_worker_does_not_replay_the_configurations_already_scored(tmp_path):
    worker(tmp_path, trials=6)
    result, _ = worker(tmp_path, trials=10)  # a second worker (or the first, restarted) with the same seed
    joined = result.info["trials"][6:]
    assert len(joined) == 4
    # With one sampler seed for every worker, the second replayed the first's random draws: 3 of its 4 trials
    # were configurations already scored (no call made, yet counted as trials).  Seeds are fixed: no luck here.
    assert sum(t["calls"] == 0 for t in joined) <= 1, joined


def test_a_configuration_another_worker_is_scoring_is_pruned_not_paid(tmp_path):
    worker(tmp_path, trials=1)  # the pool (hand-written + 1 candidate) and trial 0; the candidate's trial waits
    shared = study(tmp_path)
    distributions = {"guidance": CategoricalDistribution([0, 1]), "parts": CategoricalDistribution(PART_CHOICES),
                     "profile_words": IntDistribution(20, 100, step=20)}
    elsewhere = shared.ask(distributions)  # another worker takes the waiting candidate trial and is scoring it
    assert elsewhere.params["guidance"] == 1
    shared.enqueue_trial(elsewhere.params)  # ...and this worker is about to draw the same configuration
    result, engine = worker(tmp_path, trials=2)
    states = {t.number: t.state for t in study(tmp_path).get_trials()}
    assert states[elsewhere.number] == TrialState.RUNNING and states[elsewhere.number + 1] == TrialState.PRUNED
    assert [t["trial"] for t in result.info["trials"]] == [0, elsewhere.number + 2]
    # Every request is the trial that ran or the final scoring on train: the pruned one made none.
    train = result.usage["expected_parts"]["final scoring on train (task)"]
    assert len(engine.requests) == result.info["trials"][1]["calls"] + train == result.usage["calls"]


def test_every_worker_exports_the_best_of_the_first_trials_to_complete(tmp_path):
    first, _ = worker(tmp_path, trials=4)
    shared = study(tmp_path)
    late = first.info["trials"][0]  # another worker's trial that completes after the count was reached
    params = {"guidance": 0, "parts": late["parts"], "profile_words": late["profile_words"]}
    distributions = {"guidance": CategoricalDistribution([0, 1]), "parts": CategoricalDistribution(PART_CHOICES),
                     "profile_words": IntDistribution(20, 100, step=20)}
    shared.add_trial(optuna.trial.create_trial(params={k: v for k, v in params.items() if v is not None},
                                               distributions={k: distributions[k] for k in params
                                                              if params[k] is not None}, value=2.0))
    second, _ = worker(tmp_path, trials=4)
    assert len(study(tmp_path).get_trials()) == 5  # the count was reached: no trial of its own
    assert second.info["best_trial"] == first.info["best_trial"] and second.info["best_trial"]["score"] <= 1.0
