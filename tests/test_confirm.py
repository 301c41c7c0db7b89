"""The confirm stage's split and verdict, and reading user-written guidance question candidates."""

import json

import pytest

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError, DataError
from guided_profile.optimizers._guidance_shape import set_instruction
from guided_profile.optimizers.candidates import Candidate, read_candidates
from guided_profile.optimizers.confirm import (
    ConfirmSettings,
    confirm_stage,
    judge,
    pick_on_confirm,
    reported_mean,
    split_for_confirm,
)
from guided_profile.programs import build_program
from guided_profile.tasks import get_task

TASK = get_task("preference")


def _users(n):
    return [Example(f"e{i}", f"u{i}", ("item",), "q", "A", ("a", "b", "c", "d")) for i in range(n)]


def test_confirm_split_is_by_user_stable_and_seeded():
    examples = _users(400)
    search, confirm = split_for_confirm(examples, 0.3, seed=0)
    assert len(search) + len(confirm) == 400 and 90 < len(confirm) < 150
    assert not {e.user_id for e in search} & {e.user_id for e in confirm}
    again, _ = split_for_confirm(list(reversed(examples)), 0.3, seed=0)
    assert {e.user_id for e in again} == {e.user_id for e in search}  # order does not matter
    other, _ = split_for_confirm(examples, 0.3, seed=1)
    assert {e.user_id for e in other} != {e.user_id for e in search}
    assert split_for_confirm(examples, 0.0, seed=0) == (examples, [])
    with pytest.raises(ConfigError, match=r"confirm fraction must be in \[0, 1\)"):
        split_for_confirm(examples, 1.0, seed=0)


def test_a_clearly_better_candidate_is_confirmed_and_exported():
    handwritten = [0.0, 1.0] * 30
    better = [1.0] * 60
    verdict = judge(better, handwritten, objective="accuracy", candidates=3)
    assert verdict.confirmed and verdict.exported == "candidate" and verdict.n == 60
    assert verdict.line().startswith("confirmed: +50.0 points [") and "on 60 confirm users" in verdict.line()


def test_a_lucky_or_worse_candidate_leaves_the_handwritten_program_exported():
    handwritten = [1.0, 0.0, 1.0, 0.0] * 10
    noise = [1.0, 0.0, 0.0, 1.0] * 10  # same mean: no gain
    verdict = judge(noise, handwritten, objective="accuracy")
    assert not verdict.confirmed and verdict.exported == "handwritten"
    assert verdict.line().startswith("not confirmed: +0.0 points") and "hand-written program is exported" in \
        verdict.line()
    flagged = judge(noise, handwritten, objective="accuracy", export_unconfirmed=True)
    assert flagged.exported == "candidate" and not flagged.confirmed and "unconfirmed" in flagged.line()


def test_a_tiny_difference_shows_its_digits_not_a_signed_zero():
    """-0.04 points rounds to "-0.0" at one decimal: the sign alone would claim a direction the number hides."""
    handwritten = [0.3, 0.2] * 25
    candidate = [0.3, 0.2] * 24 + [0.3, 0.18]
    line = judge(candidate, handwritten, objective="gold_probability").line()
    assert line.startswith("not confirmed: -0.04 points [") and "-0.0 " not in line


def test_choosing_among_more_candidates_needs_stronger_evidence():
    handwritten = [0.5] * 12
    candidate = [0.6] * 8 + [0.5] * 4
    alone, among_ten = judge(candidate, handwritten, objective="meteor"), judge(candidate, handwritten,
                                                                                 objective="meteor", candidates=10)
    assert alone.confirmed and not among_ten.confirmed and among_ten.p == pytest.approx(min(1, alone.p * 10))
    assert "+0.067 [" in alone.line()  # a text metric keeps its own scale
    assert alone.confidence == 0.95 and "adjusted" not in alone.line()
    assert among_ten.confidence == pytest.approx(0.995)
    assert "(99.5% interval and p adjusted for the best of 10 finalists, Bonferroni)" in among_ten.line()
    assert among_ten.low < alone.low  # the wider interval


