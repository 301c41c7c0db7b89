"""Several `optimize --optimizer optuna` workers on one study in a real PostgreSQL server.

A throwaway cluster (Debian's PostgreSQL: initdb / pg_ctl, run as the `postgres` user when the tests run as
root) listens on a free loopback port for the length of this module and is stopped and deleted in teardown.
Two workers run the README's operator procedure: the first writes the candidate pool, the second joins,
is killed with SIGKILL in the middle of a trial and is started again with the same command once the
heartbeat has declared its trial stale.  The scripted model (tests/optuna_worker.py) logs every request,
so "no configuration paid twice" is checked on the requests themselves, not on the optimizer's own memo.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from _servers import free_port

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("optuna_worker.py")
TRIALS, HEARTBEAT, SECONDS_PER_CALL = 12, 1, 0.3  # enough trials left for the restart to join
STUDY = "pg-two-workers"


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL's bin folder, else the folder of an `initdb` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://postgres:PASSWORD@127.0.0.1:PORT/gpg on a cluster that lives as long as this module."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian: apt-get install postgresql)")
    import psycopg  # the driver SQLAlchemy uses for postgresql:// (the dev extra installs it)

    root = Path(tempfile.mkdtemp(prefix="gp-postgres-"))
    root.chmod(0o755)
    password, port = secrets.token_hex(8), free_port()
    (root / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    data, log = root / "data", root / "server.log"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile",
                                    str(root / "pw"), "--auth-local=trust", "--auth-host=scram-sha-256"]),
                       check=True, capture_output=True, timeout=120)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        subprocess.run(as_postgres([*pg_ctl, "-l", str(log), "-o", options, "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=90)
        conninfo = f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE DATABASE gpg")
        yield f"postgresql://postgres:{password}@127.0.0.1:{port}/gpg"
    finally:
        subprocess.run(as_postgres([*pg_ctl, "-m", "immediate", "-w", "-t", "30", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def start_worker(out: Path, url: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """One worker, as an operator starts it: the same command for every worker but --out."""
    args = ["optimize", "--task", "preference", "--optimizer", "optuna", "--lm", "fake", "--data", "sample",
            "--answer-mode", "generate", "--dev-limit", "0", "--train-limit", "0", "--confirm-fraction", "0",
            "--storage", url,
            "--study-name", STUDY, "--option", f"trials={TRIALS}", "--option", "candidates=2",
            "--option", f"heartbeat={HEARTBEAT}", "--option", "racing=false", "--parallel", "1", "--out", str(out)]
    with open(out.with_suffix(".stdout"), "a") as stdout:  # the child keeps its own copy of the file
        return subprocess.Popen([sys.executable, str(WORKER), str(log), str(SECONDS_PER_CALL), "--", *args],
                                stdout=stdout, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_until(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def requests(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def dev_options() -> list[str]:
    """Each dev example's lettered options: an answer prompt names its example by them (train examples, scored
    by each worker after the search, share single products with dev examples but not the whole list)."""
    from guided_profile.datasets.example import split_examples
    from guided_profile.programs.answer import lettered
    from guided_profile.runs import resolve_data
    from guided_profile.tasks import get_task

    task = get_task("preference")
    examples, _ = task.load(resolve_data(task, "sample"))
    return [lettered(ex.options) for ex in split_examples(examples, "dev", 0)]


def test_two_workers_share_one_postgres_study_and_survive_a_kill(postgres_url, tmp_path):
    import optuna

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GUIDED_PROFILE_CACHE": str(tmp_path / "cache"),  # one machine: one cache and profile store
           "PYTHONUNBUFFERED": "1"}  # the test waits for lines the workers print
    env.pop("DSPY_CACHEDIR")  # DSPy's cache under that cache folder too: a killed worker never shares the session's
    log = tmp_path / "requests.jsonl"
    first, second = tmp_path / "worker1.json", tmp_path / "worker2.json"
    workers: list[subprocess.Popen] = []
    try:
        workers.append(start_worker(first, postgres_url, log, env))
        # The README's procedure: the first worker writes the candidate pool before the others start.
        wait_until(lambda: "proposal 2/2" in _text(first.with_suffix(".stdout")), "the candidate pool", 120)
        workers.append(start_worker(second, postgres_url, log, env))
        killed = workers[-1].pid
        # Killed after its 4th call: at least one dev example of its trial finished (3 calls at most), one did not.
        wait_until(lambda: sum(r["pid"] == killed for r in requests(log)) >= 4, "the second worker's trial", 120)
        workers[-1].send_signal(signal.SIGKILL)  # mid-trial: its calls so far are all trial calls
        workers[-1].wait(timeout=30)
        time.sleep(4 * HEARTBEAT + 1)  # past the grace period: the restart finds the trial stale
        workers.append(start_worker(second, postgres_url, log, env))
        for worker in (workers[0], workers[2]):
            assert worker.wait(timeout=300) == 0, _text(Path(worker.args[-1]).with_suffix(".stdout"))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)

    study = optuna.load_study(study_name=STUDY, storage=postgres_url)
    states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    # One worker may finish a trial it had started when the other saw the count reached.
    assert TRIALS <= states["COMPLETE"] <= TRIALS + 1, states
    assert states["FAIL"] == 1 and states["RUNNING"] == 0, states  # the killed trial, failed by the heartbeat
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))[0]
    retries = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
               if t.params == failed.params and t.number > failed.number]
    assert retries and retries[0].user_attrs["reused_examples"] >= 1  # what the killed trial finished is kept

    # No configuration paid twice: every dev answer prompt (one per configuration and example) was requested
    # once, but for the one example the killed worker was in the middle of, which its retry paid again.
    seen = [r for r in requests(log) if r["step"] == "answer" and any(o in r["prompt"] for o in dev_options())]
    counts = Counter(r["prompt"] for r in seen)
    twice = [p for p, n in counts.items() if n > 1]
    assert len(seen) >= TRIALS and max(counts.values()) <= 2, counts.most_common(3)
    assert len(twice) <= 1 and all(any(r["pid"] == killed and r["prompt"] == p for r in seen) for p in twice)
    assert {r["pid"] for r in seen} >= {workers[0].pid, workers[2].pid}  # both paid for trials of their own
    assert sum(r["step"] == "propose" for r in requests(log)) == 2  # the pool was proposed once, not per worker

    a, b = (json.loads(path.read_text()) for path in (first, second))
    assert a["instructions"] == b["instructions"] and a["switches"] == b["switches"]
    assert a["optimizer"]["info"]["best_trial"] == b["optimizer"]["info"]["best_trial"]
    best = max(a["optimizer"]["info"]["trials"], key=lambda t: t["score"])["score"]
    assert a["optimizer"]["info"]["best_trial"]["score"] == best
    password = postgres_url.split(":")[2].split("@")[0]
    for path in (first, second, first.with_suffix(".stdout"), second.with_suffix(".stdout")):
        assert password not in path.read_text()  # the storage URL is written masked


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
