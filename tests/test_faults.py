"""Faults while running (issue 19): a second writer, interrupts, kills, an endpoint that is down, corrupt or
non-regular files, a store in use, and secrets in everything written.  Each ends in one clear line or a
clean resume: no traceback, no hang, no record lost or doubled."""

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from _http_stub import StubServer
from _servers import free_port

from guided_profile.cli import main
from guided_profile.evaluation import read_records, record_problem
from guided_profile.lm.fake import DELAY_ENV, FakeEngine, default_rule

ROOT = Path(__file__).resolve().parents[1]
SECRET = "planted-secret-123"
FAKE_RUN = ["run", "--task", "preference", "--lm", "fake", "--split", "all", "--no-progress", "--answer-mode",
            "generate"]
USERS = 12  # in the preference sample


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `python -m guided_profile` subprocess: this worktree's package, a cache of its own."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), GUIDED_PROFILE_CACHE=str(tmp_path / "cache"), **extra)
    env.pop("DSPY_CACHEDIR", None)  # DSPy's cache goes under the cache folder, as for a user
    return env


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_left():
    """A test that fails while its run is going kills that run (by its own handle) instead of leaving it."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def start_cli(tmp_path: Path, *args: str, delay: float = 0.0) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "guided_profile", *FAKE_RUN, *args], cwd=tmp_path,
                               env=cli_env(tmp_path, **{DELAY_ENV: str(delay)}), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    STARTED.append(process)
    return process


def record_keys(out: Path) -> list[tuple[str, str]]:
    """(method, example id) of every finished record in the folder, repeats included."""
    text = (out / "records.jsonl").read_text() if (out / "records.jsonl").exists() else ""
    records = []
    for line in text.split("\n"):  # not splitlines: a reply may hold U+2028
        try:
            records.append(json.loads(line))
        except ValueError:  # empty, or being written (or cut by kill -9): the run skips it too
            continue
    return [(r["method"], r["example_id"]) for r in records if r["error"] is None]


def wait_for_records(out: Path, n: int, process: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while len(record_keys(out)) < n:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < end, "the run wrote no records in time"
        time.sleep(0.05)


@pytest.fixture
def no_hang():
    """Fails a test (instead of hanging the session) if opening a pipe blocks."""
    def hung(signum, frame):
        raise TimeoutError("blocked: a non-regular file was opened")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# -- one writer per run folder -------------------------------------------------------------------------

def test_a_second_run_on_the_same_folder_is_refused_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    first = start_cli(tmp_path, "--methods", "dg-no-pc", "--parallel", "1", "--out", str(out), delay=2.0)
    wait_for_records(out, 1, first)  # slow enough to outlast the second command's start on a busy machine
    second = subprocess.run([sys.executable, "-m", "guided_profile", *FAKE_RUN, "--methods", "dg-no-pc",
                             "--out", str(out)], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert first.poll() is None, "the first run ended before the second started: nothing was tested"
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by process" in lines[0] and str(first.pid) in lines[0]
    assert "guided-profile run" in lines[0]
    first.terminate()
    first.communicate(timeout=30)
    keys = record_keys(out)
    assert keys and len(set(keys)) == len(keys)  # nothing doubled by the refused run
    again = subprocess.run([sys.executable, "-m", "guided_profile", *FAKE_RUN, "--methods", "dg-no-pc",
                            "--out", str(out)], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr  # the lock went with its process
    assert len(record_keys(out)) == len(set(record_keys(out))) == USERS


# -- interrupts and kills ----------------------------------------------------------------------------

@pytest.mark.parametrize(("signum", "code", "slots"), [(signal.SIGTERM, 143, 4), (signal.SIGINT, 130, 4),
                                                       (signal.SIGTERM, 143, 1)],
                         ids=["SIGTERM-4-slots", "SIGINT-4-slots", "SIGTERM-1-slot"])
def test_an_interrupt_stops_within_seconds_with_slots_busy_and_a_rerun_does_the_rest(tmp_path, signum, code, slots):
    out = tmp_path / "run"
    process = start_cli(tmp_path, "--methods", "gpg", "--parallel", str(slots), "--no-store", "--out", str(out),
                        delay=0.4 if slots > 1 else 0.1)
    wait_for_records(out, 2, process)
    sent = time.monotonic()
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert process.returncode == code
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    kept = record_keys(out)
    assert 2 <= len(kept) < USERS and len(set(kept)) == len(kept)
    again = subprocess.run([sys.executable, "-m", "guided_profile", *FAKE_RUN, "--methods", "gpg", "--no-store",
                            "--out", str(out)], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    keys = record_keys(out)
    assert set(kept) <= set(keys) and len(keys) == len(set(keys)) == USERS


def test_a_kill_9_mid_run_resumes_with_nothing_lost_or_doubled(tmp_path):
    out = tmp_path / "run"
    process = start_cli(tmp_path, "--methods", "dg-no-pc,pg", "--parallel", "2", "--out", str(out), delay=0.1)
    wait_for_records(out, 3, process)
    process.kill()
    process.communicate(timeout=30)
    kept = record_keys(out)
    again = subprocess.run([sys.executable, "-m", "guided_profile", *FAKE_RUN, "--methods", "dg-no-pc,pg",
                            "--out", str(out)], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    keys = record_keys(out)
    assert set(kept) <= set(keys) and len(keys) == len(set(keys)) == 2 * USERS


# -- an endpoint that is down, then up -----------------------------------------------------------------

@pytest.fixture
def no_retries(monkeypatch):
    """DSPy's 3 retries with backoff take ~8 s a call against a closed port: none here, the rule is the same."""
    import guided_profile.lm as lm_package

    monkeypatch.setattr(lm_package, "make_lm", functools.partial(lm_package.make_lm, num_retries=0))


