"""Compare: paired statistics on fixed numbers, rows from records, and the command end to end."""

import json
import math

import pytest

from guided_profile.cli import main as cli_main
from guided_profile.compare import comparison_rows, instructions_table
from guided_profile.metrics.stats import bootstrap_ci, paired_bootstrap, paired_permutation_pvalue
from guided_profile.programs import build_program
from guided_profile.programs.export import save_compiled
from guided_profile.tasks import get_task

TASK = get_task("preference")
NEW_Q = "Which product families does this person buy again and again?"


def test_exact_permutation_p_value_on_a_known_case():
    # differences 1,1,1,1,0: of the 16 sign patterns of the four non-zero ones, only all + and
    # all - reach |sum| >= 4, so p = 2/16
    assert paired_permutation_pvalue([1, 1, 1, 1, 0], [0, 0, 0, 0, 0]) == pytest.approx(0.125)
    # 3 better, 1 worse (|sum| = 2): sign patterns sum to 4, 2, 0, -2, -4 in 1, 4, 6, 4, 1 ways -> 10 / 16
    assert paired_permutation_pvalue([1, 1, 1, 0], [0, 0, 0, 1]) == pytest.approx(10 / 16)
    assert paired_permutation_pvalue([1, 0, 1], [1, 0, 1]) == 1.0  # no difference at all
    assert paired_permutation_pvalue([0.5, 0.25], [0.0, 0.5]) == pytest.approx(1.0)  # +0.5, -0.25: 4/4


def test_monte_carlo_p_value_agrees_with_the_exact_one():
    a = [1] * 10 + [0] * 10
    b = [0] * 10 + [1] * 4 + [0] * 6  # 10 better, 4 worse, 6 ties: 14 non-zero differences
    exact = paired_permutation_pvalue(a, b)
    # with +-1 differences the sign-flip test is the two-sided sign test: 2 * P(X >= 10), X ~ Bin(14, 1/2)
    assert exact == pytest.approx(2 * (1001 + 364 + 91 + 14 + 1) / 2**14)
    sampled = paired_permutation_pvalue(a, b, exact_up_to=0, n_perm=20000)
    assert exact == pytest.approx(sampled, abs=0.01)
    assert paired_permutation_pvalue([1] * 30, [0] * 30, n_perm=999) == pytest.approx(1 / 1000)  # never 0


def test_bootstrap_interval_bounds():
    mean, lo, hi = paired_bootstrap([1, 1, 0, 0, 1, 0, 1, 1], [0] * 8)
    assert mean == 0.625 and 0 <= lo < mean < hi <= 1
    assert paired_bootstrap([0.7] * 5, [0.2] * 5) == pytest.approx((0.5, 0.5, 0.5))  # no spread, no width
    lo, hi = bootstrap_ci([0, 1] * 50)
    assert 0.39 < lo < 0.45 and 0.55 < hi < 0.61  # +- ~1.96 * 0.05 around 0.5
    assert all(math.isnan(v) for v in paired_bootstrap([], []))
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1])


def test_statistics_do_not_depend_on_the_order_a_report_reads_the_examples_in():
    scores = [0.1 * (i % 7) + 0.01 * i for i in range(30)]
    other = [0.35] * 30
    assert bootstrap_ci(scores) == bootstrap_ci(scores[::-1])
    assert paired_bootstrap(scores, other) == paired_bootstrap(scores[::-1], other[::-1])
    assert paired_permutation_pvalue(scores, other, exact_up_to=0) == \
        paired_permutation_pvalue(scores[::-1], other[::-1], exact_up_to=0)


def record(method, eid, score):
    return {"method": method, "example_id": eid, "metrics": {"accuracy": score}}


class Ex:
    def __init__(self, eid, user=None):
        self.example_id, self.user_id = eid, user or eid


def test_rows_pair_examples_and_ignore_unpaired_ones():
    examples = [Ex(f"u{i}") for i in range(5)]
    base = [1, 0, 0, 0, 1]
    tuned = [1, 1, 1, 0, None]  # u4 failed for the tuned program
    done = {("handwritten", f"u{i}"): record("handwritten", f"u{i}", s) for i, s in enumerate(base)}
    done |= {("tuned", f"u{i}"): record("tuned", f"u{i}", s) for i, s in enumerate(tuned) if s is not None}
    per = {"calls": 3.0, "prompt_tokens": 100.0, "completion_tokens": 10.0}
    summaries = {m: {"accuracy": 0.0, "n": n, "ci95": None, "per_example": per}
                 for m, n in (("handwritten", 5), ("tuned", 4))}
    rows = {r["method"]: r for r in comparison_rows(TASK, summaries, done, examples)}
    assert "diff" not in rows["handwritten"]
    tuned_row = rows["tuned"]
    assert tuned_row["n"] == 4 and tuned_row["paired_n"] == 4
    assert tuned_row["diff"] == pytest.approx(0.5)  # (0 + 1 + 1 + 0) / 4 on the paired users
    assert tuned_row["p"] == pytest.approx(0.5)  # two +1 differences: 2 of 4 patterns reach |2|
    assert tuned_row["tokens"] == 110.0


