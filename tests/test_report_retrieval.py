"""experiments/report_retrieval.py on small hand-made run folders: the pairing checks and the paired numbers."""

import json
from pathlib import Path

import pytest
from _scripts import experiment_script

LM = {"spec": "local", "model": "qwen-test", "sha256": "e" * 64, "api_base": None, "context": 8192}
USERS = [str(i) for i in range(1, 7)]
METEOR = {"1": 0.40, "2": 0.30, "3": 0.50, "4": 0.20, "5": 0.60, "6": 0.45}
RETRIEVAL = {"retriever": {"name": "bm25", "k1": 1.5, "b": 0.75}, "k": 4, "steps": "all"}


@pytest.fixture(scope="module")
def report():
    with experiment_script("report_retrieval") as module:
        yield module


def config(**changes):
    """A paraphrase run's config as a run made before step caps and retrieval were recorded writes it."""
    return {"task": "paraphrase", "task_options": {}, "methods": ["dg-pc", "gpg"], "data": "real:lamp7",
            "split": "test", "limit": 6, "seed": 0, "lm": LM, "answer_mode": "generate", "rotations": None,
            "n": 6, "data_sha256": "d" * 64, "git": {"commit": None, "dirty": None}, "version": "0.1.0",
            "command": "guided-profile run ..."} | changes


def record(method, user, meteor, *, tokens, history="1. a\n2. b\n3. c\n4. d\n5. e", store_hits=0, **extra):
    steps = [{"calls": 1, "cache_hits": 0, "prompt_tokens": tokens, "completion_tokens": 5}]
    return {"method": method, "example_id": user, "user_id": user, "history_cut": False,
            "inputs": {"history": history, "question": f"Paraphrase {user}", "options": []}, "gold": f"tweet {user}",
            "seconds": 1.0, "usage": {"calls": 1, "cache_hits": 0, "prompt_tokens": tokens, "store_hits": store_hits},
            "steps": steps, "error": None, "reply": f"reply {user}",
            "metrics": {"meteor": meteor, "rougeL": 0.5}} | extra