def test_an_endpoint_that_is_down_stops_the_run_and_a_rerun_after_it_is_up_retries_the_failures(
        tmp_path, capsys, no_retries):
    port = free_port()
    args = ["run", "--task", "preference", "--lm", "openai/stub", "--api-base", f"http://127.0.0.1:{port}/v1",
            "--answer-mode", "generate", "--methods", "dg-no-pc", "--split", "all", "--limit", "6", "--parallel", "2",
            "--no-progress", "--no-store", "--out", str(tmp_path / "run")]
    start = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"cannot reach the model at http://127.0.0.1:{port}/v1" in err[0]
    assert "Connection refused" in err[0] and "rerun the same command to resume" in err[0]
    assert len(record_keys(tmp_path / "run")) == 0
    with StubServer(port) as server:
        assert main(args) == 0
        assert len(server.requests) == 6  # the failures are retried: nothing was cached or counted as done
    assert len(set(record_keys(tmp_path / "run"))) == 6
    assert "FAILED" not in capsys.readouterr().out


def failing_first(monkeypatch, calls: int, error: str) -> dict:
    """The fake LM fails its first `calls` calls with `error` (a RuntimeError: not a transport error)."""
    complete, state = FakeEngine.complete, {"left": calls}

    def flaky(self, request):
        state["left"] -= 1
        if state["left"] >= 0:
            raise RuntimeError(error)
        return complete(self, request)

    monkeypatch.setattr(FakeEngine, "complete", flaky)
    return state


