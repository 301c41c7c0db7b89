"""The benchmark's floor arithmetic, and its refusal of models it cannot measure."""

from guided_profile.bench import default_configs, floor_tokens
from guided_profile.cli import main


def step(prompt, cached, generated):
    return {"calls": 1, "cache_hits": 0, "prompt_tokens": prompt, "cached_prompt_tokens": cached,
            "completion_tokens": generated}


def test_floor_counts_the_history_once_and_each_step_after_the_shared_prefix():
    record = {"steps": [step(400, 20, 40), step(470, 380, 60), step(520, 380, 2)]}
    # first step whole (400) + (470-380) + (520-380); every generated token
    assert floor_tokens([record]) == (400 + 90 + 140, 102)
    assert floor_tokens([record, record]) == (2 * 630, 204)


def test_configs_compare_plain_dspy_with_ours():
    names = [c.name for c in default_configs((2, 4))]
    assert names == ["plain-dspy", "default", "parallel-2", "parallel-4"]
    plain = default_configs()[0]
    assert plain.adapter == "chat" and not plain.prompt_cache and plain.parallel == 1


def test_bench_refuses_a_remote_or_fake_model(capsys):
    assert main(["bench", "--lm", "fake"]) == 2
    assert "in-process model" in capsys.readouterr().err
