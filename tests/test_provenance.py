"""Whether a result's code differed from its commit: code counts, committed results do not."""

import subprocess

from guided_profile.provenance import git_state


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_a_tree_is_dirty_for_code_changes_and_new_files_but_not_for_results(tmp_path):
    results = tmp_path / "experiments" / "results" / "run"
    results.mkdir(parents=True)
    (results / "records.jsonl").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")

    (results / "records.jsonl").write_text("{}\n{}\n")  # a resumed run grew its committed records
    (results.parent / "new-run").mkdir()
    (results.parent / "new-run" / "config.json").write_text("{}")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "helper.py").write_text("y = 2\n")  # new code, not yet added
    assert git_state.__wrapped__(tmp_path)["dirty"] is True
    (tmp_path / "helper.py").unlink()
    (tmp_path / "code.py").write_text("x = 2\n")
    state = git_state.__wrapped__(tmp_path)
    assert state["dirty"] is True and len(state["commit"]) == 40


def test_outside_a_checkout_nothing_is_claimed(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