def test_an_interval_clear_of_zero_with_too_few_differing_users_is_explained_not_confirmed():
    """4 of 44 users up, none down: the bootstrap interval excludes 0, the exact test gives p = 0.125."""
    verdict = judge([1.0] * 4 + [0.0] * 40, [0.0] * 44, objective="accuracy")
    assert not verdict.confirmed and verdict.low > 0 and verdict.p == pytest.approx(0.125)
    assert verdict.differing == 4 and "p = 0.125 on 44 confirm users" in verdict.line()
    assert "the bootstrap interval excludes 0, the exact paired test does not (4 of 44 users scored differently)" \
        in verdict.line()
    assert "excludes 0" not in judge([1.0] * 20 + [0.0] * 24, [0.0] * 44, objective="accuracy").line()


def test_the_confirm_stage_pairs_users_not_examples():
    """Two turns of one persona are one draw: n counts users, and the means are of user means."""
    examples = [Example(f"e{i}", f"u{i // 2}", ("item",), "q", "A", ("a", "b")) for i in range(12)]
    handwritten, finalist = build_program("gpg", TASK), build_program("gpg", TASK)
    set_instruction(finalist, "digest", "Which kinds of products did this person buy?")
    first_turn_better = {id(handwritten): [0.0] * 12, id(finalist): [1.0, 0.0] * 6}
    _, info = confirm_stage(handwritten, [finalist], examples, objective="accuracy", settings=ConfirmSettings(),
                            score=lambda program, shown: first_turn_better[id(program)])
    assert info["n"] == 6 and info["examples"] == 12
    assert info["means"] == {"handwritten": 0.0, "finalist 1": 0.5} and info["verdict"]["n"] == 6
    assert info["verdict"]["p"] == pytest.approx(2 / 2**6)  # six users, all up: exact sign-flip test


def test_the_verdict_line_shows_accuracy_beside_the_objective_without_deciding_on_it():
    examples = [Example(f"e{i}", f"u{i}", ("item",), "q", "A", ("a", "b")) for i in range(8)]
    handwritten, finalist = build_program("gpg", TASK), build_program("gpg", TASK)
    set_instruction(finalist, "digest", "Which kinds of products did this person buy?")
    scores = {id(handwritten): [0.25] * 8, id(finalist): [0.26] * 8}
    accuracy = {id(handwritten): 0.625, id(finalist): 0.375}
    _, info = confirm_stage(handwritten, [finalist], examples, objective="gold_probability",
                            settings=ConfirmSettings(), score=lambda program, shown: scores[id(program)],
                            reported=lambda program: {"accuracy": accuracy[id(program)]})
    assert info["reported"] == {"handwritten": {"accuracy": 0.625}, "finalist 1": {"accuracy": 0.375}}
    verdict = info["verdict"]
    assert verdict["reported"] == {"accuracy": (0.375, 0.625)} and verdict["confirmed"]  # the objective decides
    assert "; accuracy there 37.5% against 62.5%; the optimized program is exported" in verdict["line"]


def test_the_reported_metric_is_averaged_per_user_like_the_objective():
    examples = [Example(f"e{i}", user, ("item",), "q", "A", ("a", "b")) for i, user in enumerate("aaabcd")]
    metrics = [{"accuracy": value} for value in (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)]
    assert reported_mean(examples, metrics, "accuracy") == 0.25  # four users; the example mean would be 0.5
    assert reported_mean(examples, [*metrics[:5], None], "accuracy") is None  # a score kept without its metrics


def test_each_confirmed_program_records_its_place_in_the_search_ranking():
    """Two trials can share a guidance question: the rank, not the question, says which one a finalist was."""
    examples = _users(6)
    handwritten, mine = build_program("gpg", TASK), build_program("gpg", TASK)
    searched = [build_program("gpg", TASK) for _ in range(4)]
    for program, question in zip([*searched, mine], ["Which brands?", None, "Which brands?", "Which tools?", "Mine?"],
                                 strict=True):
        if question:
            set_instruction(program, "digest", question)
    _, info = confirm_stage(handwritten, searched, examples, objective="accuracy", settings=ConfirmSettings(),
                            score=lambda program, shown: [0.0] * len(shown), written=[mine])
    assert info["search_ranks"] == {"handwritten": 1, "finalist 1": 0, "finalist 2": 3, "finalist 3": None}


def test_pick_on_confirm_takes_the_best_mean_and_the_first_on_ties():
    assert pick_on_confirm({"t3": [1, 0], "t1": [1, 1], "t7": [0, 1]}) == "t1"
    assert pick_on_confirm({"t3": [1, 0], "t7": [0, 1]}) == "t3"


