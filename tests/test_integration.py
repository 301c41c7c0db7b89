"""The real embedded 0.5B model, end to end: GPG on 2 sample users in both answer modes (~1-2 min on 2 cores)."""

import json

import pytest

from guided_profile.cli import main


@pytest.mark.integration
def test_gpg_runs_on_the_real_small_model(tmp_path):
    for mode in ("generate", "score"):
        out = tmp_path / mode
        code = main(["run", "--task", "preference", "--methods", "gpg", "--data", "sample", "--split", "all",
                     "--limit", "2", "--lm", "local-0.5b", "--no-cache", "--no-progress", "--answer-mode", mode,
                     "--out", str(out)])
        assert code == 0
        records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
        assert len(records) == 2 and all(r["error"] is None for r in records)
        for record in records:
            assert record["guidance"].strip() and record["profile"].strip()
            assert record["usage"]["calls"] == (3 if mode == "generate" else 6)
            assert record["usage"]["prompt_tokens"] > 100 and record["usage"]["completion_tokens"] > 5
            # every step after the first reuses the history prefix from the model's prompt cache
            assert all(step["cached_prompt_tokens"] > 0 for step in record["steps"][1:])
            if mode == "score":
                assert record["answer_path"] == "logprobs" and record["reply"] in "ABCD"
                assert abs(sum(record["choice_probs"]) - 1) < 1e-3
        summary = json.loads((out / "summary.json").read_text())["methods"]["gpg"]
        assert summary["n"] == 2 and summary["failed"] == 0
