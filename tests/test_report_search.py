"""experiments/report_search.py on a hand-made study: every trial's row, racing, cost and the confirm stage."""

import json

import optuna
import pytest
from _scripts import experiment_script
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

POOL = ["Provide the category of each item:", "Which kinds were bought twice?", "What is their primary interest?"]
DISTRIBUTIONS = {"guidance": CategoricalDistribution([0, 1, 2]), "parts": CategoricalDistribution(["pc+pp", "g"]),
                 "profile_words": IntDistribution(20, 100, step=20)}


@pytest.fixture(scope="module")
def report():
    with experiment_script("report_search") as module:
        yield module


def trial(state, guidance, parts="pc+pp", value=None, **attrs):
    params = {"guidance": guidance, "parts": parts} | ({"profile_words": 60} if parts == "pc+pp" else {})
    return create_trial(state=state, value=value, params=params,
                        distributions={k: DISTRIBUTIONS[k] for k in params},
                        user_attrs={"parts": parts, "profile_words": params.get("profile_words", "no profile")}
                        | attrs)


def search(tmp_path):
    """A run folder with a study of four trials (complete, pruned, failed, complete) and its compiled file."""
    run_dir = tmp_path / "x.run"
    run_dir.mkdir()
    study = optuna.create_study(study_name="preference-optuna-abc", storage=f"sqlite:///{run_dir / 'study.db'}",
                                direction="maximize")
    study.set_user_attr("config", {"task": "preference", "seed": 0, "objective": "gold_probability",
                                   "user_candidates": [POOL[1]]})
    study.set_user_attr("guidance_question_pool", POOL)
    study.set_user_attr("dev_ids", [str(i) for i in range(10)])
    study.set_user_attr("retried", [2])
    done = {"dev_examples": 10, "paid_examples": 10, "reused_examples": 0, "calls": 60, "tokens_per_example": 3000.0}
    study.add_trial(trial(TrialState.COMPLETE, 0, value=0.27, **done))
    study.add_trial(trial(TrialState.PRUNED, 1, value=0.31, dev_examples=4, paid_examples=4, reused_examples=0,
                          pruned_after_examples=4, mean_so_far=0.2619, calls=24))
    study.add_trial(trial(TrialState.FAIL, 2))
    study.add_trial(trial(TrialState.COMPLETE, 1, parts="g", value=0.2777, **done))
    study.enqueue_trial({"guidance": 2, "parts": "g"})  # screened but never run: Optuna keeps no params for it
    verdict = {"objective": "gold_probability", "n": 5, "candidates": 1, "diff": -0.01, "low": -0.03, "high": 0.01,
               "p": 0.5, "confirmed": False, "exported": "handwritten", "line": "not confirmed: -0.010 ..."}
    payload = {"command": "guided-profile optimize ...", "lm": {"model": "qwen-test", "sha256": "e" * 64},
               "data": {"sha256": "d" * 64, "train_ids": ["a", "b"]}, "git": {"commit": "c" * 40, "dirty": False},
               "version": "0.1.0", "handwritten_instructions": {"digest": POOL[0]},
               "usage": {"all_sessions": {"sessions": 2, "seconds": 7200, "model_calls": 150, "prompt_tokens": 1500,
                                          "completion_tokens": 15}},
               "optimizer": {"info": {"racing": {"trials": 3, "pruned": 1, "dev_examples_scored": 24,
                                                 "full_evaluation": 30, "saved": 6, "paid": 24}}},
               "confirm": {"n": 5, "examples": 5, "example_ids": [f"c{i}" for i in range(5)],
                           "means": {"handwritten": 0.26, "finalist 1": 0.25},
                           "finalists": {"finalist 1": {"digest": POOL[1]}}, "winner": "finalist 1",
                           "verdict": verdict}}
    compiled = tmp_path / "x.json"
    compiled.write_text(json.dumps(payload))
    lines = [{"configuration": "aaa", "example_id": f"c{i}", "score": 0.26, "metrics": {"accuracy": float(i < 2)}}
             for i in range(5)]  # reproduces the hand-written program's mean: its accuracy is 2 of 5
    lines += [{"configuration": "bbb", "example_id": f"c{i}", "score": 0.25, "metrics": {"accuracy": 1.0}}
              for i in range(5)]
    lines += [{"configuration": "ccc", "example_id": "c0", "score": 0.26, "metrics": {"accuracy": 0.0}}]  # one user
    (run_dir / "confirm.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return compiled, run_dir


def test_every_trial_has_a_row_that_says_how_it_ended(report, tmp_path):
    compiled, run_dir = search(tmp_path)
    text = report.markdown(compiled, run_dir)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "complete" in rows["0"] and "hand-written: Provide the category" in rows["0"] and "0.2700" in rows["0"]
    assert "pruned after 4" in rows["1"] and "(0.2619 so far)" in rows["1"] and "ours (--candidates)" in rows["1"]
    assert "0.3100" not in rows["1"]  # Optuna's value for a pruned trial is its last example's score, not its mean
    assert "failed, retried" in rows["2"] and "proposed: What is their primary" in rows["2"]
    assert "| G |" in rows["3"] and "no profile" in rows["3"] and "10 (10 paid, 0 reused)" in rows["3"]
    assert "waiting" in rows["4"] and "proposed: What is their primary" in rows["4"] and "| G |" in rows["4"]


def test_racing_cost_and_confirm_are_read_from_the_files(report, tmp_path):
    compiled, run_dir = search(tmp_path)
    text = report.markdown(compiled, run_dir)
    assert "6 saved (20%)" in text
    assert "2.0 h of wall time, 150 model calls" in text
    winner = next(line for line in text.splitlines() if line.startswith("| finalist 1 (winner)"))
    # The finalist's guidance question is shared by a pruned and a complete trial: the complete one's mean.
    assert "| 3: G | 0.2777 | 0.2500 |" in winner
    assert "**Verdict:** not confirmed: -0.010" in text
    assert "commit cccccccccccc (clean)" in text


def test_main_writes_the_report_into_the_run_folder(report, tmp_path, capsys):
    compiled, run_dir = search(tmp_path)
    assert report.main([str(compiled)]) == run_dir / "search.md"
    assert (run_dir / "search.md").read_text().startswith("# preference: Optuna search `preference-optuna-abc`")


def test_a_missing_study_is_one_line(report, tmp_path, capsys):
    compiled, run_dir = search(tmp_path)
    (run_dir / "study.db").unlink()
    with pytest.raises(SystemExit) as stop:
        report.main([str(compiled)])
    assert stop.value.code == 2 and "study.db not found" in capsys.readouterr().err


def test_accuracy_beside_the_objective_comes_from_the_export_or_else_from_the_confirm_journal(report, tmp_path):
    compiled, run_dir = search(tmp_path)
    rows = {line.split("|")[1].strip(): line for line in report.markdown(compiled, run_dir).splitlines()
            if line.startswith("| handwritten") or line.startswith("| finalist")}
    assert rows["handwritten"].rstrip().endswith("| 40.0% |") and rows["finalist 1 (winner)"].endswith("| 100.0% |")
    payload = json.loads(compiled.read_text())
    payload["confirm"]["reported"] = {"handwritten": {"accuracy": 0.5}, "finalist 1": {"accuracy": 0.25}}
    compiled.write_text(json.dumps(payload))
    text = report.markdown(compiled, run_dir)
    assert "| 50.0% |" in text and "| 25.0% |" in text and "read from `confirm.jsonl`" not in text


def test_the_recorded_ranking_names_each_finalists_trial_even_when_trials_share_its_question(report, tmp_path):
    compiled, run_dir = search(tmp_path)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run_dir / 'study.db'}")
    study.add_trial(trial(TrialState.COMPLETE, 1, value=0.2650, dev_examples=10, paid_examples=10, calls=60))  # 5
    old = report.markdown(compiled, run_dir)
    assert "| finalist 1 (winner) | Which kinds were bought twice? | - | - |" in old  # two complete trials ask it
    payload = json.loads(compiled.read_text())
    payload["optimizer"]["info"]["ranked_trials"] = [3, 0, 5]
    payload["confirm"]["search_ranks"] = {"handwritten": 1, "finalist 1": 2}
    compiled.write_text(json.dumps(payload))
    text = report.markdown(compiled, run_dir)
    assert "| finalist 1 (winner) | Which kinds were bought twice? | 5: PC+PP | 0.2650 |" in text
    assert "| handwritten | Provide the category of each item: | 0: PC+PP | 0.2700 |" in text
    assert "the trial its configuration came from" in text and "does not record which" in old
