"""`optimize` as a researcher runs it (issue 18): the objective reaches every optimizer, a user's candidate
file is read or refused in one line, the confirm stage's verdict is printed last and recorded in the export,
`compare` sets the predicted gain beside the realized one, and confirm users count as tuning users."""

import contextlib
import io
import json
import math
import random
import re
import shutil

import pytest
from test_optimizers import NEW_Q, SETTINGS, TASK, examples, lms

from guided_profile.cli import main as cli_main
from guided_profile.compare import comparison_rows, confirm_estimate, table
from guided_profile.held_out import tuning_relation
from guided_profile.optimizers import TaskMetric, get_optimizer, run_optimizer
from guided_profile.programs import build_program
from guided_profile.programs.export import read_compiled, save_compiled
from guided_profile.provenance import data_sha256
from guided_profile.runs import resolve_data

FAST = {"copro": ["--option", "breadth=2", "--option", "depth=1"], "optuna": ["--option", "trials=3",
        "--option", "candidates=1"], "mipro": ["--option", "num_candidates=2", "--option", "num_trials=2"],
        "gepa": ["--option", "max_metric_calls=12"]}


@pytest.fixture(scope="module")
def many_users(tmp_path_factory):
    """An Amazon-format data set with 120 users (the committed sample has 3 dev users, too few to confirm on)."""
    folder = tmp_path_factory.mktemp("many")
    shutil.copy(resolve_data(TASK, "sample") / "Sample.item.json", folder / "Many.item.json")
    rng = random.Random(0)
    (folder / "Many.inter.json").write_text(json.dumps({str(u): rng.sample(range(60), 8) for u in range(120)}))
    return folder


def cli(*args):
    """(exit code, stdout lines, stderr lines) of one in-process command."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in args])
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


def optimize_args(data, out, optimizer="copro", *extra):
    return ["optimize", "--task", "preference", "--lm", "fake", "--data", data, "--optimizer", optimizer,
            *FAST[optimizer], "--train-limit", "3", "--dev-limit", "0", "--out", out, *extra]


@pytest.fixture(scope="module")
def tuned(many_users, tmp_path_factory):
    """One compiled program made by `optimize` with the confirm stage and a user's candidate file."""
    folder = tmp_path_factory.mktemp("tuned")
    (folder / "mine.txt").write_text("# my own\nWhich product families does this person buy again and again?\n")
    out = folder / "tuned.json"
    code, printed, err = cli(*optimize_args(many_users, out, "copro", "--confirm-fraction", "0.5",
                                            "--candidates", folder / "mine.txt"))
    assert code == 0, err
    return out, printed


# ----------------------------------------------------------------------------- the verdict and the export

def test_the_verdict_is_printed_last_and_recorded_at_the_top_of_the_export(tuned):
    out, printed = tuned
    payload = read_compiled(out)
    stage = payload["confirm"]
    assert printed[-1] == stage["verdict"]["line"] and printed[-1].startswith(("confirmed: ", "not confirmed: "))
    assert payload["objective"] == "gold_probability" == stage["verdict"]["objective"]  # score mode's default
    assert stage["settings"] == {"fraction": 0.5, "top": 3, "export_unconfirmed": False}
    assert set(stage["example_ids"]) <= set(payload["data"]["dev_ids"]) and stage["n"] == len(stage["example_ids"])
    assert "handwritten" in stage["means"] and "finalist 1" in stage["finalists"]  # the user's candidate met it
    assert set(stage["search_ranks"]) == set(stage["means"])  # each scored program's place in the search, kept
    assert "confirm" not in payload["optimizer"]["info"]  # one place for it
    assert payload["user_candidates"] == {"file": "mine.txt", "candidates": [{"guidance_question": NEW_Q,
                                                                              "instructions": {}}]}
    scores = payload["scores"]
    assert scores["objective"] == "gold_probability" and set(scores["accuracy"]) == {"train", "dev"}
    assert scores["dev_on"] == f"the {stage['n']} confirm users"
    assert any(line.startswith("accuracy: train ") for line in printed)  # reported beside the objective


def test_without_a_confirm_stage_the_file_and_the_last_line_say_so(many_users, tmp_path):
    out = tmp_path / "plain.json"
    code, printed, _ = cli(*optimize_args(many_users, out, "copro", "--confirm-fraction", "0",
                                          "--objective", "accuracy"))
    payload = read_compiled(out)
    assert code == 0 and printed[-1].startswith("no confirm stage")
    assert payload["confirm"] == {"settings": {"fraction": 0.0, "top": 3, "export_unconfirmed": False},
                                  "verdict": None}
    assert payload["objective"] == payload["scores"]["objective"] == "accuracy" and "accuracy" not in payload["scores"]