def test_candidates_from_a_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# my questions\nWhich brands does this person trust?\n\n  Which  hobbies show?  \n"
                    "Which brands does this person trust?\n")
    assert read_candidates(path) == [Candidate("Which brands does this person trust?"),
                                     Candidate("Which hobbies show?")]


def test_candidates_from_json_with_instructions(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(["Which tools?", {"guidance_question": "Which labs?",
                                                 "instructions": {"write_profile": "Write 30 words."}}]))
    found = read_candidates(path, steps=("digest", "write_profile", "answer"))
    assert found == [Candidate("Which tools?"), Candidate("Which labs?", {"write_profile": "Write 30 words."})]


@pytest.mark.parametrize(("name", "content", "says"), [
    ("c.json", '{"guidance_question": "x?"}', "expected a JSON list"),
    ("c.json", '[{"question": "x?"}]', r"item 1: expected a question or an object"),
    ("c.json", '[{"guidance_question": "x?", "instructions": {"nope": "y"}}]', "item 1: no step named nope"),
    ("c.json", '["ok?", ""]', "item 2: a guidance question must be non-empty"),
    ("c.json", '[{"guidance_question": "a?", "guidance_question": "b?"}]', "appears twice"),
    ("c.txt", "# only comments\n\n", "holds no candidate"),
    ("c.txt", "ok?\n" + "x" * 700 + "\n", "line 2: 700 characters"),
])
def test_malformed_candidate_files_are_one_clear_error(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{name}.*{says}"):
        read_candidates(path, steps=("digest", "write_profile", "answer"))


# ----------------------------------------------------------------------------- the stage, end to end

def _tune(tmp_path, name="copro", task_rule=None, user_candidates=(), fraction=0.5, progress=None, **settings):
    from test_optimizers import SETTINGS, TASK, examples, lms, rewarding_rule

    from guided_profile.optimizers import get_optimizer, run_optimizer
    from guided_profile.optimizers.confirm import ConfirmSettings
    from guided_profile.programs import build_program

    task_lm, task_engine, prompt_lm, _ = lms(task_rule or rewarding_rule)
    optimizer = get_optimizer(name, task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=progress, confirm=ConfirmSettings(fraction=fraction),
                              user_candidates=user_candidates,
                              **(SETTINGS[name] | settings))
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(4, "t"),
                           valset=examples(24, "d"), budget=100_000, log=lambda line: None)
    return result, task_engine


@pytest.mark.parametrize("name", ["copro", "optuna"])
def test_a_candidate_that_wins_on_users_the_search_never_saw_is_confirmed(tmp_path, name):
    from test_optimizers import NEW_Q

    result, engine = _tune(tmp_path, name)
    confirm = result.info["confirm"]
    assert result.program.digest.signature.instructions == NEW_Q
    assert confirm["verdict"]["confirmed"] and confirm["verdict"]["line"].startswith("confirmed: +100.0 points")
    assert confirm["means"]["handwritten"] == 0.0 and confirm["n"] == len(confirm["example_ids"]) >= 6
    assert result.usage["calls"] <= result.usage["expected_calls"]  # the plan counts the stage


def test_an_optuna_export_names_the_search_trial_of_each_confirmed_program(tmp_path):
    result, _ = _tune(tmp_path, "optuna")
    info, confirm = result.info, result.info["confirm"]
    trials = {t["trial"]: t for t in info["trials"]}
    for name, rank in confirm["search_ranks"].items():
        trial = trials[info["ranked_trials"][rank]]
        question = (confirm["finalists"].get(name) or {}).get("digest", TASK.guidance_question)
        assert trial["guidance_question"] == question
    assert info["ranked_trials"][0] == info["best_trial"]["trial"]


