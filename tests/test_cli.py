"""The command line end to end with the fake LM, and bad input as one clear line (exit 2), never a traceback."""

import json

import pytest

from guided_profile.cli import main
from guided_profile.runs import RunSettings
from guided_profile.tasks import get_task

TASK_PREFERENCE = get_task("preference")


def run_cli(tmp_path, *extra):
    return main(["run", "--task", "preference", "--lm", "fake", "--split", "all", "--no-progress",
                 "--out", str(tmp_path / "run"), *extra])


def test_preference_end_to_end_on_the_sample(tmp_path, capsys):
    assert run_cli(tmp_path, "--no-store") == 0
    out = capsys.readouterr().out
    for method in ("dg-no-pc", "dg-pc", "pg", "gpg"):
        assert f"\n{method} " in out
    # score mode (auto) and a fake LM without log-probabilities: every final step is 2 calls (score, fallback)
    assert "totals: 132 LM calls (0 answered by DSPy's cache, 0 steps taken from the profile store)" in out
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 12 * 4
    gpg = next(r for r in records if r["method"] == "gpg")
    assert gpg["guidance"] and gpg["profile"] and gpg["reply"] == "A"
    # no log-probabilities: the generated letter carries all the mass, so score mode's objective still exists
    assert set(gpg["metrics"]) == {"parsed", "parse", "outcome", "accuracy", "gold_probability", "gold_margin"}
    assert gpg["metrics"]["gold_margin"] == 2 * gpg["metrics"]["accuracy"] - 1  # all the mass on one letter
    assert gpg["metrics"]["gold_probability"] == gpg["metrics"]["accuracy"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["lm"]["model"] == "scripted-fake"
    assert summary["methods"]["gpg"]["n"] == 12
    assert "| gpg |" in (tmp_path / "run" / "table.md").read_text()
    assert summary["config"]["command"].startswith("guided-profile run --task preference --lm fake --split all")


def test_default_run_folders_keep_data_and_answer_modes_apart():
    def folder(**changes):
        settings = dict(data="sample", lm="gguf:/m/q.gguf", split="test", seed=0, answer_mode="score",
                        rotations=4) | changes
        return RunSettings.resolve("preference", **settings).default_out()

    assert str(folder()) == "runs/preference-test-sample-gguf__m_q.gguf-score4-seed0-bm25k4"  # the task retrieves
    others = [folder(data="real"), folder(data="/data/amazon_scientific"), folder(answer_mode="generate"),
              folder(rotations=2), folder(lm="local")]
    assert len({folder(), *others}) == 6
    assert str(folder(answer_mode="auto")) == str(folder())  # auto means score for a choice task


def test_rerun_resumes_without_new_calls(tmp_path, capsys, fake_calls):
    assert run_cli(tmp_path, "--methods", "gpg") == 0
    lines = (tmp_path / "run" / "records.jsonl").read_text()
    first = len(fake_calls)
    assert first > 0
    assert run_cli(tmp_path, "--methods", "gpg") == 0
    assert (tmp_path / "run" / "records.jsonl").read_text() == lines and len(fake_calls) == first


@pytest.mark.parametrize("files,needle", [
    ({"X.item.json": "{not json", "X.inter.json": "{}"}, "X.item.json"),
    ({"X.item.json": '{"1": {"title": "t", "categories": "a,b"}}', "X.inter.json": '{"u": ["1", "99"]}'},
     "99"),
])
def test_bad_data_is_one_clear_line(tmp_path, capsys, files, needle):
    data = tmp_path / "data"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    assert run_cli(tmp_path, "--data", str(data)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


@pytest.mark.parametrize("extra,needle", [
    (["--methods", "gpg,nope"], "unknown method"),
    (["--task-option", "colour=blue"], "--task-option colour: the preference task takes max_history_chars, "),
    (["--data", "/no/such/place"], "no such file"),
    (["--lm", "gguf:/no/model.gguf"], "model.gguf does not exist"),
])
def test_bad_options_are_one_clear_line(tmp_path, capsys, extra, needle):
    assert run_cli(tmp_path, *extra) == 2
    assert needle in capsys.readouterr().err


def test_tasks_lists_the_guidance_question_and_columns(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "  guidance question: Provide the product category of above one by one" in out
    assert "  columns: accuracy, correct, incorrect, abstain, unparseable" in out
    assert "  --objective choices: score mode: gold_probability, gold_margin, accuracy; generate mode: accuracy" in out


@pytest.mark.parametrize("extra,needle", [
    (["--task-option", "max_history_chars=abc"], "max_history_chars"),
    (["--task-option", "category_level=x"], "category_level must be a whole number"),
    (["--task-option", "min_categories=1.5"], "min_categories must be a whole number"),
    (["--answer-mode", "score", "--rotations", "0"], "must be at least 1"),
    (["--limit", "-3"], "must be at least 1"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, capsys, extra, needle):
    try:
        code = run_cli(tmp_path, *extra)
    except SystemExit as exc:  # argparse's own one-line usage error
        code = exc.code
    assert code == 2 and needle in capsys.readouterr().err


def test_answer_mode_auto_scores_choices_and_generates_text(tmp_path):
    assert run_cli(tmp_path, "--methods", "dg-pc", "--limit", "2") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["answer_mode"] == "score" and config["rotations"] == 4
    record = json.loads((tmp_path / "run" / "records.jsonl").read_text().splitlines()[0])
    assert record["answer_path"] == "fallback-generate"  # the fake LM gives no log-probabilities
    out = tmp_path / "text"
    assert main(["run", "--task", "paraphrase", "--methods", "dg-pc", "--lm", "fake", "--split", "all", "--limit", "1",
                 "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["answer_mode"] == "generate"


@pytest.mark.parametrize(("context", "given", "retriever", "expected"), [
    (8192, [], "recent", 6000),                             # the default window keeps the task's default
    (2048, [], "recent", 3072),                             # half of a small window, at 3 characters a token
    (2048, ["max_history_chars=9000"], "recent", 9000),     # a stated setting always wins
    (8192, [], "none", 12288),                              # the whole history: all the window holds
    (2048, [], "none", 3072),
    (8192, ["max_history_chars=9000"], "none", 9000),
])
def test_the_history_budget_follows_the_window_and_the_retriever(context, given, retriever, expected):
    from guided_profile.cli.common import parse_task_options

    options = parse_task_options(given)
    settings = RunSettings.resolve("preference", task_options=options, context_window=context, retriever=retriever)
    assert settings.make_task().max_history_chars == expected
    assert settings.task_options.get("max_history_chars", 6000) == expected  # what runs record as the task's options
    assert options == parse_task_options(given)  # the caller's options are never rewritten


def test_context_is_the_old_name_of_context_window(tmp_path, capsys):
    from guided_profile.cli import build_parser

    for flag in ("--context", "--context-window"):
        args = build_parser().parse_args(["run", flag, "2048"])
        assert args.context_window == 2048
    assert build_parser().parse_args(["run"]).context_window == 8192
    assert capsys.readouterr().err.count("--context is now --context-window") == 1
    assert "--context " not in build_parser().format_help() + _run_help()  # hidden: the old name is not taught


def test_help_states_each_retrievers_default_settings(monkeypatch):
    """--retriever-option's default is read from the retrievers' constructors, so a new one is stated too."""
    from guided_profile.retrieval import RETRIEVERS, Retriever

    class Deep(Retriever):
        name = "deep"

        def __init__(self, depth: int = 7, cache_path=None):
            self.depth = depth

    monkeypatch.setitem(RETRIEVERS, "deep", Deep)
    help_text = " ".join(_run_help().split())
    assert "bm25 k1=1.5, b=0.75" in help_text and "deep depth=7)" in help_text  # where a cache lives is no setting


def _run_help() -> str:
    from guided_profile.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["run"].format_help()
