"""The runner: records, failures that do not stop a run, and resume without repeated calls."""

import json
import threading

import dspy
import pytest

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError, RunFolderWarning
from guided_profile.evaluation import RunFolder, evaluate
from guided_profile.lm.fake import FakeEngine
from guided_profile.programs import build_program
from guided_profile.report import origin
from guided_profile.tasks import get_task

TASK = get_task("preference")


def examples(n=4):
    return [Example(f"u{i}", f"u{i}", (f"item {i}", "Glass beaker"), "Which next?", "A",
                    ("Drill bit", "Pipette tips", "Hose", "Clock")) for i in range(n)]


def make_lm(rule):
    engine = FakeEngine(rule)
    return dspy.LM("fake/scripted", engine=engine, cache=False), engine


def config(methods):
    return {"task": "preference", "split": "test", "seed": 0, "lm": {"model": "fake"}, "data": "x",
            "task_options": {}, "methods": methods}


def test_records_scores_and_costs(tmp_path):
    lm, engine = make_lm(lambda system, user: "A" if "item 0" in user or "item 1" in user else "B")
    run = RunFolder.open(tmp_path, config(["dg-pc"]))
    summary = evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(), lm, run)["dg-pc"]
    assert summary["n"] == 4 and summary["correct"] == 2 and summary["accuracy"] == 0.5
    assert summary["per_example"]["calls"] == 1 and summary["per_example"]["prompt_tokens"] > 0
    lo, hi = summary["ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["example_id"] for r in records] == ["u0", "u1", "u2", "u3"]
    assert records[0]["reply"] == "A" and records[0]["metrics"]["outcome"] == "correct"
    assert "1. item 0" in records[0]["inputs"]["history"]
    assert json.loads((tmp_path / "summary.json").read_text())["methods"]["dg-pc"]["n"] == 4


def test_failure_is_recorded_and_run_goes_on_then_resume_retries_only_it(tmp_path):
    def flaky(system, user):
        if "item 2" in user:
            raise RuntimeError("server went away")
        return "A"

    lm, engine = make_lm(flaky)
    run = RunFolder.open(tmp_path, config(["gpg"]))
    summary = evaluate({"gpg": build_program("gpg", TASK)}, TASK, examples(), lm, run)["gpg"]
    assert summary["n"] == 3 and summary["failed"] == 1
    calls_before = len(engine.requests)

    lm2, engine2 = make_lm(lambda system, user: "A")
    run2 = RunFolder.open(tmp_path, config(["gpg"]))
    summary2 = evaluate({"gpg": build_program("gpg", TASK)}, TASK, examples(), lm2, run2)["gpg"]
    assert calls_before > 0
    assert len(engine2.requests) == 3  # only the failed example is redone: 3 GPG steps
    assert all("item 2" in r["user"] for r in engine2.requests)
    assert summary2["n"] == 4 and summary2["failed"] == 0


def test_resume_after_a_kill_mid_line(tmp_path):
    lm, engine = make_lm(lambda s, u: "A")
    run = RunFolder.open(tmp_path, config(["dg-pc"]))
    evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(2), lm, run)
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"method": "dg-pc", "example_id": "u2", "repl')  # the process died here
    lm2, engine2 = make_lm(lambda s, u: "A")
    with pytest.warns(RunFolderWarning, match="records.jsonl, line 3: incomplete or not JSON"):  # said, not hidden
        run2 = RunFolder.open(tmp_path, config(["dg-pc"]))
    summary = evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(4), lm2, run2)["dg-pc"]
    assert len(engine2.requests) == 2 and summary["n"] == 4
    with pytest.warns(RunFolderWarning, match="line 3"):  # the cut line stays in the file, skipped again
        reopened = RunFolder.open(tmp_path, config(["dg-pc"]))
    assert len(reopened.done) == 4  # nothing written after the cut is lost


def test_reopening_with_another_configuration_is_refused(tmp_path):
    RunFolder.open(tmp_path, config(["dg-pc"]))
    other = config(["dg-pc"]) | {"split": "dev"}
    with pytest.raises(ConfigError, match="different split"):
        RunFolder.open(tmp_path, other)


def test_resume_refuses_records_of_examples_that_now_read_differently(tmp_path):
    lm, _ = make_lm(lambda system, user: "A")
    evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(), lm, RunFolder.open(tmp_path, config(["dg-pc"])))
    changed = examples()
    changed[2] = Example("u2", "u2", ("another item", "Glass beaker"), "Which next?", "A", changed[2].options)
    run = RunFolder.open(tmp_path, config(["dg-pc"]))
    with pytest.raises(ConfigError, match=r"records.jsonl: the record of dg-pc on example u2 has other inputs"):
        evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, changed, lm, run)
    evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(), lm, run)  # the same data resumes