def test_the_exported_programs_dev_score_is_its_confirm_mean_per_user(tmp_path):
    """A persona with three turns counts once, in the verdict and in the file's dev score alike."""
    from test_optimizers import NEW_Q, SETTINGS, TASK, lms, rewarding_rule

    from guided_profile.optimizers import get_optimizer, run_optimizer
    from guided_profile.optimizers.confirm import ConfirmSettings
    from guided_profile.programs import build_program

    def dev_user(u: int) -> list[Example]:
        turns = 3 if u % 2 else 1  # right only on the one-turn users
        return [Example(f"d{u}-{t}", f"d{u}", (f"item d{u}-{t} {'solo' if turns == 1 else 'busy'}", "Beaker"),
                        "Which next?", "B", ("Drill bit", "Pipette tips", "Hose", "Clock")) for t in range(turns)]

    def solo_only(system, user):
        reply = rewarding_rule(system, user)
        return "A" if reply == "B" and "busy" in user else reply

    task_lm, _, prompt_lm, _ = lms(solo_only)
    optimizer = get_optimizer("copro", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, confirm=ConfirmSettings(fraction=0.5), **SETTINGS["copro"])
    valset = [ex for u in range(40) for ex in dev_user(u)]
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=dev_user(100) + dev_user(102),
                           valset=valset, budget=100_000, log=lambda line: None)
    confirm = result.info["confirm"]
    assert result.program.digest.signature.instructions == NEW_Q and confirm["verdict"]["confirmed"]
    per_example = sum("solo" in ex.history[0] for ex in valset if ex.example_id in confirm["example_ids"]) / len(
        confirm["example_ids"])
    assert result.scores["dev"] == pytest.approx(confirm["means"][confirm["winner"]]) != pytest.approx(per_example)


def test_when_nothing_beats_the_handwritten_program_it_is_exported_with_the_verdict(tmp_path):
    from test_optimizers import TASK

    def indifferent(system, user):  # the answer never depends on the guidance: any gain is luck
        return "B" if "d1" in user or "d3" in user else "A"

    result, _ = _tune(tmp_path, "copro", task_rule=indifferent)
    verdict = result.info["confirm"]["verdict"]
    assert not verdict["confirmed"] and verdict["exported"] == "handwritten"
    assert "the hand-written program is exported" in verdict["line"]
    assert result.program.digest.signature.instructions == TASK.guidance_question


def test_the_confirm_stage_says_what_it_is_scoring(tmp_path):
    """An hour on a CPU without a line would look hung: the stage names each program and counts its examples."""
    lines = []
    result, _ = _tune(tmp_path, "copro", progress=lines.append)
    stage = [line for line in lines if "confirm stage" in line]
    n, programs = result.info["confirm"]["examples"], 1 + len(result.info["confirm"]["finalists"])
    assert stage[0] == f"[copro] confirm stage: handwritten (1 of {programs}) on {n} examples"
    assert f"[copro] confirm stage: {n} of {n} examples scored" in stage


def test_user_candidates_meet_the_handwritten_program_in_the_confirm_stage(tmp_path):
    from test_optimizers import NEW_Q, TASK

    mine = Candidate(NEW_Q, {"write_profile": "Write a profile in 30 words."})

    def rewards_mine_only(system, user):
        tail = user.rsplit("\n\n", 1)[-1].lower()
        if "reply with only the guidance" in tail:
            return "families-known" if NEW_Q in user else "tools"
        if "reply with only the profile" in tail:
            return "KNOWN shopper" if "families-known" in user and "30 words" in user else "a shopper"
        return "B" if "KNOWN" in user else "A"

    result, _ = _tune(tmp_path, "copro", task_rule=rewards_mine_only, user_candidates=[mine], breadth=2)
    confirm = result.info["confirm"]
    assert confirm["verdict"]["confirmed"]
    assert any(steps["write_profile"] == "Write a profile in 30 words." for steps in confirm["finalists"].values())
    assert result.program.write_profile.signature.instructions == "Write a profile in 30 words."
    assert result.program.digest.signature.instructions == NEW_Q != TASK.guidance_question


@pytest.mark.parametrize("name,candidate", [
    ("copro", Candidate("Which brands does this person prefer?")),
    ("optuna", Candidate("Which brands does this person prefer?", {"write_profile": "Write 30 words."})),
])
def test_candidates_the_search_cannot_take_are_refused_without_a_confirm_stage(tmp_path, name, candidate):
    with pytest.raises(ConfigError, match="only in the confirm stage, which --confirm-fraction 0 turns off"):
        _tune(tmp_path, name, fraction=0.0, user_candidates=[candidate])


