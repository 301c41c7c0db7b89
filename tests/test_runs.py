"""The library API: the README's snippet does what `guided-profile run` does, settings are resolved
without touching the caller's options, and what a run writes names no folder of this machine."""

import json
import re
from pathlib import Path

import pytest

from guided_profile.cli import main
from guided_profile.datasets.example import data_root, samples_dir
from guided_profile.evaluation import RunFolder
from guided_profile.provenance import cached_data_sha256, data_sha256, portable
from guided_profile.runs import RunSettings, _portable_storage, resolve_data
from guided_profile.tasks import get_task

README = Path(__file__).resolve().parents[1] / "README.md"
TASK = get_task("preference")


def readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    return re.search(r"<!-- library-snippet -->\n```python\n(.*?)```", text, re.S).group(1)


def records(folder: Path) -> list[dict]:
    keep = ("method", "example_id", "inputs", "gold", "reply", "guidance", "profile", "metrics")
    lines = (folder / "records.jsonl").read_text().splitlines()
    return sorted(({k: r.get(k) for k in keep} for r in map(json.loads, lines)),
                  key=lambda r: (r["method"], r["example_id"]))


def test_the_readme_snippet_does_what_the_run_command_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    snippet = readme_snippet()
    assert len(snippet.strip().splitlines()) <= 6 and 'lm="fake"' in snippet
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "gpg" in printed and "accuracy" in printed
    assert main(["run", "--task", "preference", "--data", "sample", "--limit", "5", "--lm", "fake",
                 "--out", "cli-run", "--no-progress"]) == 0
    library, cli = records(tmp_path / "runs" / "library-demo"), records(tmp_path / "cli-run")
    assert library == cli and {r["method"] for r in cli} == {"dg-no-pc", "dg-pc", "pg", "gpg"}
    config = json.loads((tmp_path / "runs" / "library-demo" / "config.json").read_text())
    assert config["command"].startswith("guided_profile.runs.run_methods")


def test_settings_are_resolved_once_and_the_callers_options_stay_as_given():
    given = {"min_categories": 2}
    settings = RunSettings.resolve("preference", task_options=given, context_window=2048, answer_mode="auto")
    assert given == {"min_categories": 2}  # not rewritten
    assert settings.answer_mode == "score" and settings.task_options["max_history_chars"] == 3072
    assert RunSettings.resolve("paraphrase").answer_mode == "generate"
    with pytest.raises(AttributeError):
        settings.answer_mode = "generate"  # frozen: no later step can change what was decided
    assert RunSettings.resolve("preference", cache=False).store is None  # no cache means no store either


def test_data_is_named_portably_and_old_absolute_names_still_resume(tmp_path, monkeypatch):
    assert portable(samples_dir() / "amazon_sample", "sample") == "sample:amazon_sample"
    assert resolve_data(TASK, "sample:amazon_sample") == resolve_data(TASK, "sample")
    monkeypatch.setenv("GUIDED_PROFILE_DATA", str(tmp_path / "root"))
    (tmp_path / "root" / "amazon_scientific").mkdir(parents=True)
    assert portable(tmp_path / "root" / "amazon_scientific", "real") == "real:amazon_scientific"
    assert portable(tmp_path / "elsewhere", "./elsewhere") == "./elsewhere"  # other paths: as the user gave them
    # an absolute path names no folder of this machine: relative to the working folder, else only its name
    assert portable(tmp_path / "elsewhere", str(tmp_path / "elsewhere")) == ".../elsewhere"
    monkeypatch.chdir(tmp_path)
    assert portable(tmp_path / "mine" / "data.json", str(tmp_path / "mine" / "data.json")) == "mine/data.json"
    config = {"task": "preference", "split": "test", "seed": 0, "lm": {}, "task_options": {}, "methods": ["gpg"],
              "answer_mode": "score", "rotations": 4}
    RunFolder.open(tmp_path / "run", config | {"data": str(tmp_path / "root" / "amazon_scientific")})  # an old run
    RunFolder.open(tmp_path / "run", config | {"data": "real:amazon_scientific"})  # today's name resumes it


def test_the_data_hash_is_cached_and_follows_content(tmp_path):
    (tmp_path / "a.json").write_text("1")
    assert cached_data_sha256(tmp_path) == data_sha256(tmp_path)
    (tmp_path / "a.json").write_text("22")  # another size: another key
    assert cached_data_sha256(tmp_path) == data_sha256(tmp_path)


