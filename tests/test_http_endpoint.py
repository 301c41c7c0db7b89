"""The real 0.5B model behind an OpenAI-compatible HTTP server on a loopback port: the path users take to a
vLLM or llama.cpp server on a GPU (`--lm openai/NAME --api-base URL`), with concurrent requests, in both answer
modes.  Score mode must get its log-probabilities over HTTP, not fall back to generating a letter.
(~3-5 min on 2 cores.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _servers import free_port, stop

REPO = Path(__file__).resolve().parents[1]
SERVER = Path(__file__).with_name("openai_server.py")
NAME, USERS, PARALLEL = "qwen-0.5b-http-test", 2, 2


@pytest.fixture(scope="module")
def api_base(tmp_path_factory):
    """http://127.0.0.1:PORT/v1 of a server process that lives as long as this module."""
    from guided_profile.lm.weights import ensure_model_file

    gguf, port = ensure_model_file("local-0.5b"), free_port()
    out = tmp_path_factory.mktemp("server") / "server.out"
    with open(out, "w") as stdout:
        server = subprocess.Popen([sys.executable, str(SERVER), str(gguf), str(port), NAME, str(PARALLEL)],
                                  stdout=stdout, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 180
        while "listening http://127.0.0.1" not in out.read_text():
            assert server.poll() is None, f"the server exited: {out.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the server did not listen within 180 s"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(server, grace=30)


def run_over_http(api_base: str, mode: str, out: Path, cache: Path) -> tuple[list[dict], float]:
    """`guided-profile run` against the server, as a user types it; the records and the wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GUIDED_PROFILE_CACHE": str(cache)}
    env.pop("OPENAI_API_KEY", None)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "guided_profile", "run", "--task", "preference", "--methods", "gpg",
                           "--data", "sample", "--split", "all", "--limit", str(USERS), "--lm", f"openai/{NAME}",
                           "--api-base", api_base, "--parallel", str(PARALLEL), "--answer-mode", mode,
                           "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return records, time.monotonic() - start


@pytest.mark.integration
def test_both_answer_modes_over_an_openai_compatible_http_server(api_base, tmp_path):
    cache = tmp_path / "cache"  # fresh: DSPy's answer cache and the profile store start empty
    generated, wall = run_over_http(api_base, "generate", tmp_path / "generate", cache)
    assert len(generated) == USERS and all(r["error"] is None for r in generated)
    for record in generated:
        assert record["guidance"].strip() and record["profile"].strip() and record["reply"].strip()
        assert record["usage"]["calls"] == 3 and record["usage"]["cache_hits"] == 0
        assert record["usage"]["prompt_tokens"] > 100 and record["usage"]["completion_tokens"] > 5
    # --parallel 2: the users' requests overlapped, so their times add up to more than the whole run took
    # (one after the other, they could not: the run's wall time holds both and the start-up besides).
    assert sum(r["seconds"] for r in generated) > wall, (wall, [r["seconds"] for r in generated])

    # Score mode on the same users: digestion and profile come from the store the first run filled, every
    # rotation of the options is a new request that must reach the server and bring back log-probabilities.
    scored, _ = run_over_http(api_base, "score", tmp_path / "score", cache)
    assert len(scored) == USERS and all(r["error"] is None for r in scored)
    for record in scored:
        assert record["answer_path"] == "logprobs", record["answer_path"]  # not "fallback-generate"
        assert record["reply"] in "ABCD" and record["reply"]
        assert abs(sum(record["choice_probs"]) - 1) < 1e-3
        usage = record["usage"]  # four rotations asked the server; digestion and profile were store hits
        assert usage["calls"] == 4 and usage["cache_hits"] == 0 and usage["store_hits"] == 2
        assert all(step["prompt_tokens"] > 100 and step["completion_tokens"] == 1 for step in record["steps"])