def test_a_users_examples_are_averaged_before_pairing():
    """Two turns of one dialogue persona are one paired draw, not two: n and the test count users."""
    examples = [Ex("a1", "a"), Ex("a2", "a"), Ex("b1", "b"), Ex("b2", "b"), Ex("c1", "c")]
    base = [0.0, 0.0, 0.5, 0.5, 0.25]
    tuned = [1.0, 0.0, 0.5, 1.0, 0.25]
    done = {(method, e.example_id): record(method, e.example_id, score)
            for method, scores in (("handwritten", base), ("tuned", tuned))
            for e, score in zip(examples, scores, strict=True)}
    per = {"calls": 3.0, "prompt_tokens": 100.0, "completion_tokens": 10.0}
    summaries = {m: {"accuracy": 0.0, "n": 5, "ci95": None, "per_example": per} for m in ("handwritten", "tuned")}
    row = {r["method"]: r for r in comparison_rows(TASK, summaries, done, examples)}["tuned"]
    assert row["paired_n"] == 3
    assert row["diff"] == pytest.approx((0.5 + 0.25 + 0.0) / 3)  # per user: a +0.5, b +0.25, c 0
    assert row["p"] == pytest.approx(0.5)  # two users differ, both up: 2 of 4 sign patterns reach the sum


def test_instructions_side_by_side_marks_what_changed():
    tuned = build_program("gpg", TASK)
    tuned.digest.signature = tuned.digest.signature.with_instructions(NEW_Q)
    text = instructions_table({"handwritten": build_program("gpg", TASK), "tuned": tuned})
    digest_row = next(line for line in text.splitlines() if line.startswith("| digest"))
    assert TASK.guidance_question in digest_row and f"**changed:** {NEW_Q}" in digest_row
    profile_row = next(line for line in text.splitlines() if line.startswith("| write_profile"))
    assert "changed" not in profile_row
    history_row = next(line for line in text.splitlines() if line.startswith("| history read"))
    assert "changed" not in history_row and "every item" in history_row


def test_instructions_side_by_side_says_which_history_each_program_reads():
    from guided_profile.programs.retrieved import Retrieval

    retrieving = build_program("gpg", TASK, retrieval=Retrieval("bm25", k=4))
    text = instructions_table({"handwritten": build_program("gpg", TASK), "tuned": retrieving})
    history_row = next(line for line in text.splitlines() if line.startswith("| history read"))
    assert "| every item, most recent kept within max_history_chars |" in history_row
    assert "**changed:** bm25 top 4, k1=1.5, b=0.75 (all steps)" in history_row


def test_compare_command_reports_resumes_and_draws(tmp_path, capsys, fake_calls):
    tuned = build_program("gpg", TASK)
    tuned.digest.signature = tuned.digest.signature.with_instructions(NEW_Q)
    path = tmp_path / "tuned.json"
    save_compiled(path, tuned, TASK, {"optimizer": {"name": "gepa", "settings": {"max_metric_calls": 9}},
                                      "scores": {"train": 0.5, "dev": 1.0}, "usage": {"calls": 42}})
    out = tmp_path / "cmp"
    argv = ["compare", "--task", "preference", "--programs", f"{path},dg-pc", "--lm", "fake", "--split", "test",
            "--out", str(out), "--no-progress", "--answer-mode", "generate"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "handwritten" in printed and "tuned" in printed and "p (paired perm.)" in printed
    report = (out / "compare.md").read_text()
    assert f"**changed:** {NEW_Q}" in report and TASK.guidance_question in report
    assert "| tuned | gepa |" in report and "| 42 (last session) |" in report  # a file from before the ledger
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "records.jsonl").read_text().splitlines()
    assert {json.loads(line)["method"] for line in lines} == {"handwritten", "tuned", "dg-pc"}
    first = len(fake_calls)
    assert first > 0
    assert cli_main(argv) == 0  # resumed: nothing left to run, and no call made
    assert (out / "records.jsonl").read_text().splitlines() == lines and len(fake_calls) == first


def test_compare_refuses_a_program_of_another_kind(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli_main(["compare", "--programs", f"handwritten,{bad}", "--lm", "fake", "--out", str(tmp_path)]) == 2
    assert "not a compiled guided-profile program" in capsys.readouterr().err


def test_compare_refuses_to_pair_programs_that_answer_differently(tmp_path, capsys):
    scored = build_program("gpg", TASK, answer_mode="score", rotations=4)
    path = tmp_path / "scored.json"
    save_compiled(path, scored, TASK, {"optimizer": {"name": "gepa", "settings": {}}, "scores": {}, "usage": {}})
    argv = ["compare", "--programs", f"handwritten,{path}", "--lm", "fake", "--out", str(tmp_path / "c"),
            "--no-progress"]
    assert cli_main([*argv, "--answer-mode", "generate"]) == 2
    assert "--answer-mode score --rotations 4" in capsys.readouterr().err
    assert cli_main([*argv, "--answer-mode", "score"]) == 0


def test_the_cost_of_a_search_resumed_over_sessions_is_their_sum():
    from guided_profile.compare import _cost

    usage = {"model_calls": 7, "all_sessions": {"sessions": 3, "seconds": 900.4, "model_calls": 120,
                                                "prompt_tokens": 0, "completion_tokens": 0}}
    assert _cost(usage, 12.0) == ("120 (3 sessions)", "900")  # not the last session's 7 calls and 12 s
    assert _cost({"model_calls": 7}, 12.0) == ("7 (last session)", "12")