# ----------------------------------------------------------------------------- the objective

@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_optimize_gives_every_optimizer_the_objective_asked_for(name, tmp_path, monkeypatch):
    import guided_profile.optimizers as optimizers

    seen = {}

    class Seen(Exception):
        pass

    def stop(optimizer, *args, **kwargs):
        seen["objective"], seen["confirm"] = optimizer.metric.objective, optimizer.confirm
        raise Seen  # nothing else to learn, and no call to pay

    monkeypatch.setattr(optimizers, "run_optimizer", stop)
    base = ["optimize", "--lm", "fake", "--optimizer", name, "--out", tmp_path / "x.json", "--confirm-top", "2"]
    for extra, expected in (([], "gold_probability"), (["--objective", "accuracy"], "accuracy"),
                            (["--objective", "gold_margin"], "gold_margin"),
                            (["--answer-mode", "generate"], "accuracy")):
        with pytest.raises(Seen):
            cli(*base, *extra)
        assert seen["objective"] == expected and seen["confirm"].top == 2


def test_an_objective_the_task_lacks_is_one_line_before_any_work(tmp_path):
    code, _, err = cli("optimize", "--lm", "fake", "--optimizer", "copro", "--answer-mode", "generate",
                       "--objective", "gold_probability", "--out", tmp_path / "x.json")
    assert code == 2 and len(err) == 1
    assert "objective 'gold_probability' is not a per-example metric" in err[0] and "choose one of accuracy" in err[0]


def disagreeing_rule(system, user):
    """Score mode: asking NEW_Q puts the gold option (Pipette tips) first by a hair (accuracy 1, gold
    probability 0.30); the hand-written question puts it a close second (accuracy 0, gold probability 0.44).
    So accuracy and gold_probability disagree on which guidance is better."""
    tail = user.rsplit("\n\n", 1)[-1].lower()
    if "reply with only the guidance" in tail:
        return "families-known" if NEW_Q in user else "tools"
    if "reply with only the profile" in tail:
        return "KNOWN-FAMILIES shopper" if "families-known" in user else "a shopper"
    letter = {text: letter for letter, text in re.findall(r"^([A-D])\. (.+)$", user, re.M)}
    gold, decoy = (0.30, 0.28) if "KNOWN-FAMILIES" in user else (0.44, 0.45)
    chances = {letter["Pipette tips"]: gold, letter["Drill bit"]: decoy}
    return {x: math.log(chances.get(x, (1 - gold - decoy) / 2)) for x in "ABCD"}


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize(("objective", "wins"), [("accuracy", NEW_Q), ("gold_probability", TASK.guidance_question)])
def test_each_optimizer_chooses_by_the_objective(name, objective, wins, tmp_path):
    task_lm, _, prompt_lm, _ = lms(disagreeing_rule)
    optimizer = get_optimizer(name, task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, metric=TaskMetric(TASK, objective=objective), **SETTINGS[name])
    result = run_optimizer(optimizer, build_program("gpg", TASK, answer_mode="score", rotations=4),
                           trainset=examples(4, "t"), valset=examples(4, "d"), budget=100_000, log=lambda line: None)
    assert result.scores["objective"] == objective
    assert result.program.digest.signature.instructions == wins


def test_the_confirm_stage_reports_accuracy_beside_the_objective_it_decides_on(tmp_path):
    from guided_profile.optimizers.candidates import Candidate
    from guided_profile.optimizers.confirm import ConfirmSettings

    task_lm, _, prompt_lm, _ = lms(disagreeing_rule)
    optimizer = get_optimizer("copro", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, metric=TaskMetric(TASK, objective="gold_probability"),
                              confirm=ConfirmSettings(fraction=0.5), user_candidates=[Candidate(NEW_Q)],
                              **SETTINGS["copro"])
    result = run_optimizer(optimizer, build_program("gpg", TASK, answer_mode="score", rotations=4),
                           trainset=examples(4, "t"), valset=examples(12, "d"), budget=100_000, log=lambda line: None)
    confirm = result.info["confirm"]
    mine = next(name for name, steps in confirm["finalists"].items() if steps["digest"] == NEW_Q)
    assert confirm["means"]["handwritten"] > confirm["means"][mine]  # the objective prefers the hand-written
    assert confirm["reported"]["handwritten"] == {"accuracy": 0.0} and confirm["reported"][mine] == {"accuracy": 1.0}
    winner = confirm["reported"][confirm["winner"]]["accuracy"]
    assert f"; accuracy there {winner:.1%} against 0.0%;" in confirm["verdict"]["line"]