def write_run(folder: Path, cfg: dict, records: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def whole_history(results: Path) -> Path:
    """The whole-history run: both methods on all six users; gpg's first user took its profile from the store."""
    return write_run(results / "paraphrase-four-methods-1.5b", config(),
                     [record(m, u, METEOR[u], tokens=1000, store_hits=int(m == "gpg" and u == "1"))
                      for m in ("dg-pc", "gpg") for u in USERS])


def retrieved(results: Path, name="retrieval-paraphrase-bm25-k4-1.5b", gain=0.10, users=USERS[:5], **changes):
    """A retrieval run on the first five users: METEOR up by `gain` on each, 400 prompt tokens, four items kept."""
    cfg = config(retrieval=RETRIEVAL, step_max_tokens={"digest": 256, "profile": 256, "answer": 96},
                 loop_rule=None, git={"commit": "abc1234", "dirty": False}) | changes
    return write_run(results / name, cfg, [record(m, u, METEOR[u] + gain, tokens=400,
                                                  retrieval=RETRIEVAL | {"kept": [1, 2, 3, 4], "cut": False})
                                           for m in ("dg-pc", "gpg") for u in users])


def test_a_retrieval_folder_is_paired_with_the_whole_history_run_on_the_users_both_finished(report, tmp_path):
    whole_history(tmp_path)
    retrieved(tmp_path)
    text = report.main(["--results", str(tmp_path)])
    assert (tmp_path / "retrieval.md").read_text() == text + "\n"
    assert "`retrieval-paraphrase-bm25-k4-1.5b`: same settings as the whole-history run" in text
    assert "predates recorded step caps" in text  # the older config's caps are stated as assumed
    rows = [line for line in text.splitlines() if line.startswith("| bm25 | 4 |")]
    assert len(rows) == 2
    gpg = rows[0].split(" | ")
    # Five paired users (the sixth is not in the retrieval run), every METEOR difference +0.10: exact p = 2 / 2^5.
    assert gpg[2:4] == ["GPG", "5"]
    assert gpg[4] == "40.0 → 50.0: +10.0 [+10.0, +10.0], p = 0.062"
    assert gpg[5] == "50.0 → 50.0: +0.0 [+0.0, +0.0], p = 1.000"
    assert gpg[6:9] == ["100%", "4.0", "0"]  # same replies; 4 items kept of 5: never the whole history
    assert gpg[9] == "1000 → 400 (n 4)"  # user 1's whole-history GPG took a step from the store: left out
    assert gpg[10].rstrip(" |") == "1000 → 400 (n 5)"
    assert "No whole-history run `table1-preference-titles-score-1.5b` to pair with." in text


def test_paired_differences_follow_the_records(report, tmp_path):
    whole_history(tmp_path)
    retrieved(tmp_path, gain=-0.05)
    run, baseline = (report.Run.read(tmp_path / name) for name in ("retrieval-paraphrase-bm25-k4-1.5b",
                                                                    "paraphrase-four-methods-1.5b"))
    row, problems = report.method_row(report.STUDIES[0], run, baseline, "dg-pc")
    assert problems == []
    assert row[4].startswith("40.0 → 35.0: -5.0 [-5.0, -5.0]")


@pytest.mark.parametrize(("changes", "needle"), [
    ({"task_options": {"max_history_chars": 3000}}, "task option max_history_chars: 3000 here, 6000 in the whole"),
    ({"answer_mode": "score", "rotations": 4}, "answer_mode: 'score' here, 'generate'"),
    ({"lm": LM | {"sha256": "f" * 64}}, "weights sha256"),
    ({"data_sha256": None}, "data_sha256 not recorded by this run"),
    ({"retrieval": {"retriever": {"name": "recent"}, "k": None, "steps": "all"}}, "does not retrieve"),
    ({"step_max_tokens": {"digest": 32, "profile": 256, "answer": 72}}, "step_max_tokens"),
    ({"prompt_layout": "options-last"}, "prompt_layout: 'options-last' here, 'instruction-last'"),
    ({"lm": LM | {"draft_ngram": 3}}, "draft_ngram: 3 here, None"),
])
def test_a_run_with_other_settings_is_named_not_a_valid_pairing(report, tmp_path, changes, needle):
    whole_history(tmp_path)
    retrieved(tmp_path, **changes)
    text = report.main(["--results", str(tmp_path)])
    check = next(line for line in text.splitlines() if line.startswith("- `retrieval-paraphrase-bm25-k4-1.5b`"))
    assert "**not a valid pairing**" in check and needle in check
    marked = [line for line in text.splitlines() if line.startswith("| ") and "(**not a valid pairing**) |" in line]
    assert len(marked) == 2  # both methods' rows, marked where they are read


def test_users_whose_recorded_inputs_differ_are_named(report, tmp_path):
    whole_history(tmp_path)
    folder = retrieved(tmp_path)
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    records[0]["inputs"]["history"] = "1. a\n2. b"  # another history budget cut this user's history
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = report.main(["--results", str(tmp_path)])
    assert "**not a valid pairing**: dg-pc: other inputs or gold on 1 of 5 users (first: 1)" in text


def test_kept_whole_means_every_item_of_an_uncut_history(report):
    reference = {"inputs": {"history": "1. a\n2. b\n3. c"}, "history_cut": False}
    assert report.kept_whole({"retrieval": {"kept": [0, 1, 2]}}, reference)
    assert not report.kept_whole({"retrieval": {"kept": [0, 2]}}, reference)
    assert not report.kept_whole({"retrieval": {"kept": [0, 1, 2]}}, reference | {"history_cut": True})


def test_without_runs_the_report_says_what_to_run(report, tmp_path):
    text = report.main(["--results", str(tmp_path)])
    assert "No whole-history run `paraphrase-four-methods-1.5b`" in text
    whole_history(tmp_path)
    assert "run `experiments/retrieval_paraphrase.sh`" in report.main(["--results", str(tmp_path)])


def test_dev_runs_are_reported_apart_from_test_runs_against_the_dev_whole_history_run(report, tmp_path):
    dev = {"task": "preference", "split": "dev", "methods": ["gpg"], "data": "real:amazon_scientific",
           "answer_mode": "score", "rotations": 4}
    write_run(tmp_path / "answer-mode-dev-preference-score-1.5b", config(**dev),
              [record("gpg", u, 0.5, tokens=900) for u in USERS])
    retrieved(tmp_path, name="retrieval-dev-preference-dense-k8-1.5b", **dev,
              step_max_tokens={"digest": 256, "profile": 256, "answer": 32})
    text = report.main(["--results", str(tmp_path)])
    dev_section = text[text.index("## preference, dev users"):text.index("## preference, test users")]
    assert "`retrieval-dev-preference-dense-k8-1.5b`: same settings as the whole-history run" in dev_section
    assert "| bm25 | 4 | GPG | 5 |" in dev_section  # the folder's config names its retriever
    test_section = text[text.index("## preference, test users"):]
    assert "No whole-history run `table1-preference-titles-score-1.5b`" in test_section


def test_gold_probability_is_read_from_the_letter_probabilities_of_records_that_predate_it(report, tmp_path):
    old = record("gpg", "1", 0.5, tokens=900, gold="C", choice_probs=[0.1, 0.2, 0.6, 0.1])
    old["metrics"] = {"accuracy": 1.0}
    new = record("gpg", "2", 0.5, tokens=900, gold="A", choice_probs=[0.3, 0.3, 0.2, 0.2])
    new["metrics"] = {"accuracy": 1.0, "gold_probability": 0.3}
    generated = record("gpg", "3", 0.5, tokens=900)  # generate mode: no letter probabilities, nothing to read
    run = report.Run.read(write_run(tmp_path / "whole", config(), [old, new, generated]))
    assert run.backfilled == 1
    assert run.records[("gpg", "1")]["metrics"]["gold_probability"] == 0.6
    assert run.records[("gpg", "2")]["metrics"]["gold_probability"] == 0.3
    assert "gold_probability" not in run.records[("gpg", "3")]["metrics"]


def dev_run(folder: Path, accuracy: dict, gold: float, tokens: int, **changes) -> Path:
    """A preference dev run of GPG in score mode: accuracy per user, one gold-option probability for all."""
    settings = {"task": "preference", "split": "dev", "methods": ["gpg"], "data": "real:amazon_scientific",
                "answer_mode": "score", "rotations": 4} | changes
    extra = {"retrieval": changes["retrieval"] | {"kept": [1, 2, 3, 4], "cut": False}} if "retrieval" in changes else {}
    return write_run(folder, config(**settings), [
        record("gpg", u, 0, tokens=tokens, metrics={"accuracy": a, "gold_probability": gold}, **extra)
        for u, a in accuracy.items()])


@pytest.mark.parametrize(("users", "expected"), [
    (USERS[:5], "Not applied yet: 5 folders have fewer than 6 paired users"),
    (USERS, "the default becomes dense with k = 4"),
])
def test_the_dev_rule_picks_the_best_passing_retriever_once_every_user_is_in(report, tmp_path, users, expected):
    whole = {u: float(u in "123") for u in USERS}  # 3 of 6 right
    dev_run(tmp_path / "answer-mode-dev-preference-score-1.5b", whole, 0.30, tokens=900)
    caps = {"step_max_tokens": {"digest": 256, "profile": 256, "answer": 32}}
    for name, k, accuracy, gold, tokens in [
            ("recent", 4, {u: whole[u] for u in users}, 0.31, 400),      # passes, lower probability than dense
            ("bm25", 4, {u: 1.0 for u in users}, 0.29, 400),             # more right, but less probable: fails
            ("bm25", 8, {u: float(u in "12") for u in users}, 0.50, 400),  # more probable, but less right: fails
            ("dense", 4, {u: float(u in "1234") for u in users}, 0.35, 400),  # passes, the best
            ("dense", 8, {u: 1.0 for u in users}, 0.40, 950)]:           # reads more tokens: fails
        retrieval = {"retriever": {"name": name}, "k": k, "steps": "all"}
        dev_run(tmp_path / f"retrieval-dev-preference-{name}-k{k}-1.5b", accuracy, gold, tokens,
                retrieval=retrieval, **caps)
    text = report.main(["--results", str(tmp_path)])
    outcome = text[text.index("**The rule**"):text.index("## preference, test users")]
    assert expected in outcome
    if users == USERS:
        assert "2 pass (recent k = 4, dense k = 4)" in outcome


def test_paraphrase_s_dev_rule_needs_meteor_and_rouge_l_and_picks_the_highest_meteor(report, tmp_path):
    write_run(tmp_path / "paraphrase-dev-whole-history-1.5b", config(split="dev"),
              [record(m, u, METEOR[u], tokens=1000) for m in ("dg-pc", "gpg") for u in USERS])
    for name, meteor_gain, rouge in [("recent", 0.01, 0.50), ("bm25", 0.20, 0.49), ("dense", 0.05, 0.60)]:
        retrieval = {"retriever": {"name": name}, "k": 4, "steps": "all"}
        cfg = config(split="dev", retrieval=retrieval, loop_rule=None,
                     step_max_tokens={"digest": 256, "profile": 256, "answer": 96})
        write_run(tmp_path / f"retrieval-dev-paraphrase-{name}-k4-1.5b", cfg, [
            record(m, u, 0, tokens=400, retrieval=retrieval | {"kept": [1, 2, 3, 4], "cut": False},
                   metrics={"meteor": METEOR[u] + meteor_gain, "rougeL": rouge})
            for m in ("dg-pc", "gpg") for u in USERS])
    text = report.main(["--results", str(tmp_path)])
    dev = text[text.index("## paraphrase, dev users"):text.index("## paraphrase, test users")]
    assert "its GPG METEOR and ROUGE-L are each at least the whole history's" in dev
    # bm25 has the best METEOR but a lower ROUGE-L: it fails
    assert "**Outcome: 2 pass (recent k = 4, dense k = 4); the default becomes dense with k = 4.**" in dev


def test_the_dev_rule_is_not_applied_over_an_invalid_pairing(report, tmp_path):
    whole = {u: 0.0 for u in USERS}
    dev_run(tmp_path / "answer-mode-dev-preference-score-1.5b", whole, 0.30, tokens=900)
    retrieval = {"retriever": {"name": "bm25"}, "k": 4, "steps": "all"}
    dev_run(tmp_path / "retrieval-dev-preference-bm25-k4-1.5b", {u: 1.0 for u in USERS}, 0.90, 400,
            retrieval=retrieval, seed=1, step_max_tokens={"digest": 256, "profile": 256, "answer": 32})
    text = report.main(["--results", str(tmp_path)])
    assert "Not applied: retrieval-dev-preference-bm25-k4-1.5b not a valid pairing" in text
    assert "the default becomes" not in text


@pytest.mark.parametrize(("users", "gold", "expected"), [
    (USERS[:5], 0.35, "so far: it held on the first 5 of 6 users.  Partial: what counts"),
    (USERS, 0.35, "**The dev choice (bm25 k = 4) held on all 6 test users**"),
    (USERS, 0.25, "**The dev choice (bm25 k = 4) did not hold on all 6 test users**"),
])
def test_the_test_section_reads_whether_the_dev_choice_held(report, tmp_path, users, gold, expected):
    whole = {u: float(u in "123") for u in USERS}
    dev_run(tmp_path / "table1-preference-titles-score-1.5b", whole, 0.30, tokens=900, split="test")
    caps = {"step_max_tokens": {"digest": 256, "profile": 256, "answer": 32}}
    for name in ("bm25", "dense"):  # preference's default is bm25 with k = 4; dense is not read
        retrieval = {"retriever": {"name": name}, "k": 4, "steps": "all"}
        dev_run(tmp_path / f"retrieval-preference-{name}-k4-1.5b", {u: whole[u] for u in users}, gold, 400,
                split="test", retrieval=retrieval, **caps)
    text = report.main(["--results", str(tmp_path)])
    assert expected in text[text.index("## preference, test users"):]
    assert "dev choice (dense" not in text


def test_users_with_their_gold_text_in_their_own_history_are_counted(report, tmp_path):
    results = tmp_path / "results"
    history = "1. @ann PLEASE pass this on\n2. lunch was fine"
    records = [record("gpg", "1", 0.4, tokens=1000, history=history) | {"gold": "@bob please pass  this on"},
               record("gpg", "2", 0.4, tokens=1000, history=history) | {"gold": "a new tweet about lunch"}]
    write_run(results / "paraphrase-four-methods-1.5b", config(), records)
    retrieved(results, users=["1", "2"])
    assert report.gold_in_history(report.Run.read(results / "paraphrase-four-methods-1.5b"), "gpg") == ["1"]
    assert "Gold in the history: 1 of 2 users" in report.markdown(results) and "(example ids 1)" in report.markdown(
        results)
