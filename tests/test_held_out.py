"""A compiled program is refused on the users it was tuned on, allowed (and said so) elsewhere."""

import json

import pytest

from guided_profile.cli import main
from guided_profile.datasets.example import split_examples
from guided_profile.programs import build_program
from guided_profile.programs.export import save_compiled
from guided_profile.provenance import data_sha256
from guided_profile.runs import resolve_data
from guided_profile.tasks import get_task

TASK = get_task("preference")
SAMPLE = resolve_data(TASK, "sample")
EXAMPLES = TASK.load(SAMPLE)[0]


def tuned_on(path, *, sha=None, seed=0, data=True, task_options=None):
    """A compiled program whose file says it was tuned on the train and dev users of `seed`'s split."""
    ids = {split: [ex.example_id for ex in split_examples(EXAMPLES, split, seed)] for split in ("train", "dev")}
    meta = {"data": {"path": "sample:amazon_sample", "sha256": sha or data_sha256(SAMPLE), "seed": seed,
                     "train_ids": ids["train"], "dev_ids": ids["dev"]}} if data else {}
    if task_options is not None:
        meta["task_options"] = task_options
    save_compiled(path, build_program("gpg", TASK, answer_mode="score", rotations=4), TASK, meta)
    return str(path)


def run(tmp_path, program, *extra):
    return main(["run", "--program", program, "--lm", "fake", "--no-progress", "--no-store",
                 "--out", str(tmp_path / "run"), *extra])


@pytest.mark.parametrize("extra,needle", [
    (["--seed", "1"], "split with seed 0"),          # same data, another split: its users are mixed in
    (["--split", "dev"], "tuned on 3 of the evaluated examples"),  # its own dev users
    (["--split", "all"], "of the evaluated examples"),
])
def test_a_program_is_refused_on_users_it_was_tuned_on(tmp_path, capsys, extra, needle):
    program = tuned_on(tmp_path / "tuned.json")
    assert run(tmp_path, program, *extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tuned.json" in err and needle in err and "--allow-overlap" in err
    assert not (tmp_path / "run" / "records.jsonl").exists()  # refused before any call


def test_the_override_runs_it_and_is_recorded(tmp_path, capsys):
    program = tuned_on(tmp_path / "tuned.json")
    assert run(tmp_path, program, "--split", "dev", "--allow-overlap") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["allow_overlap"] is True
    assert config["held_out"]["tuned"].startswith("overlap allowed (--allow-overlap)")


def test_the_test_split_of_the_same_seed_is_held_out(tmp_path, capsys):
    assert run(tmp_path, tuned_on(tmp_path / "tuned.json"), "--split", "test") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["held_out"]["tuned"].startswith("held out") and config["allow_overlap"] is False
    assert "transfer" not in config["held_out"]["tuned"]
    assert f"- tuned: {config['held_out']['tuned']}" in (tmp_path / "run" / "table.md").read_text()


def test_a_program_tuned_on_another_build_of_the_data_is_held_out_and_a_transfer(tmp_path, capsys):
    program = tuned_on(tmp_path / "shown.json", task_options={"show_categories": True})
    assert run(tmp_path, program, "--split", "test") == 0
    relation = json.loads((tmp_path / "run" / "config.json").read_text())["held_out"]["shown"]
    assert relation.startswith("held out") and 'transfer: tuned with task options {"show_categories": true}' in relation
    assert run(tmp_path, program, "--split", "dev") == 2  # the same users: still refused
    assert "tuned on 3 of the evaluated examples" in capsys.readouterr().err


def test_a_program_tuned_on_other_data_is_a_transfer_evaluation(tmp_path, capsys):
    program = tuned_on(tmp_path / "elsewhere.json", sha="ab" * 32)
    assert main(["compare", "--programs", f"handwritten,{program}", "--lm", "fake", "--split", "all", "--no-progress",
                 "--no-store", "--out", str(tmp_path / "cmp")]) == 0
    assert "elsewhere: transfer" in capsys.readouterr().out
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert "**Transfer evaluation:** elsewhere was tuned on other data" in report
    assert "transfer: tuned on other data (sample:amazon_sample, sha256 abababababab)" in report


def test_an_old_file_without_data_identity_runs_and_says_what_was_not_checked(tmp_path, capsys):
    assert run(tmp_path, tuned_on(tmp_path / "old.json", data=False), "--split", "all") == 0
    assert "old: unverified: the file records no data hash" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["held_out"]["old"].startswith("unverified")
