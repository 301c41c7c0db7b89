"""The benchmark: its token accounts and ideal floor, its speeds, a whole run with a scripted engine, and
the command's refusals."""

import json
import random
import re

import dspy
import pytest

from guided_profile.bench import ROTATIONS, default_configs, write_report
from guided_profile.bench import runner as bench_runner
from guided_profile.bench.paired import outputs_changed, paired_difference
from guided_profile.bench.speed import cpu_info, floor_speeds, run_speed
from guided_profile.bench.tokens import TokenCounter, ideal_floor, lead_tokens, split_step, step_kinds
from guided_profile.cli import main
from guided_profile.lm.factory import LMSpec
from guided_profile.lm.scripted import ScriptedEngine
from guided_profile.runs import RunSettings, load_split
from guided_profile.tasks import get_task


def step(prompt, cached, generated, prompt_seconds=0.0, generation_seconds=0.0):
    return {"calls": 1, "cache_hits": 0, "prompt_tokens": prompt, "cached_prompt_tokens": cached,
            "completion_tokens": generated, "prompt_seconds": prompt_seconds, "generation_seconds": generation_seconds}


def test_a_steps_computed_tokens_are_split_by_category_after_the_cached_prefix():
    content = {"history": 300, "outputs": 40, "options": 60}
    # 460 prompt tokens: 60 of instructions, 20 of them before the history; 350 cached = lead 20 + history 300 + 30
    assert split_step(step(460, 350, 5), content, lead=20) == {
        "history": 0, "instructions": 40, "outputs": 10, "options": 60, "generated": 5}
    assert split_step(step(460, 0, 5), content, lead=20)["instructions"] == 60  # nothing reused: all computed
    assert lead_tokens([{"steps": [step(400, 0, 1)]}, {"steps": [step(400, 22, 1)]}, {"steps": [step(9, 25, 1)]}]) == 22
    # options-last: the instruction is read before the options, so a rotation's reused prefix covers it
    assert split_step(step(460, 400, 1), content, lead=20, prompt_layout="options-last") == {
        "history": 0, "instructions": 0, "outputs": 0, "options": 60, "generated": 1}


def record(eid, steps, guidance="tools", profile="a maker", reply="A", accuracy=1.0):
    return {"example_id": eid, "steps": steps, "guidance": guidance, "profile": profile, "reply": reply,
            "inputs": {"history": "h " * 300, "question": "q?", "options": ["a", "b"]},
            "metrics": {"parsed": reply, "accuracy": accuracy}}


def test_the_ideal_floor_reads_history_instructions_and_options_once_and_the_shortest_outputs():
    scored = [step(400, 0, 50), step(460, 380, 70), *[step(480, 440, 1)] * 4]
    run_a = [record("u1", scored)]
    run_b = [record("u1", [step(400, 0, 30), step(460, 380, 90), *[step(480, 440, 1)] * 4])]
    contents = {"u1": {"history": 300, "options": 20, "guidance": 9, "profile": 30}}
    floor = ideal_floor([run_a, run_b], contents, {"digest": 15, "profile": 25, "answer": 10}, scored=True,
                        rotations=ROTATIONS)
    assert floor["per_step"]["digest"] == {"history": 300, "instructions": 15, "outputs": 0, "options": 0,
                                           "generated": 30}
    assert floor["per_step"]["profile"]["generated"] == 70 and floor["per_step"]["answer"]["generated"] == 0
    assert floor["prompt_tokens"] == 300 + 15 + 25 + 10 + 20 + ROTATIONS and floor["generated_tokens"] == 100
    generated = ideal_floor([run_a], contents, {}, scored=False, rotations=ROTATIONS)
    assert generated["per_step"]["answer"]["generated"] == 1 and generated["prompt_tokens"] == 320
    assert step_kinds(run_a[0]) == ["digest", "profile", "answer", "answer", "answer", "answer"]


def test_the_floor_counts_a_runaway_only_up_to_where_the_repetition_stop_would_end_it():
    loop = "Lab Supplies, Gloves, " + "Beakers, " * 60  # 561 characters; the stop ends it at its loop
    runaway = [record("u1", [step(400, 0, 256), step(460, 380, 70), *[step(480, 440, 1)] * 4], guidance=loop)]
    contents = {"u1": {"history": 300, "options": 20, "guidance": 140, "profile": 30}}
    floor = ideal_floor([runaway], contents, {}, scored=True, rotations=ROTATIONS)
    needed = floor["per_step"]["digest"]["generated"]
    assert 30 < needed < 256  # a few repeats before the stop, not the 256 tokens it ran to
    assert floor["per_step"]["profile"]["generated"] == 70  # no loop: every token was needed


def test_run_speed_reads_the_history_step_and_the_talkative_steps():
    rec = {"steps": [step(420, 20, 40, prompt_seconds=8.0, generation_seconds=2.0),
                     step(470, 380, 60, prompt_seconds=3.0, generation_seconds=3.0),
                     step(520, 380, 1, prompt_seconds=2.0, generation_seconds=0.5)]}
    # prompt: 400 computed tokens in 8 s; generation: 100 tokens in 5 s (the one-token step is left out)
    assert run_speed([rec]) == {"prompt_tokens_per_s": 50.0, "generated_tokens_per_s": 20.0}
    assert run_speed([{"steps": [step(420, 0, 40)]}]) is None  # records without split timings