def test_a_server_that_goes_down_mid_run_stops_it_after_a_few_examples(tmp_path, capsys, monkeypatch):
    complete, calls = FakeEngine.complete, []

    def going_down(self, request):
        calls.append(1)
        if len(calls) > 3:
            raise ConnectionRefusedError(111, "Connection refused")
        return complete(self, request)

    monkeypatch.setattr(FakeEngine, "complete", going_down)
    assert main([*FAKE_RUN, "--methods", "dg-no-pc", "--parallel", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 examples in a row failed to connect" in err[0], err
    assert len(calls) == 5 and len(record_keys(tmp_path / "run")) == 3


def test_an_optimizer_on_a_server_that_is_down_stops_before_its_budget_is_spent(tmp_path, capsys, no_retries):
    port = free_port()
    args = ["optimize", "--task", "preference", "--lm", "openai/stub", "--api-base", f"http://127.0.0.1:{port}/v1",
            "--answer-mode", "generate", "--optimizer", "optuna", "--option", "trials=1", "--option", "candidates=0",
            "--train-limit", "2", "--dev-limit", "2", "--confirm-fraction", "0", "--out", str(tmp_path / "tuned.json")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot reach the model at http://127.0.0.1:{port}/v1" in err[0], err
    assert not (tmp_path / "tuned.json").exists()
    with StubServer(port) as server:
        assert main(args) == 0
        assert server.requests


def test_transport_errors_are_told_from_the_examples_own_failures():
    import socket

    from dspy.utils.exceptions import LMProviderError, LMTransportError

    from guided_profile.lm.transport import unreachable

    class ConnectError(Exception):  # httpx's name
        pass

    def chained(outer: Exception, cause: BaseException) -> Exception:
        outer.__cause__ = cause
        return outer

    assert unreachable(LMTransportError("failed to connect"))
    assert unreachable(chained(RuntimeError("wrapped"), ConnectionRefusedError(111, "Connection refused")))
    assert unreachable(chained(ValueError("wrapped"), ConnectError("boom")))
    assert unreachable(socket.gaierror(-2, "Name or service not known"))
    assert unreachable(TimeoutError("timed out"))
    assert not unreachable(LMProviderError("400: bad request"))
    assert not unreachable(RuntimeError("the reply was refused"))
    assert not unreachable(None)


def test_failures_are_stated_under_the_table(tmp_path, capsys, monkeypatch):
    failing_first(monkeypatch, 2, "the reply was refused")
    assert main([*FAKE_RUN, "--methods", "dg-no-pc", "--parallel", "1", "--out", str(tmp_path / "run")]) == 0
    assert "FAILED: 2 method runs (dg-no-pc 2)" in capsys.readouterr().out
    assert len(record_keys(tmp_path / "run")) == USERS - 2


# -- corrupt and non-regular run-folder files ----------------------------------------------------------

def run_fake(tmp_path, *extra):
    return main([*FAKE_RUN, "--methods", "dg-no-pc", "--limit", "3", "--out", str(tmp_path / "run"), *extra])


def test_lines_that_are_not_records_are_reported_skipped_and_kept(tmp_path, capsys, fake_calls):
    assert run_fake(tmp_path) == 0
    records = tmp_path / "run" / "records.jsonl"
    good = records.read_text()
    bad = ['null', '[1, 2]', '{"method": "dg-no-pc", "example_id": "5"}', '{"method": 1, "example_id": "x"}']
    records.write_text("\n".join(bad) + "\n" + good)
    calls = len(fake_calls)
    capsys.readouterr()
    assert run_fake(tmp_path) == 0
    assert len(fake_calls) == calls  # every readable record was kept: nothing redone
    err = capsys.readouterr().err.splitlines()
    for line_no, what in [(1, "null, not a record"), (2, "an array, not a record"), (3, "not a record (no inputs"),
                          (4, "not a record (no inputs")]:
        assert any(f"records.jsonl, line {line_no}: {what}" in line for line in err), err
    assert all(line.startswith("warning: ") for line in err) and len(err) == len(bad)
    assert records.read_text().startswith("\n".join(bad))  # left in the file


DEEP = "[" * 100_000 + "]" * 100_000  # deeper than Python's stack: json.loads raises RecursionError


def test_records_a_summary_cannot_read_are_run_again_with_a_warning_naming_them(tmp_path, capsys, fake_calls):
    assert run_fake(tmp_path) == 0
    records = tmp_path / "run" / "records.jsonl"
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    lines[0]["usage"] = None
    lines[1]["usage"]["calls"] = "many"
    lines[2]["metrics"]["accuracy"] = "x"
    records.write_text("".join(json.dumps(line) + "\n" for line in lines) + DEEP + "\n")
    calls = len(fake_calls)
    capsys.readouterr()
    assert run_fake(tmp_path) == 0  # no traceback: each bad line is named and its example runs again
    err = capsys.readouterr().err
    assert "line 1: not a record (usage of the wrong type" in err and "line 2: not a record (usage.calls" in err
    assert f"example {lines[2]['example_id']} has metrics accuracy missing or not finite numbers" in err
    assert "line 4: incomplete or not JSON" in err
    assert len(fake_calls) > calls and len(records.read_text().splitlines()) == 4 + 3  # run again, appended
    calls = len(fake_calls)
    assert run_fake(tmp_path) == 0 and len(fake_calls) == calls  # the new records are read: nothing is redone
    with warnings.catch_warnings(record=True) as heard:  # the warnings module shows a repeated one only once
        warnings.simplefilter("always")
        read_records(records, check=record_problem)
    said = [str(w.message) for w in heard]  # lines 1 and 2 were redone: no warning says they will run again
    assert len(said) == 1 and "line 4: incomplete or not JSON" in said[0]


def test_an_unreadable_record_of_a_method_not_run_now_counts_as_failed_not_as_rerun(tmp_path, capsys):
    assert main([*FAKE_RUN, "--methods", "dg-no-pc,dg-pc", "--limit", "3", "--out", str(tmp_path / "run")]) == 0
    records = tmp_path / "run" / "records.jsonl"
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    edited = next(line for line in lines if line["method"] == "dg-pc")
    edited["metrics"]["accuracy"] = "x"
    records.write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    assert run_fake(tmp_path) == 0  # dg-no-pc only
    err = capsys.readouterr().err
    assert f"example {edited['example_id']} has metrics accuracy" in err
    assert "counted as failed until a run with dg-pc redoes it" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["methods"]["dg-pc"]
    assert summary["n"] == 2 and summary["failed"] == 1


def test_json_nested_deeper_than_the_stack_is_one_clear_line(tmp_path, capsys):
    assert run_fake(tmp_path) == 0
    (tmp_path / "run" / "config.json").write_text(DEEP)
    capsys.readouterr()
    assert run_fake(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json, line 1: not valid JSON (nested too deeply to read" in err[0], err
    program = tmp_path / "deep.json"
    program.write_text(DEEP)
    assert main([*FAKE_RUN, "--program", str(program), "--limit", "1", "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deep.json: not valid JSON (nested too deeply" in err[0], err


def test_a_reply_with_a_unicode_line_separator_is_one_record_not_two_broken_lines(tmp_path, monkeypatch, fake_calls):
    """JSON keeps U+2028 unescaped with ensure_ascii=False; a reader splitting on every line break would cut
    the record in two, drop it and redo its example on every rerun."""
    complete = FakeEngine.complete

    def separated(self, request):
        self.rule = lambda system, user: default_rule(system, user).replace(" ", "\u2028", 1)
        return complete(self, request)

    monkeypatch.setattr(FakeEngine, "complete", separated)
    assert main([*FAKE_RUN, "--methods", "pg", "--limit", "3", "--no-store", "--out", str(tmp_path / "run")]) == 0
    calls = len(fake_calls)
    assert "\u2028" in (tmp_path / "run" / "records.jsonl").read_text()
    assert main([*FAKE_RUN, "--methods", "pg", "--limit", "3", "--no-store", "--out", str(tmp_path / "run")]) == 0
    assert len(fake_calls) == calls and len(record_keys(tmp_path / "run")) == 3


@pytest.mark.parametrize(("content", "needle"), [
    ('{"task": "prefer', "config.json, line 1: not valid JSON"),
    ('[1, 2]', "config.json: an array, not a run's configuration"),
    ('{"task": "preference", "methods": "gpg"}', "config.json: 'methods' is a string, a run writes an array"),
])
def test_a_broken_config_is_one_clear_line(tmp_path, capsys, content, needle):
    assert run_fake(tmp_path) == 0
    (tmp_path / "run" / "config.json").write_text(content)
    capsys.readouterr()
    assert run_fake(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("name", ["config.json", "records.jsonl"])
def test_a_folder_where_a_run_file_belongs_is_one_clear_line(tmp_path, capsys, name):
    (tmp_path / "run" / name).mkdir(parents=True)
    assert run_fake(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{name} is a folder" in err[0], err


def test_a_folder_where_the_lock_file_belongs_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "run" / ".lock").mkdir(parents=True)
    assert run_fake(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ".lock: cannot lock the folder" in err[0], err


def test_out_pointing_at_a_file_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "run").write_text("not a folder")
    assert run_fake(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0], err


def test_a_read_only_records_file_is_one_clear_line_before_any_call(tmp_path, capsys, fake_calls, monkeypatch):
    assert run_fake(tmp_path) == 0
    records = tmp_path / "run" / "records.jsonl"
    records.chmod(0o444)
    if os.geteuid() == 0:  # root writes to read-only files: answer as the system answers anyone else
        real_open = open

        def refusing(file, mode="r", *args, **kwargs):
            if Path(file) == records and set(mode) & set("aw"):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr("builtins.open", refusing)
    calls = len(fake_calls)
    assert main([*FAKE_RUN, "--methods", "pg", "--limit", "3", "--out", str(tmp_path / "run")]) == 2
    assert "records.jsonl: cannot be written" in capsys.readouterr().err and len(fake_calls) == calls


def test_a_store_whose_folder_is_a_file_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "not-a-folder").write_text("")
    assert run_fake(tmp_path, "--store", str(tmp_path / "not-a-folder" / "profiles.sqlite")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create its folder" in err[0], err


@pytest.mark.parametrize("where", ["records", "program", "store"])
def test_a_named_pipe_is_refused_instead_of_hanging(tmp_path, capsys, no_hang, where):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    extra = {"records": [], "program": ["--program", str(fifo)], "store": ["--store", str(fifo)]}[where]
    if where == "records":
        (tmp_path / "run").mkdir()
        os.mkfifo(tmp_path / "run" / "records.jsonl")
    assert run_fake(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a regular file" in err[0], err


# -- the profile store in use ----------------------------------------------------------------------------

def test_a_store_locked_by_another_process_names_it_instead_of_saying_delete(tmp_path):
    from guided_profile.store import ProfileStore, StoreError

    path = tmp_path / "profiles.sqlite"
    ProfileStore(path).close()
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], "
                               "isolation_level=None); db.execute('BEGIN EXCLUSIVE'); print('held', flush=True); "
                               "sys.stdin.read()", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        store = ProfileStore(path, timeout=0.2)  # WAL: opening and reading go on, a write waits for the lock
        with pytest.raises(StoreError) as raised:
            store.save("profile", "h", "i", "", "lm", "text")
        message = str(raised.value)
        assert f"is in use by process {holder.pid}" in message and "delete" not in message
        assert "--no-store" in message
    finally:
        holder.communicate("", timeout=30)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM steps").fetchone() == (0,)


# -- no secret in anything written -----------------------------------------------------------------------

def test_no_planted_secret_reaches_any_file_a_run_an_optimize_or_a_compare_writes(tmp_path, monkeypatch, capsys):
    import optuna

    url = f"http://u:{SECRET}@127.0.0.1:9/v1"
    monkeypatch.setenv("MY_API_KEY", SECRET)
    monkeypatch.setenv("GUIDED_PROFILE_CACHE", str(tmp_path / "cache"))
    failing = {"on": True}
    complete = FakeEngine.complete

    def planted(system, user):
        if "current_question" in system + user:  # the prompt model's proposal: a reply quoting the secret
            return f"See {url} (key {SECRET})"
        if failing["on"] and "Glass" not in user and "1." in user:
            raise RuntimeError(f"POST {url}/chat/completions failed; api key {SECRET}")
        return default_rule(system, user)

    def planted_complete(self, request):
        self.rule = planted
        return complete(self, request)

    monkeypatch.setattr(FakeEngine, "complete", planted_complete)
    base = ["--task", "preference", "--lm", "fake", "--answer-mode", "generate"]
    assert main(["run", *base, "--split", "all", "--no-progress", "--methods", "dg-no-pc,gpg",
                 "--out", str(tmp_path / "run")]) == 0
    failing["on"] = False  # an optimizer's trial with failures is retried, not exported
    program = tmp_path / "opt" / "tuned.json"
    assert main(["optimize", *base, "--optimizer", "optuna", "--option", "trials=2", "--option", "candidates=1",
                 "--train-limit", "2", "--dev-limit", "2", "--confirm-fraction", "0", "--out", str(program)]) == 0
    assert main(["optimize", *base, "--optimizer", "optuna", "--option", "trials=1", "--storage",
                 f"postgresql://u:{SECRET}@127.0.0.1:1/x", "--out", str(tmp_path / "opt" / "other.json")]) == 2
    failing["on"] = True
    assert main(["compare", *base, "--programs", f"handwritten,{program}", "--no-progress",
                 "--out", str(tmp_path / "compare")]) == 0
    shown = capsys.readouterr()
    assert "***" in (tmp_path / "run" / "records.jsonl").read_text()  # the error was recorded, masked
    written = [p for folder in (tmp_path, Path(os.environ["DSPY_CACHEDIR"])) for p in folder.rglob("*") if p.is_file()]
    assert {"records.jsonl", "config.json", "summary.json", "table.md", "compare.md", "compare.png", "tuned.json",
            "study.db", "profiles.sqlite"} <= {p.name for p in written}
    leaking = [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    assert not leaking
    assert SECRET not in shown.out + shown.err
    study_db = next(p for p in written if p.name == "study.db")
    storage = f"sqlite:///{study_db}"
    summaries = optuna.get_all_study_summaries(storage)
    assert summaries
    for summary in summaries:
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        attrs = [study.user_attrs] + [t.user_attrs for t in study.trials] + [t.system_attrs for t in study.trials]
        assert SECRET not in json.dumps(attrs)
        assert "***" in json.dumps(study.user_attrs["refused_candidates"])  # the proposal was kept, masked

