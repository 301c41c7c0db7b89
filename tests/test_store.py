"""The profile store: reuse across methods and runs, concurrent writers, and a broken file."""

import json
import multiprocessing

import pytest

from guided_profile.cli import main
from guided_profile.store import ProfileStore, StoreError


def run_cli(tmp_path, out, *extra):
    return main(["run", "--task", "preference", "--lm", "fake", "--split", "all", "--no-progress",
                 "--answer-mode", "generate", "--store", str(tmp_path / "profiles.sqlite"),
                 "--out", str(tmp_path / out), *extra])


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_profiles_are_reused_across_methods_and_runs(tmp_path, capsys):
    assert run_cli(tmp_path, "a", "--methods", "gpg,gpg:pc+g+pp,gpg:pp") == 0
    by_method = {}
    for r in records(tmp_path / "a" / "records.jsonl"):
        by_method.setdefault(r["method"], []).append(r["usage"])
    # one digestion and one profile per user, whatever the number of ablation rows
    assert all(u["calls"] == 3 and u["store_hits"] == 0 for u in by_method["gpg"])
    assert all(u["calls"] == 1 and u["store_hits"] == 2 for u in by_method["gpg:pc+g+pp"] + by_method["gpg:pp"])
    assert run_cli(tmp_path, "b", "--methods", "gpg") == 0  # a later run
    assert all(r["usage"]["calls"] == 1 for r in records(tmp_path / "b" / "records.jsonl"))
    assert run_cli(tmp_path, "c", "--methods", "gpg", "--no-store") == 0
    assert all(r["usage"]["calls"] == 3 for r in records(tmp_path / "c" / "records.jsonl"))
    capsys.readouterr()
    user = records(tmp_path / "a" / "records.jsonl")[0]["user_id"]
    assert main(["profiles", "show", user, "--store", str(tmp_path / "profiles.sqlite")]) == 0
    shown = capsys.readouterr().out
    assert "[digest]" in shown and "[profile]" in shown and "Provide the product category" in shown


def test_a_step_cut_at_another_token_cap_is_not_read_from_the_store(tmp_path, capsys):
    assert run_cli(tmp_path, "a", "--methods", "gpg") == 0
    # stop_runaways caps preference profiles at the fitted 232 tokens; digestions keep the 256 they were made with
    assert run_cli(tmp_path, "b", "--methods", "gpg", "--task-option", "stop_runaways=true") == 0
    usage = [r["usage"] for r in records(tmp_path / "b" / "records.jsonl")]
    assert usage and all(u["store_hits"] == 1 and u["calls"] == 2 for u in usage)


def test_digests_kept_under_their_old_kind_are_still_found(tmp_path):
    """Before the rename a digest was kept as kind 'guidance': such rows still answer, and show as 'digest'."""
    store = ProfileStore(tmp_path / "old.sqlite")
    store.save("guidance", "1. item", "What?", "", "lm", "old answer", user_id="u1")
    assert store.lookup("digest", "1. item", "What?", "", "lm") == "old answer"
    assert [row["kind"] for row in store.for_user("u1")] == ["digest"]
    store.save("digest", "1. item", "What?", "", "lm", "new answer", user_id="u1")
    assert store.lookup("digest", "1. item", "What?", "", "lm") == "new answer"


def _write_many(path, start):
    store = ProfileStore(path)
    for i in range(start, start + 150):
        store.save("profile", f"history {i}", "instr", "", "lm", f"text {i}", user_id=f"u{i}")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "store.sqlite"
    ProfileStore(path).close()
    workers = [multiprocessing.get_context("spawn").Process(target=_write_many, args=(path, s)) for s in (0, 150)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    store = ProfileStore(path)
    assert store.count() == 300
    assert store.lookup("profile", "history 299", "instr", "", "lm") == "text 299"
    assert store.lookup("profile", "history 299", "instr", "", "another lm") is None


def test_a_corrupt_store_is_reported_clearly(tmp_path, capsys):
    bad = tmp_path / "profiles.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="--no-store"):
        ProfileStore(bad)
    assert run_cli(tmp_path, "d", "--methods", "gpg") == 2
    assert "--no-store" in capsys.readouterr().err
    assert run_cli(tmp_path, "e", "--methods", "gpg", "--no-store") == 0


def _digest_step():
    from guided_profile.programs.signatures import Digest
    from guided_profile.programs.stored import StoredStep

    return StoredStep(Digest.with_instructions("Which kinds?"), kind="digest", max_tokens=256)


def _lm(reply, temperature=0.0):
    import dspy

    from guided_profile.lm.fake import FakeEngine

    return dspy.LM("fake/scripted", engine=FakeEngine(lambda system, user: f"[[ ## guidance ## ]]\n{reply}"),
                   temperature=temperature, max_tokens=256, cache=False)


def _digest(store, step, lm, **kwargs):
    import dspy

    from guided_profile.programs.adapter import PersonalAdapter
    from guided_profile.programs.stored import using_store

    with using_store(store, "u1") as use, dspy.context(lm=lm, adapter=PersonalAdapter()):
        return step(history="1. drill", **kwargs).guidance, list(use.hits)


def test_the_store_keys_the_model_a_step_really_calls_and_its_temperature(tmp_path):
    store = ProfileStore(tmp_path / "s.sqlite")
    step, greedy = _digest_step(), _lm("tools")
    assert _digest(store, step, greedy) == ("tools", [])
    assert _digest(store, step, greedy) == ("tools", ["digest"])
    assert _digest(store, step, _lm("warm", temperature=1.0)) == ("warm", [])  # not the greedy row
    step.lm = _lm("own model")  # DSPy calls a step's own LM before the context's
    step.lm.model = "fake/other"
    assert _digest(store, step, greedy) == ("own model", [])


@pytest.mark.parametrize("reply", ["", "uses key sk-abcdefgh12345"])
def test_an_empty_reply_or_one_the_store_would_redact_is_not_kept(tmp_path, reply):
    store = ProfileStore(tmp_path / "s.sqlite")
    step, lm = _digest_step(), _lm(reply)
    first = _digest(store, step, lm)
    assert _digest(store, step, lm) == (first[0], [])  # computed again: a hit would return other text
    assert store.for_user("u1") == []