# ----------------------------------------------------------------------------- --candidates

@pytest.mark.parametrize(("name", "content", "says"), [
    ("c.json", '{"guidance_question": "x?"}', "expected a JSON list"),
    ("c.json", '[{"guidance_question": "x?", "instructions": {"nope": "y"}}]',
     "item 1: no step named nope; the program's steps are digest, write_profile, respond.predict"),
    ("c.json", "[1, 2", "invalid JSON at line 1"),
    ("c.txt", "# nothing but a comment\n", "holds no candidate"),
    ("c.txt", '# mine\n["What does the user need?"]\n', "line 2 starts like JSON: a JSON list of candidates goes"),
    ("missing.txt", None, "missing.txt"),
])
def test_a_malformed_candidates_file_is_one_line_and_exit_2(tmp_path, name, content, says):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, printed, err = cli("optimize", "--lm", "fake", "--optimizer", "copro", "--candidates", path,
                             "--out", tmp_path / "x.json")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and name in err[0], err
    assert says in err[0] and "Traceback" not in err[0]
    assert not any("expected LM calls" in line for line in printed)  # refused before the plan
    assert not (tmp_path / "x.json").exists()


def test_candidates_need_a_program_with_a_guidance_question(tmp_path):
    (tmp_path / "mine.txt").write_text("Which brands?\n")
    code, _, err = cli("optimize", "--lm", "fake", "--optimizer", "copro", "--method", "pg", "--candidates",
                       tmp_path / "mine.txt", "--out", tmp_path / "x.json")
    assert code == 2 and len(err) == 1 and "need a program with a digest step" in err[0]


# ----------------------------------------------------------------------------- compare and the held-out check

def test_compare_sets_the_confirm_estimate_beside_the_realized_gain(tuned, many_users, tmp_path):
    out, _ = tuned
    old = tmp_path / "old.json"  # as exported before the confirm stage existed: no "confirm", no "objective"
    payload = read_compiled(out)
    legacy = {k: v for k, v in payload.items() if k in ("base_method", "data", "scores", "optimizer", "lm")}
    save_compiled(old, build_program("gpg", TASK, answer_mode="score", rotations=4), TASK, legacy)
    code, printed, err = cli("compare", "--task", "preference", "--data", many_users, "--programs",
                             f"handwritten,{out},{old}", "--lm", "fake", "--split", "test", "--no-progress",
                             "--no-store", "--out", tmp_path / "cmp")
    assert code == 0, err
    report = (tmp_path / "cmp" / "compare.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| program"))
    assert "| confirm estimate (dev) | realized on this split |" in header
    rows = {}
    for line in report.splitlines():  # the first table's rows (the programs' origins follow)
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    n = payload["confirm"]["n"]
    assert re.search(rf"\| [+-]\d\.\d{{3}} \[[+-]\d\.\d{{3}}, [+-]\d\.\d{{3}}\] gold_probability, {n} users, "
                     r"(not )?confirmed[^|]*\| [+-]\d\.\d{3} \[.*\] gold_probability, \d+ users, p [=<]", rows["tuned"])
    cells = [c.strip() for c in rows["old"].split("|")]
    assert cells[header.split("|").index(" confirm estimate (dev) ")] == "-"
    assert [c.strip() for c in rows["handwritten"].split("|")][header.split("|").index(" confirm estimate (dev) ")] \
        == "-"
    assert any("confirm estimate (dev)" in line for line in printed)


