"""The benchmark's floor arithmetic, and its refusal of models it cannot measure."""

import pytest

from guided_profile.bench import default_configs, floor_speed, floor_tokens, run_speed
from guided_profile.cli import main


def step(prompt, cached, generated, prompt_seconds=0.0, generation_seconds=0.0):
    return {"calls": 1, "cache_hits": 0, "prompt_tokens": prompt, "cached_prompt_tokens": cached,
            "completion_tokens": generated, "prompt_seconds": prompt_seconds, "generation_seconds": generation_seconds}


def test_floor_counts_the_history_once_and_each_step_after_the_shared_prefix():
    record = {"steps": [step(400, 20, 40), step(470, 380, 60), step(520, 380, 2)]}
    # first step but the preamble reused from the example before (400-20) + (470-380) + (520-380)
    assert floor_tokens([record]) == (380 + 90 + 140, 102)
    assert floor_tokens([record, record]) == (2 * 610, 204)


def test_run_speed_reads_the_history_step_and_the_talkative_steps():
    record = {"steps": [step(420, 20, 40, prompt_seconds=8.0, generation_seconds=2.0),
                        step(470, 380, 60, prompt_seconds=3.0, generation_seconds=3.0),
                        step(520, 380, 1, prompt_seconds=2.0, generation_seconds=0.5)]}
    # prompt: 400 computed tokens in 8 s; generation: 100 tokens in 5 s (the one-token step is left out)
    assert run_speed([record]) == {"prompt_tokens_per_s": 50.0, "generated_tokens_per_s": 20.0}
    assert run_speed([{"steps": [step(420, 0, 40)]}]) is None  # records without split timings


def test_floor_takes_the_faster_speed_of_each_kind():
    probe = {"prompt_tokens_per_s": 47.0, "generated_tokens_per_s": 25.0}
    assert floor_speed(probe, {"prompt_tokens_per_s": 55.0, "generated_tokens_per_s": 18.0}) == \
        {"prompt_tokens_per_s": 55.0, "generated_tokens_per_s": 25.0}
    assert floor_speed(probe, None) == probe


def test_configs_compare_plain_dspy_with_ours():
    names = [c.name for c in default_configs((2, 4))]
    assert names == ["plain-dspy", "default", "parallel-2", "parallel-4"]
    plain = default_configs()[0]
    assert plain.adapter == "chat" and not plain.prompt_cache and plain.parallel == 1


def test_bench_refuses_a_remote_or_fake_model(capsys):
    for lm in ("fake", "openai/gpt-4o-mini"):
        assert main(["bench", "--lm", lm]) == 2
        assert "in-process model" in capsys.readouterr().err


def test_bench_takes_a_gguf_path_and_refuses_bad_configurations(capsys, monkeypatch):
    import guided_profile.cli.bench as cli_bench

    def stop_before_loading(*args, **kwargs):
        raise SystemExit("data")  # the options passed every check

    monkeypatch.setattr(cli_bench, "load_split", stop_before_loading)
    with pytest.raises(SystemExit, match="data"):  # a gguf path gets past the option checks
        main(["bench", "--lm", "gguf:/models/some model.gguf"])
    for options, message in ((["--slots", "0,2"], "at least 1"), (["--slots", "two"], "expected numbers"),
                             (["--parallel", "2,4"], "is now --slots 2,4"),
                             (["--configs", "default,paralel-2"], "unknown paralel-2"),
                             (["--configs", "plain-dspy"], "must include 'default'")):
        assert main(["bench", "--lm", "local", *options]) == 2
        assert message in capsys.readouterr().err
    assert cli_bench._slot_counts("4,2,4") == (2, 4) and cli_bench._slot_counts("1,2,4") == (2, 4)


def test_report_states_the_program_and_ratios(tmp_path):
    from guided_profile.bench import write_report

    def config(name, wall, accuracy):
        return {"config": {"name": name}, "lm": {"spec": "local", "model": "qwen"}, "wall_seconds": wall,
                "totals": {"calls": 150, "prompt_tokens": 9000, "cached_prompt_tokens": 4000,
                           "completion_tokens": 700}, "summary": {"accuracy": accuracy},
                "wall_over_floor": round(wall / 100, 2), "speedup_over_plain": round(250 / wall, 2)}

    result = {"task": "preference", "objective": "accuracy", "method": "gpg", "answer_mode": "generate", "n": 50,
              "command": "guided-profile bench --limit 50", "data": {"split": "test"},
              "machine": {"cores": 2, "llama_threads": 2},
              "speed": {"prompt_tokens_per_s": 60.0, "generated_tokens_per_s": 20.0},
              "probe_speed": {"prompt_tokens_per_s": 55.0, "generated_tokens_per_s": 20.0},
              "run_speed": {"prompt_tokens_per_s": 60.0, "generated_tokens_per_s": 18.0},
              "floor": {"prompt_tokens": 4800, "generated_tokens": 700, "seconds": 100.0},
              "results": [config("plain-dspy", 250.0, 0.2), config("default", 110.0, 0.4)]}
    text = write_report(result, tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert "method gpg, answer mode generate" in text and "n=50 test examples" in table
    assert "| default | 110.0 | 150 | 9000 | 4000 | 700 | 0.400 | 1.10 | 2.27 |" in table