def test_a_confirm_example_that_fails_stops_the_stage_instead_of_scoring_zero_for_one_side(tmp_path):
    from test_optimizers import rewarding_rule

    from guided_profile.optimizers.base import IncompleteScores

    def flaky(system, user):  # one confirm user's answer step fails for every program alike
        if "item d8\n" in user and "reply with only the guidance" not in user.rsplit("\n\n", 1)[-1].lower():
            raise ConnectionError("the server dropped the request")
        return rewarding_rule(system, user)

    with pytest.raises(IncompleteScores, match=r"1 of 12 confirm examples failed \(first: .*server dropped"):
        _tune(tmp_path, "copro", task_rule=flaky)


@pytest.mark.parametrize("name", ["copro", "mipro"])  # GEPA keeps a proposal only if it beats its parent
def test_dspy_optimizers_send_their_top_ranked_programs_to_the_confirm_stage(tmp_path, name):
    import itertools

    import dspy
    from test_optimizers import NEW_Q, SETTINGS, TASK, examples, rewarding_rule

    from guided_profile.lm.fake import FakeEngine
    from guided_profile.optimizers import get_optimizer, run_optimizer
    from guided_profile.optimizers.confirm import ConfirmSettings
    from guided_profile.programs import build_program

    questions = itertools.cycle(["Which brands does this person prefer?", NEW_Q, "Which tools does this person use?"])
    task_lm = dspy.LM("fake/task", engine=FakeEngine(rewarding_rule), cache=False)
    prompt_lm = dspy.LM("fake/prompt", engine=FakeEngine(lambda system, user: next(questions)), cache=False)
    optimizer = get_optimizer(name, task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path, progress=None,
                              confirm=ConfirmSettings(fraction=0.5, top=3), **SETTINGS[name])
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(4, "t"), valset=examples(24, "d"),
                           budget=100_000, log=lambda line: None)
    finalists = result.info["confirm"]["finalists"]
    assert 2 <= len(finalists) <= 3  # more than the search's best, at most `top`
    assert len({json.dumps(steps, sort_keys=True) for steps in finalists.values()}) == len(finalists)  # distinct


def test_a_rerun_after_a_failed_confirm_example_asks_only_about_that_example(tmp_path):
    """Each confirm score is kept in the run folder as it arrives: the rerun (these fake models have no answer
    cache, as on a machine the run folder was moved to) asks the model only about the user that failed."""
    from test_optimizers import SETTINGS, TASK, examples, lms, rewarding_rule

    from guided_profile.optimizers import get_optimizer
    from guided_profile.optimizers.base import IncompleteScores
    from guided_profile.programs import build_program

    def flaky(system, user):
        if "item d3\n" in user:
            raise ConnectionError("the server dropped the request")
        return rewarding_rule(system, user)

    def scores(rule):
        task_lm, engine, prompt_lm, _ = lms(rule)
        optimizer = get_optimizer("copro", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                                  progress=None, confirm=ConfirmSettings(), **SETTINGS["copro"])
        return optimizer.scores(build_program("gpg", TASK), examples(6, "d")), engine

    with pytest.raises(IncompleteScores, match="1 of 6 confirm examples failed"):
        scores(flaky)
    values, engine = scores(rewarding_rule)
    assert values == [0.0] * 6  # the hand-written question: never right under this rule
    assert engine.requests and all("item d3\n" in r["user"] for r in engine.requests)


def test_kept_confirm_scores_are_read_back_only_for_the_same_model_and_example(tmp_path):
    import dspy
    from test_optimizers import TASK, examples

    from guided_profile.optimizers._confirm_journal import FILENAME, ConfirmJournal

    def journal(model):
        return ConfirmJournal(tmp_path, task=TASK, lm=dspy.LM(model, cache=False), objective="accuracy")

    example = examples(1, "d")[0]
    journal("fake/one").keep("config A", example, 1.0, {"accuracy": 1.0})
    assert journal("fake/one").get("config A", example) == (1.0, {"accuracy": 1.0})
    assert journal("fake/one").get("config B", example) is None
    assert journal("fake/two").get("config A", example) is None  # another model's score
    edited = Example(example.example_id, example.user_id, example.history, example.query, "C", example.options)
    assert journal("fake/one").get("config A", edited) is None  # the data changed under the same id
    with open(tmp_path / FILENAME, "a") as f:
        f.write('{"context": "cut short by a ki')
    with pytest.warns(UserWarning, match=f"{FILENAME}, line 2: incomplete"):
        assert journal("fake/one").get("config A", example) == (1.0, {"accuracy": 1.0})