def test_the_default_study_is_named_relative_to_its_run_folder(tmp_path):
    default = f"sqlite:///{(tmp_path / 'x.run').resolve() / 'study.db'}"
    params = _portable_storage({"storage": default, "trials": 3}, tmp_path / "x.run")
    assert params == {"storage": "study.db", "trials": 3}
    assert _portable_storage({"storage": "postgresql://u:pw@h/db"}, tmp_path)["storage"] == "postgresql://u:***@h/db"


def test_nothing_written_names_a_folder_of_this_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = ["--lm", "fake", "--no-progress"]
    assert main(["optimize", "--optimizer", "copro", "--option", "breadth=2", "--option", "depth=1", "--lm", "fake",
                 "--train-limit", "2", "--dev-limit", "2", "--budget", "200", "--confirm-fraction", "0",
                 "--out", "tuned.json"]) == 0
    assert main(["run", "--program", "tuned.json", "--out", "run", "--store", "s.sqlite", "--limit", "2", *fake]) == 0
    assert main(["compare", "--programs", "handwritten,tuned.json", "--out", "cmp", "--store", "s.sqlite",
                 "--limit", "2", *fake]) == 0
    machine = {str(tmp_path), str(tmp_path.resolve()), str(samples_dir()), str(Path(__file__).resolve().parents[1])}
    if data_root() is not None:
        machine.add(str(data_root()))
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".md")]
    assert len(written) >= 8
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert not [folder for folder in machine if folder in text], path
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"] == "sample:amazon_sample"
    assert config["data_sha256"] == data_sha256(resolve_data(TASK, "sample"))
    assert config["n"] == 2 and config["seed"] == 0 and config["split"] == "test" and config["version"]
    assert set(config["git"]) == {"commit", "dirty"} and config["lm"]["model"] == "scripted-fake"
    for report in (tmp_path / "run" / "table.md", tmp_path / "cmp" / "compare.md"):
        header = report.read_text()
        assert "Data `sample:amazon_sample`" in header and config["data_sha256"][:12] in header
        assert "n = 2" in header and "guided-profile" in header and "at commit" in header


def test_no_committed_result_names_a_folder_of_the_machine_that_made_it():
    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    absolute = re.compile(r"(?<![\w.:/])/(work|root|home|tmp|Users|mnt|data)/")
    files = [p for p in results.rglob("*") if p.suffix in (".json", ".md") and p.is_file()]
    assert len(files) > 20
    named = [str(p.relative_to(results)) for p in files if absolute.search(p.read_text(encoding="utf-8"))]
    assert named == []


def test_a_finished_folder_is_summarized_again_without_loading_a_model(tmp_path, monkeypatch):
    """Loading the 1.5B weights takes seconds: a rerun with nothing left to do must not pay for them."""
    import guided_profile.lm

    loaded = []
    real = guided_profile.lm.make_lm
    monkeypatch.setattr(guided_profile.lm, "make_lm", lambda *a, **k: loaded.append(1) or real(*a, **k))
    command = ["run", "--task", "preference", "--data", "sample", "--split", "all", "--methods", "gpg", "--lm", "fake",
               "--limit", "2", "--no-progress", "--out", str(tmp_path / "run")]
    assert main([*command, "--limit", "2"]) == 0 and len(loaded) == 1
    assert main([*command, "--limit", "2"]) == 0 and len(loaded) == 1  # finished: no model
    assert len(records(tmp_path / "run")) == 2
    assert main([*command, "--limit", "3"]) == 0 and len(loaded) == 2  # one example left: the model is loaded
    assert len(records(tmp_path / "run")) == 3


def test_a_folder_whose_model_failed_to_load_takes_the_corrected_rerun(tmp_path, monkeypatch, capsys):
    """A load that fails must leave no folder whose config would refuse the rerun with other settings (a smaller
    context window, say) for a run that never happened."""
    import guided_profile.lm
    from guided_profile.errors import ConfigError

    real = guided_profile.lm.make_lm

    def fails(*args, **kwargs):
        raise ConfigError("the model does not fit in memory")
    command = ["run", "--task", "preference", "--data", "sample", "--split", "all", "--methods", "gpg", "--lm", "fake",
               "--limit", "2", "--no-progress", "--out", str(tmp_path / "run")]
    monkeypatch.setattr(guided_profile.lm, "make_lm", fails)
    assert main([*command, "--seed", "0"]) == 2 and "does not fit" in capsys.readouterr().err
    monkeypatch.setattr(guided_profile.lm, "make_lm", real)
    assert main([*command, "--seed", "1"]) == 0 and len(records(tmp_path / "run")) == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 1
    assert main([*command, "--seed", "0"]) == 2  # now it holds records of seed 1
    assert "holds a run with different seed" in capsys.readouterr().err