def test_summary_keeps_the_rows_of_methods_run_earlier_in_the_folder(tmp_path):
    lm, _ = make_lm(lambda system, user: "A")
    evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(), lm, RunFolder.open(tmp_path, config(["dg-pc"])))
    summaries = evaluate({"dg-no-pc": build_program("dg-no-pc", TASK)}, TASK, examples(3), lm,
                         RunFolder.open(tmp_path, config(["dg-no-pc"])))
    assert list(summaries) == ["dg-no-pc", "dg-pc"] and summaries["dg-pc"]["n"] == 3  # on this call's examples
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert set(saved["methods"]) == {"dg-no-pc", "dg-pc"}


def test_config_states_the_command_of_its_summary_not_of_an_attempt_cut_short(tmp_path):
    lm, _ = make_lm(lambda system, user: "A")
    first = config(["dg-pc"]) | {"command": "run --limit 4"}
    evaluate({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(), lm, RunFolder.open(tmp_path, first))
    RunFolder.open(tmp_path, first | {"command": "run --limit 8"})  # reopened, then killed before its summary
    assert json.loads((tmp_path / "config.json").read_text())["command"] == "run --limit 4"
    RunFolder.open(tmp_path, first | {"methods": ["pg"], "command": "run --methods pg"})
    saved = json.loads((tmp_path / "config.json").read_text())  # new methods are written at once, for resume checks
    assert saved["methods"] == ["dg-pc", "pg"] and saved["command"] == "run --methods pg"


def test_reopening_with_methods_in_command_order_is_not_a_change(tmp_path):
    RunFolder.open(tmp_path, config(["pg", "dg-pc"]) | {"command": "run --limit 4"})
    RunFolder.open(tmp_path, config(["pg", "dg-pc"]) | {"command": "run --limit 8"})  # killed before its summary
    assert json.loads((tmp_path / "config.json").read_text())["command"] == "run --limit 4"


def test_parallel_workers_give_the_same_records_and_per_example_costs(tmp_path):
    def rule(system, user):
        return "A" if "item 1" in user or "item 4" in user else "C"

    results = {}
    for workers in (1, 3):
        lm, engine = make_lm(rule)
        run = RunFolder.open(tmp_path / str(workers), config(["gpg", "dg-pc"]))
        programs = {m: build_program(m, TASK) for m in ("gpg", "dg-pc")}
        summaries = evaluate(programs, TASK, examples(8), lm, run, workers=workers)
        records = {(r["method"], r["example_id"]): r for r in run.done.values()}
        results[workers] = (summaries, records, len(engine.requests))
    (s1, r1, calls1), (s3, r3, calls3) = results[1], results[3]
    assert calls1 == calls3 == 8 * 4
    assert {k: v["accuracy"] for k, v in s1.items()} == {k: v["accuracy"] for k, v in s3.items()} == {
        "gpg": 0.25, "dg-pc": 0.25}
    for key, record in r3.items():
        assert record["usage"] == r1[key]["usage"]  # each example's own calls, not a neighbour's
        assert record["reply"] == r1[key]["reply"]


def test_parallel_results_are_saved_as_they_finish_not_in_input_order(tmp_path):
    import threading
    import time

    release = threading.Event()

    def rule(system, user):
        if "item 0" in user:
            release.wait(10)  # the first example is slow until the others are on disk
        return "A"

    lm, engine = make_lm(rule)
    run = RunFolder.open(tmp_path, config(["dg-pc"]))
    worker = threading.Thread(target=evaluate, args=({"dg-pc": build_program("dg-pc", TASK)}, TASK, examples(5), lm,
                                                     run), kwargs={"workers": 2})
    worker.start()
    deadline = time.time() + 10
    while time.time() < deadline and len(run.done) < 4:
        time.sleep(0.05)
    saved = (tmp_path / "records.jsonl").read_text().splitlines()
    release.set()
    worker.join(10)
    assert len(saved) == 4 and all('"u0"' not in line for line in saved)


def test_a_broken_store_stops_the_run_with_its_error(tmp_path):
    from guided_profile.store import StoreError

    class BrokenStore:
        def lookup(self, *args):
            raise StoreError("profile store x: database is locked; run with --no-store to go on without it")

    lm, engine = make_lm(lambda s, u: "A")
    run = RunFolder.open(tmp_path, config(["gpg"]))
    with pytest.raises(StoreError, match="--no-store"):
        evaluate({"gpg": build_program("gpg", TASK)}, TASK, examples(3), lm, run, store=BrokenStore())


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_mid_run_starts_no_queued_example_and_keeps_the_finished(tmp_path, workers):
    from guided_profile.store import StoreError

    started, lock = [], threading.Lock()

    class StopAtThird(dspy.Module):  # the store error stands for anything that ends a run (Ctrl-C too)
        def forward(self, **inputs):
            with lock:
                started.append(inputs["history"])
                third = len(started) == 3
            if third:
                raise StoreError("stop")
            return dspy.Prediction(answer="A")

    lm, _ = make_lm(lambda s, u: "A")
    run = RunFolder.open(tmp_path, config(["dg-pc"]))
    with pytest.raises(StoreError):
        evaluate({"dg-pc": StopAtThird()}, TASK, examples(10), lm, run, workers=workers)
    assert len(started) <= 3 + workers  # the failing example, and at most the ones already in flight
    saved = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(saved) >= 2 and len(saved) == len(started) - 1


def test_totals_line_sums_every_method_and_names_cut_replies():
    from guided_profile.report import totals_line

    summaries = {"gpg": {"totals": {"calls": 3, "completion_tokens": 300, "truncated": 1, "model_seconds": 2.0}},
                 "pg": {"totals": {"calls": 2, "completion_tokens": 100, "model_seconds": 1.5}}}
    line = totals_line(summaries)
    assert "5 LM calls" in line and "400 generated tokens (1 replies cut at their token limit, 0 empty)" in line
    assert "3.5 s of model time" in line


def test_example_ids_read_numerically_then_the_named_ones():
    from guided_profile.report import by_example_id

    assert by_example_id({"10", "9", "u2", "100", "u10", "0"}) == ["0", "9", "10", "100", "u10", "u2"]


def test_answer_step_count_says_which_last_steps_are_the_answer():
    from guided_profile.evaluation import answer_step_count

    four = {"inputs": {"options": ["a", "b", "c", "d"]}}
    assert answer_step_count({"answer_mode": "score", "rotations": 4}, four) == 4
    assert answer_step_count({"answer_mode": "score", "rotations": 8}, four) == 4  # never more than the options
    assert answer_step_count({"answer_mode": "score", "rotations": 2}, four) == 2
    assert answer_step_count({"answer_mode": "score", "rotations": 4}, four | {"answer_path": "fallback-generate"}) == 2
    assert answer_step_count({"answer_mode": "generate", "rotations": None}, four) == 1


def test_a_folder_grown_across_commits_states_each_records_commit(tmp_path):
    """config.json's `git` is the latest command's; `records_at` counts the records each commit made, and a
    rerun that adds none (it only summarizes again) leaves those counts as they were."""
    def at(commit, dirty=False):
        return config(["dg-pc"]) | {"git": {"commit": commit, "dirty": dirty}}

    program = {"dg-pc": build_program("dg-pc", TASK)}
    evaluate(program, TASK, examples(1), make_lm(lambda s, u: "A")[0], RunFolder.open(tmp_path, config(["dg-pc"])))
    evaluate(program, TASK, examples(3), make_lm(lambda s, u: "A")[0], RunFolder.open(tmp_path, at("aaa")))
    evaluate(program, TASK, examples(4), make_lm(lambda s, u: "A")[0], RunFolder.open(tmp_path, at("bbb", True)))
    evaluate(program, TASK, examples(4), make_lm(lambda s, u: "A")[0], RunFolder.open(tmp_path, at("ccc")))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["git"]["commit"] == "ccc"
    assert saved["records_at"] == {"aaa": 2, "unstated": 1, "bbb+dirty": 1}
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r.get("git", {}).get("commit") for r in records] == [None, "aaa", "aaa", "bbb"]
    # a report's provenance names the latest command's commit and, as they differ, where the records came from
    assert origin(saved).endswith("at commit ccc (clean); its records: 2 at aaa, 1 at a commit not recorded, "
                                  "1 at bbb with uncommitted changes")
    assert "its records" not in origin(saved | {"records_at": {"ccc": 4}})
    assert "its records" not in origin({"records_at": {"unstated": 4}})  # no commit anywhere: said once, not twice