def test_the_estimate_is_the_exported_programs_confirm_mean_minus_the_handwritten(tmp_path):
    verdict = {"objective": "accuracy", "n": 40, "candidates": 2, "diff": 0.1, "low": 0.02, "high": 0.18, "p": 0.02,
               "confirmed": True, "exported": "candidate", "line": "confirmed: ..."}
    stage = {"means": {"handwritten": 0.5, "finalist 1": 0.55, "finalist 2": 0.6}, "winner": "finalist 2",
             "verdict": verdict}
    assert confirm_estimate({"confirm": stage}) == {"objective": "accuracy", "diff": pytest.approx(0.1), "n": 40,
                                                    "confirmed": True, "diff_ci": (0.02, 0.18),
                                                    "exported": "candidate", "candidates": 2, "reported": {}}
    kept = confirm_estimate({"confirm": stage | {"verdict": verdict | {"confirmed": False, "exported": "handwritten"}}})
    assert kept["diff"] == 0.0 and kept["diff_ci"] == (0.0, 0.0)  # the hand-written program itself was exported
    beside = verdict | {"objective": "gold_probability", "reported": {"accuracy": [0.4, 0.65]}}
    assert confirm_estimate({"confirm": stage | {"verdict": beside}})["reported"] == {"accuracy": pytest.approx(-0.25)}
    assert confirm_estimate({}) is None and confirm_estimate({"confirm": {"verdict": None}}) is None
    ex = examples(3, "x")
    done = {(m, e.example_id): {"metrics": {"accuracy": a}} for m, a in (("handwritten", 0.0), ("t", 1.0)) for e in ex}
    summary = {"n": 3, "ci95": None, "failed": 0, "history_cut": 0, "accuracy": 0.0,
               "per_example": {"calls": 1, "prompt_tokens": 1, "completion_tokens": 1}}
    rows = comparison_rows(TASK, {"handwritten": summary, "t": summary}, done, ex, payloads={"t": {"confirm": stage}})
    header, body = table(TASK, rows)
    predicted, realized = header.index("confirm estimate (dev)"), header.index("realized on this split")
    assert body[0][predicted] == body[0][realized] == "-"
    assert body[1][predicted] == "+0.100 [+0.020, +0.180] accuracy, 40 users, best of 2, confirmed"
    rows = comparison_rows(TASK, {"handwritten": summary, "t": summary}, done, ex,
                           payloads={"t": {"confirm": stage | {"verdict": beside}}})
    assert table(TASK, rows)[1][1][predicted].endswith("best of 2, confirmed; accuracy -0.250")
    assert body[1][realized].startswith("+1.000 [+1.000, +1.000] accuracy, 3 users, p = ")


def test_confirm_users_are_tuning_users(tuned, many_users, tmp_path):
    out, _ = tuned
    payload = read_compiled(out)
    code, _, err = cli("run", "--task", "preference", "--data", many_users, "--program", out, "--lm", "fake",
                       "--split", "dev", "--no-progress", "--no-store", "--out", tmp_path / "run")
    assert code == 2 and "tuned on" in err[0] and "evaluate on the test split" in err[0]
    # even a file whose dev ids held only the search's part names its confirm users as tuning users
    confirm_ids = set(payload["confirm"]["example_ids"])
    payload["data"]["dev_ids"] = [i for i in payload["data"]["dev_ids"] if i not in confirm_ids]
    relation, leak = tuning_relation(payload, data_sha256(many_users), 0, confirm_ids)
    assert leak and f"tuned on {len(confirm_ids)} of the evaluated examples" in leak


def test_export_unconfirmed_exports_the_best_candidate_flagged(many_users, tmp_path):
    (tmp_path / "mine.txt").write_text(f"{NEW_Q}\n")
    out = tmp_path / "flagged.json"
    code, printed, _ = cli(*optimize_args(many_users, out, "copro", "--confirm-fraction", "0.5", "--candidates",
                                          tmp_path / "mine.txt", "--export-unconfirmed"))
    payload = read_compiled(out)
    verdict = payload["confirm"]["verdict"]  # the fake model answers A whatever the guidance: nothing is confirmed
    assert code == 0 and not verdict["confirmed"] and verdict["exported"] == "candidate"
    assert printed[-1] == verdict["line"] and "exported anyway, flagged as unconfirmed" in printed[-1]
    assert payload["confirm"]["settings"]["export_unconfirmed"] and payload["instructions"]["digest"] == NEW_Q
    assert confirm_estimate(payload)["exported"] == "candidate"
    # accuracy beside the objective for every program the stage scored; the exported one's is the file's dev score
    reported, winner = payload["confirm"]["reported"], payload["confirm"]["winner"]
    assert payload["scores"]["objective"] == "gold_probability" and set(reported) == set(payload["confirm"]["means"])
    assert reported[winner]["accuracy"] == payload["scores"]["accuracy"]["dev"]


def test_the_search_says_what_racing_saved_and_compare_shows_it(many_users, tmp_path):
    from guided_profile.compare import _made_from

    out = tmp_path / "raced.json"
    code, printed, err = cli(*optimize_args(many_users, out, "optuna", "--confirm-fraction", "0"))
    assert code == 0, err
    payload = read_compiled(out)
    racing = payload["optimizer"]["info"]["racing"]
    assert any(line.startswith(f"racing: {racing['pruned']} of {racing['trials']} trials pruned, ") for line in printed)
    report = "\n".join(_made_from({"raced": payload}, {}))
    row = next(line for line in report.splitlines() if line.startswith("| raced |"))
    assert f"| {payload['usage']['model_calls']} | {payload['seconds']:.0f} | " in row
    assert f"| {racing['saved']} of {racing['full_evaluation']} |" in row