def test_the_floor_is_priced_at_the_best_prompt_rate_and_the_best_aggregate_decode_rate():
    measured = [{"run": {"prompt_tokens_per_s": 44.0, "generated_tokens_per_s": 13.9},
                 "probe": {"prompt_tokens_per_s": 47.0, "generated_tokens_per_s": 14.1}, "decode": None},
                {"run": None, "probe": None, "decode": {"1": 14.0, "2": 22.5, "4": 31.0}}]
    assert floor_speeds(measured) == {"prompt_tokens_per_s": 47.0, "generated_tokens_per_s": 31.0}


def test_cpu_model_and_flags_come_from_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: sse avx2 fma\n\n")
    assert cpu_info(info) == {"model": "Test CPU 9000", "flags": ["avx2", "fma", "sse"]}


def test_paired_accuracy_and_outputs_changed_by_batching():
    plain = [record(f"u{i}", [], accuracy=float(i % 2)) for i in range(6)]
    ours = [record(f"u{i}", [], accuracy=1.0, profile="other" if i < 2 else "a maker") for i in range(6)]
    vs = paired_difference(ours, plain, "accuracy")
    assert vs["n"] == 6 and vs["diff"] == 0.5 and vs["ci95"][0] > 0
    assert vs["p"] == 0.25  # 3 of 6 differ: the exact sign-flip test
    assert outputs_changed(ours, plain) == {"n": 6, "digest": 0, "profile": 2, "answer": 0}


def test_configs_compare_plain_dspy_with_ours_in_each_answer_mode():
    keys = [c.key for c in default_configs((2, 4))]
    assert keys == ["plain-dspy", "score/default", "score/parallel-2", "score/parallel-4", "score/options-last",
                    "score/draft-ngram-3", "score/profile-continued", "score/stop-runaways", "generate/default",
                    "generate/parallel-2", "generate/parallel-4"]
    assert [c.key for c in default_configs() if c.stop_runaways] == ["score/stop-runaways"]
    assert {c.key: c.draft_ngram for c in default_configs() if c.draft_ngram} == {"score/draft-ngram-3": 3}
    steps = {c.key: c.profile_step for c in default_configs() if c.profile_step != "separate"}
    assert steps == {"score/profile-continued": "continued"}
    layouts = {c.key: c.prompt_layout for c in default_configs()}
    assert layouts["score/options-last"] == "options-last"
    assert {k for k, v in layouts.items() if v != "instruction-last"} == {"score/options-last"}
    plain = default_configs()[0]
    assert plain.adapter == "chat" and not plain.prompt_cache and plain.parallel == 1
    assert plain.answer_mode == "generate" and ROTATIONS == RunSettings.rotations  # score mode as `run` does it


class StubEngine(ScriptedEngine):
    """Answers GPG's steps in either adapter's format, scores letters, and has the embedded engine's extras."""

    def __init__(self, n_parallel: int):
        super().__init__(self.reply)
        self.n_parallel, self.threads = n_parallel, 2

    @staticmethod
    def reply(system: str, user: str):
        marker = re.search(r"starting with the field `\[\[ ## (\w+) ## \]\]`", user)
        if marker:
            text = {"guidance": "tools, lab", "profile": "A maker.", "answer": "A"}[marker[1]]
            return f"[[ ## {marker[1]} ## ]]\n{text}\n\n[[ ## completed ## ]]"
        tail = user.rsplit("\n\n", 1)[-1].lower()
        if "reply with only the guidance" in tail:
            return "tools, lab supplies"
        if "reply with only the profile" in tail:
            return "A shopper who buys tools and lab supplies."
        return {"A": -0.2, "B": -random.random() - 0.3, "C": -3.0, "D": -4.0}

    def raw(self, body):
        return {"timings": {"prompt_per_second": 50.0, "predicted_per_second": 12.0, "predicted_n": 64,
                            "predicted_ms": 64_000 / (12.0 * self.n_parallel ** 0.5)}}

    def count_tokens(self, text: str) -> int:
        return len(text.split())  # a stub tokenizer: whitespace words


