"""The Optuna study opens in optuna-dashboard: its server, started on a loopback port against a study this test
makes (one complete and one pruned trial, scripted model), lists the study and its trials, and each trial
carries what a person needs to read it on its own: guidance text, parts, words, per-example scores (as
intermediate values and by example id), the pruning point and the cost."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _servers import free_port, stop
from test_optimizers import NEW_Q, TASK, examples, lms
from test_racing import handwritten_wins

from guided_profile.optimizers import get_optimizer, run_optimizer
from guided_profile.optimizers.optuna_search import POOL_ATTR
from guided_profile.programs import build_program

DEV = examples(20, "d")
STARTUP_SECONDS = 60  # importing optuna on a busy 2-core machine takes a few seconds


def dashboard_command() -> str:
    """The console script of this interpreter's environment (the package has no `python -m` entry)."""
    beside = Path(sys.executable).with_name("optuna-dashboard")
    found = str(beside) if beside.exists() else shutil.which("optuna-dashboard")
    if found is None:
        pytest.fail("optuna-dashboard is not installed: pip install -e '.[dev]'")
    return found


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = reply.read()
        return json.loads(body) if reply.headers.get_content_type() == "application/json" else body


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    """A small optuna search into a SQLite study: the hand-written question completes, NEW_Q is pruned."""
    folder = tmp_path_factory.mktemp("dashboard")
    task_lm, _, prompt_lm, _ = lms(handwritten_wins)
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=folder,
                              progress=None, trials=2, candidates=1, search_switches=False, min_examples=5)
    result = run_optimizer(optimizer, build_program("gpg", TASK), trainset=examples(3, "t"), valset=DEV,
                           budget=100_000, log=lambda line: None)
    return {"db": folder / "study.db", "study_name": result.info["study_name"], "folder": folder}


def wait_until_answering(server: subprocess.Popen, base: str, log: Path) -> None:
    """Bounded: a server that exits or stays silent fails the test with the end of its log, never hangs it."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if server.poll() is not None:
            pytest.fail(f"optuna-dashboard exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            get(f"{base}/api/meta")
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                pytest.fail(f"optuna-dashboard silent for {STARTUP_SECONDS} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def dashboard(run) -> Iterator[str]:
    """optuna-dashboard on 127.0.0.1 against the study: its base URL once it answers, stopped afterwards."""
    port, log = free_port(), run["folder"] / "dashboard.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([dashboard_command(), f"sqlite:///{run['db']}", "--host", "127.0.0.1",
                                   "--port", str(port), "--server", "wsgiref"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(server, base, log)
        yield base
    finally:
        stop(server, grace=10)


def attrs(trial: dict[str, Any]) -> dict[str, str]:
    """A trial's user attributes as the dashboard shows them: key -> text."""
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


def study_detail(base: str, name: str) -> dict[str, Any]:
    listed = get(f"{base}/api/studies")["study_summaries"]
    ids = [s["study_id"] for s in listed if s["study_name"] == name]
    assert len(ids) == 1, f"study {name!r} not listed: {[s['study_name'] for s in listed]}"
    return get(f"{base}/api/studies/{ids[0]}")


def test_the_dashboard_lists_the_study_and_each_trial_reads_on_its_own(run, dashboard):
    detail = study_detail(dashboard, run["study_name"])
    study_attrs = attrs(detail)
    assert json.loads(study_attrs[POOL_ATTR]) == [TASK.guidance_question, NEW_Q]
    trials = {t["state"]: t for t in detail["trials"]}
    assert sorted(trials) == ["Complete", "Pruned"] and len(detail["trials"]) == 2
    assert detail["has_intermediate_values"]
    dev_ids = [ex.example_id for ex in DEV]

    complete = trials["Complete"]
    seen = attrs(complete)
    assert seen["guidance_question"] == TASK.guidance_question and complete["values"] == [1.0]
    assert seen["parts"] == "pc+pp" and seen["profile_words"].isdigit()  # gpg's; parts is no param here
    assert seen["dev_examples"] == "20" and json.loads(seen["example_scores"]) == dict.fromkeys(dev_ids, 1.0)
    assert [v["step"] for v in complete["intermediate_values"]] == list(range(20))
    assert int(seen["calls"]) > 0 and int(seen["paid_examples"]) == 20 and float(seen["tokens_per_example"]) > 0
    assert "pruned_after_examples" not in seen

    pruned = trials["Pruned"]
    seen = attrs(pruned)
    stopped_at = int(seen["pruned_after_examples"])
    assert seen["guidance_question"] == NEW_Q and 5 <= stopped_at < 20
    assert int(seen["dev_examples"]) == stopped_at == len(pruned["intermediate_values"])
    steps = {dev_ids[v["step"]]: v["value"] for v in pruned["intermediate_values"]}  # step = dev example index
    assert json.loads(seen["example_scores"]) == steps and set(steps.values()) == {0.0}
    assert int(seen["calls"]) > 0 and int(seen["paid_examples"]) == stopped_at
    assert {p["name"]: p["param_external_value"] for p in pruned["params"]} == {
        "guidance": "1", "profile_words": seen["profile_words"]}


def test_the_dashboard_page_itself_is_served(dashboard):
    page = get(f"{dashboard}/dashboard")
    assert b"<html" in page.lower()
