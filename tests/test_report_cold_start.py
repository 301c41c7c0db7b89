"""experiments/report_cold_start.py on a hand-made run of the committed sample: who counts as short, and the numbers."""

import json
from pathlib import Path

import pytest
from _scripts import experiment_script

from guided_profile.runs import RunSettings, load_data

# The sample's preference users (split "all", seed 0) by history items: 7: 0; 8: 1, 2, 4; 9: 3, 5-10; 10: 11.
SHORT = {"0", "1", "2", "4"}  # fewer than 9 items
USERS = [str(i) for i in range(12)]


@pytest.fixture
def report(tmp_path, monkeypatch):
    with experiment_script("report_cold_start") as module:
        monkeypatch.setattr(module, "RESULTS", tmp_path)
        monkeypatch.setattr(module, "SOURCES", (module.Source("run", "accuracy", (9,)),))
        yield module


def write_run(folder: Path, *, sha256: str, extra_user: bool = False) -> None:
    """The fallback right on the short users only, GPG right on every user but user 0; user 99 is not in the split."""
    folder.mkdir()
    config = {"task": "preference", "task_options": {}, "data": "sample", "split": "all", "limit": 12, "seed": 0,
              "data_sha256": sha256, "lm": {"model": "qwen-test"}}
    (folder / "config.json").write_text(json.dumps(config))
    right = {"dg-no-pc": lambda u: u in SHORT, "gpg": lambda u: u != "0"}
    records = [{"method": m, "example_id": u, "error": None, "metrics": {"accuracy": float(ok(u))}}
               for m, ok in right.items() for u in USERS + ["99"] * extra_user]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_short_histories_are_paired_against_the_fallback(report, tmp_path):
    task = RunSettings.resolve(task="preference", data="sample", seed=0, task_options={}, store=None).make_task()
    write_run(tmp_path / "run", sha256=load_data(task, "sample").sha256, extra_user=True)
    text = report.main(["--out", str(tmp_path / "out.md")])
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    # 4 short users: the fallback right on all, GPG on 3 of them
    assert rows["| fewer than 9 items (cold-start at m = 9)"].startswith(
        "| fewer than 9 items (cold-start at m = 9) | 4 | 100.0 | 75.0 | -25.0 [")
    # all 12 users of the split (user 99 is not one): the fallback 4, GPG 11
    assert rows["| all"].startswith("| all | 12 | 33.3 | 91.7 | +58.3 [")
    assert (tmp_path / "out.md").read_text() == text + "\n"


def test_changed_data_is_refused_in_one_line(report, tmp_path):
    write_run(tmp_path / "run", sha256="0" * 64)
    with pytest.raises(SystemExit, match=r"sample.*the data is not what the run read"):
        report.main(["--out", str(tmp_path / "out.md")])