def test_bench_runs_every_configuration_and_keeps_finished_ones_on_a_rerun(tmp_path, monkeypatch):
    loads = []

    def stub_lm(spec, *, n_parallel=1, draft_ngram=None, stop_loops=False, **kwargs):
        loads.append((n_parallel, draft_ngram) + (("stop",) if stop_loops else ()))
        return dspy.LM("stub/gpg", engine=StubEngine(n_parallel), cache=False), LMSpec("stub", "stub-model")

    monkeypatch.setattr(bench_runner, "make_lm", stub_lm)
    task = get_task("preference")
    examples, _ = load_split(task, "sample", "all", 0, 4)
    configs = default_configs((2,))
    result = bench_runner.bench(task, examples, "stub", tmp_path, configs=configs, log=lambda _: None)
    made = [(1, None), (1, None), (2, None), (1, None), (1, 3), (1, None), (1, None, "stop"), (1, None), (2, None)]
    assert loads == made and set(result["modes"]) == {"score", "generate"}
    score = result["modes"]["score"]
    assert [r["config"] for r in score["results"]] == ["plain-dspy", "score/default", "score/parallel-2",
                                                       "score/options-last", "score/draft-ngram-3",
                                                       "score/profile-continued", "score/stop-runaways"]
    stopped = json.loads((tmp_path / "score" / "stop-runaways" / "config.json").read_text())
    assert stopped["task_options"] == {"stop_runaways": True} and stopped["loop_rule"]
    assert stopped["step_max_tokens"]["profile"] == task.fitted_max_tokens["profile"]
    assert json.loads((tmp_path / "score" / "default" / "config.json").read_text())["loop_rule"] is None
    assert score["floor"]["n"] == 4 and score["floor"]["seconds"] > 0
    default = score["results"][1]
    assert default["vs_plain"]["n"] == 4 and default["batching_changes"] is None and default["vs_default"] is None
    moved = score["results"][3]
    assert moved["vs_default"]["n"] == 4 and moved["batching_changes"] is None
    assert score["results"][2]["batching_changes"]["n"] == 4 and "scores" in score["results"][2]["batching_changes"]
    assert "scores" not in result["modes"]["generate"]["results"][2]["batching_changes"]  # no probabilities there
    tokens = result["configs"]["score/default"]["tokens"]
    assert tokens["counter"] == "model tokenizer" and set(tokens["per_step"]) == {"digest", "profile", "answer"}
    assert tokens["per_step"]["answer"]["calls"] == 4 * ROTATIONS
    assert result["speed"]["generated_tokens_per_s"] > 12.0  # two sequences at once beat one
    assert result["machine"]["cpu"]["model"] and json.dumps(result)
    result |= {"command": "guided-profile bench", "data": {"split": "test", "path": "sample:amazon", "seed": 0}}
    text = write_report(result, tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert json.loads((tmp_path / "bench.json").read_text()) == json.loads(json.dumps(result))
    assert "## score mode" in table and "ideal floor" in table and "score/parallel-2" in text
    assert "Outputs batching changed against one slot" in table and "accuracy - default [95% CI] p" in table
    rewritten = 0
    for kept in tmp_path.glob("*/*/result.json"):  # as written before BenchConfig had a layout and n-gram drafts
        written = json.loads(kept.read_text())
        config = written["key"]["config"]
        if config["prompt_layout"] == "instruction-last" and config["draft_ngram"] is None:
            del config["prompt_layout"], config["draft_ngram"]
            kept.write_text(json.dumps(written))
            rewritten += 1
    assert rewritten  # some results now look old: the bench below must still reuse them
    again = bench_runner.bench(task, examples, "stub", tmp_path, configs=configs, log=lambda _: None)
    assert loads == made and again["modes"]["score"]["floor"] == score["floor"]


def test_the_options_last_configuration_sends_the_instruction_before_the_options(tmp_path, monkeypatch):
    engines = []

    def stub_lm(spec, *, n_parallel=1, **kwargs):
        engines.append(StubEngine(n_parallel))
        return dspy.LM("stub/gpg", engine=engines[-1], cache=False), LMSpec("stub", "stub-model")

    monkeypatch.setattr(bench_runner, "make_lm", stub_lm)
    task = get_task("preference")
    examples, _ = load_split(task, "sample", "all", 0, 1)
    configs = [c for c in default_configs(()) if c.name in ("default", "options-last") and c.answer_mode == "score"]
    bench_runner.bench(task, examples, "stub", tmp_path, configs=configs, log=lambda _: None)
    for engine, instruction_first in zip(engines, (False, True), strict=True):
        answers = [r["user"] for r in engine.requests if r["logprobs"]]
        assert len(answers) == ROTATIONS
        assert all((u.index(task.answer_instruction) < u.index("Options (")) == instruction_first for u in answers)


def test_without_a_tokenizer_tokens_are_estimated_from_the_runs_generated_text():
    from guided_profile.bench.tokens import make_counter

    recs = [record("u1", [step(10, 0, 4), step(10, 0, 8)], guidance="x" * 12, profile="y" * 20)]
    counter = make_counter(object(), recs)
    assert counter.chars_per_token == 32 / 12 and "estimate" in counter.name and counter("z" * 8) == 3
    assert TokenCounter(lambda t: 7)("anything") == 7


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
                             (["--configs", "plain-dspy"], "must include 'default'"),
                             (["--modes", "score,scor"], "choose from score,generate")):
        assert main(["bench", "--lm", "local", *options]) == 2
        assert message in capsys.readouterr().err
    assert cli_bench._slot_counts("4,2,4") == (2, 4) and cli_bench._slot_counts("1,2,4") == (2, 4)


