"""Throughput benchmark: the model's own speed, and GPG run several ways on the same users.

1. Speed: prompt and generation tokens/s of the in-process model (llama.cpp's own timings), both on
   a fixed prompt and on the `default` run's own requests; the floor uses the faster of the two.
2. Configurations, each on the same examples with DSPy's answer cache off (every call is real):
   `plain-dspy` (DSPy's default ChatAdapter, no prompt-prefix reuse, one request at a time),
   `default` (this project's settings: history-first prompts, prefix reuse) and `parallel-N`
   (N server slots and N workers).
3. The floor: the time the model needs for the tokens that must be computed at all (each user's
   history once, each step's own part, the generated tokens) at the measured speeds.  The `default`
   configuration must be among them: its token counts define what must be computed.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.evaluation import RunFolder, evaluate
from guided_profile.files import make_folder, write_json, write_text
from guided_profile.lm import make_lm
from guided_profile.lm.embedded import DEFAULT_CONTEXT
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.report import markdown_table, origin, text_table
from guided_profile.tasks.base import Task

# About 500 tokens of fixed text for the speed probe.
_PROBE = " ".join(f"item {i} costs {i * 7 % 100} dollars;" for i in range(70))


@dataclass(frozen=True)
class BenchConfig:
    """One way of running GPG that the benchmark times: adapter, prompt-prefix reuse and server slots."""

    name: str
    adapter: str        # "chat" (DSPy's default) or "personal" (history-first, plain replies)
    prompt_cache: bool  # llama.cpp's reuse of a shared prompt prefix
    parallel: int       # server slots = concurrent examples

    def make_adapter(self) -> dspy.Adapter:
        return dspy.ChatAdapter() if self.adapter == "chat" else PersonalAdapter()


def default_configs(parallel: tuple[int, ...] = (2,)) -> list[BenchConfig]:
    return [BenchConfig("plain-dspy", "chat", False, 1), BenchConfig("default", "personal", True, 1),
            *[BenchConfig(f"parallel-{n}", "personal", True, n) for n in parallel]]


def measure_speed(engine, repeats: int = 3) -> dict[str, float]:
    """Median prompt and generation tokens/s over `repeats` fresh (never cached) requests."""
    prompt_speeds, gen_speeds = [], []
    for _ in range(repeats):
        nonce = uuid.uuid4().hex  # first in the prompt, so nothing is reused from an earlier request
        body = {"messages": [{"role": "user", "content": f"{nonce}\n{_PROBE}\nContinue the list."}],
                "max_tokens": 128, "temperature": 0.0, "ignore_eos": True}
        timings = engine.raw(body)["timings"]
        prompt_speeds.append(timings["prompt_per_second"])
        gen_speeds.append(timings["predicted_per_second"])
    return {"prompt_tokens_per_s": round(sorted(prompt_speeds)[repeats // 2], 1),
            "generated_tokens_per_s": round(sorted(gen_speeds)[repeats // 2], 1)}


def run_speed(records: list[dict[str, Any]], min_tokens: int = 8) -> dict[str, float] | None:
    """The model's speed on the run's own requests, from llama.cpp's timings of each step.

    Prompt speed comes from each example's first step (its history, the biggest block computed at
    once); generation speed from steps that generated at least `min_tokens` (a one-token reply
    times mostly the request's setup).  None when the records carry no split timings.
    """
    first = [r["steps"][0] for r in records if r["steps"]]
    computed = sum(s["prompt_tokens"] - s["cached_prompt_tokens"] for s in first)
    prompt_seconds = sum(s.get("prompt_seconds", 0.0) for s in first)
    talkative = [s for r in records for s in r["steps"] if s["completion_tokens"] >= min_tokens]
    generated = sum(s["completion_tokens"] for s in talkative)
    generation_seconds = sum(s.get("generation_seconds", 0.0) for s in talkative)
    if not prompt_seconds or not generation_seconds:
        return None
    return {"prompt_tokens_per_s": round(computed / prompt_seconds, 1),
            "generated_tokens_per_s": round(generated / generation_seconds, 1)}


def floor_speed(probe: dict[str, float], in_run: dict[str, float] | None) -> dict[str, float]:
    """The faster of the probe's and the run's own speed, per kind: the floor is never flattering."""
    if in_run is None:
        return dict(probe)
    return {kind: max(probe[kind], in_run[kind]) for kind in probe}


def floor_tokens(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(prompt tokens that must be computed, generated tokens) for records of history-first prompts.

    Per example: the first step's prompt but for what it reused from the example before (the fixed
    preamble); for every later step only what follows the shared prefix (the largest prefix any
    later step reused); and every generated token.
    """
    prompt = generated = 0
    for record in records:
        first, *later = record["steps"]
        shared = max((s["cached_prompt_tokens"] for s in later), default=0)
        prompt += first["prompt_tokens"] - first["cached_prompt_tokens"]
        prompt += sum(s["prompt_tokens"] - shared for s in later)
        generated += sum(s["completion_tokens"] for s in record["steps"])
    return prompt, generated


# The bench times the paper's main GPG row with the paper's generate-and-parse answer: the one answer
# mode DSPy's default adapter can run too, so every configuration runs the same program.
METHOD, ANSWER_MODE = "gpg", "generate"


def run_config(config: BenchConfig, task: Task, examples: list[Example], lm_spec: str, out: Path, *,
               threads: int | None = None, context: int = DEFAULT_CONTEXT) -> dict[str, Any]:
    """One configuration from a fresh model load; wall time excludes loading."""
    lm, identity = make_lm(lm_spec, n_parallel=config.parallel, threads=threads, context=context, cache=False,
                           prompt_cache=config.prompt_cache)
    folder = out / config.name
    shutil.rmtree(folder, ignore_errors=True)  # a benchmark is timed whole: never resumed
    run = RunFolder.open(folder, {"task": task.name, "split": "bench", "seed": task.seed, "data": "",
                                  "lm": identity.to_dict(), "task_options": {}, "methods": [METHOD],
                                  "answer_mode": ANSWER_MODE, "bench": asdict(config)})
    start = time.perf_counter()
    program = build_program(METHOD, task, answer_mode=ANSWER_MODE)
    with run:
        summary = evaluate({METHOD: program}, task, examples, lm, run, workers=config.parallel,
                           adapter=config.make_adapter())[METHOD]
    wall = time.perf_counter() - start
    records = [run.done[(METHOD, ex.example_id)] for ex in examples if (METHOD, ex.example_id) in run.done]
    totals = {k: sum(r["usage"][k] for r in records) for k in records[0]["usage"]} if records else {}
    return {"config": asdict(config), "lm": identity.to_dict(), "wall_seconds": round(wall, 1), "totals": totals,
            "summary": summary, "floor_tokens": floor_tokens(records), "run_speed": run_speed(records),
            "engine": lm.engine}


def bench(task: Task, examples: list[Example], lm_spec: str, out: Path, *, configs: list[BenchConfig],
          threads: int | None = None, context: int = DEFAULT_CONTEXT,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Speed probe, then every configuration; returns the numbers the report and table are made of."""
    make_folder(out, "the bench folder (--out)")
    results = []
    probe = None
    for config in configs:
        log(f"running {config.name} on {len(examples)} examples ...")
        result = run_config(config, task, examples, lm_spec, out, threads=threads, context=context)
        engine = result.pop("engine")
        if config.name == "default":
            probe = measure_speed(engine)  # same process, model warm, nothing else running in it
            log(f"model speed on a fixed prompt: {probe}; on the run's own requests: {result['run_speed']}")
            result_threads = engine.threads
        del engine
        results.append(result)
    default = next(r for r in results if r["config"]["name"] == "default")
    speed = floor_speed(probe, default["run_speed"])
    prompt, generated = default["floor_tokens"]
    floor = prompt / speed["prompt_tokens_per_s"] + generated / speed["generated_tokens_per_s"]
    plain = next((r for r in results if r["config"]["name"] == "plain-dspy"), None)
    for r in results:
        r["floor_seconds"] = round(floor, 1)
        r["wall_over_floor"] = round(r["wall_seconds"] / floor, 2)
        r["speedup_over_plain"] = round(plain["wall_seconds"] / r["wall_seconds"], 2) if plain else None
    return {"task": task.name, "objective": task.objective, "method": METHOD, "answer_mode": ANSWER_MODE,
            "machine": machine() | {"llama_threads": result_threads}, "speed": speed, "probe_speed": probe,
            "run_speed": default["run_speed"], "n": len(examples),
            "floor": {"prompt_tokens": prompt, "generated_tokens": generated, "seconds": round(floor, 1)},
            "results": results}


def machine() -> dict[str, Any]:
    """What the speeds depend on, recorded beside them."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "memory_gib": round(memory / 2**30, 1) if memory else None}


def write_report(result: dict, out: Path) -> str:
    """bench.json and `table.md` in `out` from the bench's result; returns the text for the terminal."""
    write_json(out / "bench.json", result)
    objective = result["objective"]
    header = ["config", "wall s", "calls", "prompt tok", "cached tok", "generated tok", objective,
              "wall/floor", "speedup vs plain"]
    rows = [[r["config"]["name"], f"{r['wall_seconds']:.1f}", str(r["totals"].get("calls", 0)),
             str(r["totals"].get("prompt_tokens", 0)), str(r["totals"].get("cached_prompt_tokens", 0)),
             str(r["totals"].get("completion_tokens", 0)), f"{r['summary'][objective]:.3f}",
             f"{r['wall_over_floor']:.2f}", str(r["speedup_over_plain"])] for r in result["results"]]
    speed, floor, machine = result["speed"], result["floor"], result["machine"]
    probe, in_run = result["probe_speed"], result["run_speed"] or {}
    lm = result["results"][0]["lm"]
    preamble = (f"Model {lm['spec']} ({lm['model']}), {machine['cores']} cores, {machine['llama_threads']} llama.cpp "
                f"threads; n={result['n']} {result['data']['split']} examples, method {result['method']}, answer "
                f"mode {result['answer_mode']}.  Model speed in prompt / generated tok/s: "
                f"{probe['prompt_tokens_per_s']} / {probe['generated_tokens_per_s']} on a fixed prompt, "
                f"{in_run.get('prompt_tokens_per_s')} / {in_run.get('generated_tokens_per_s')} on the default "
                f"run's own requests; the floor uses the faster, {speed['prompt_tokens_per_s']} / "
                f"{speed['generated_tokens_per_s']}: {floor['seconds']} s for {floor['prompt_tokens']} prompt + "
                f"{floor['generated_tokens']} generated tokens.  Data `{result['data'].get('path')}`, seed "
                f"{result['data'].get('seed')}; {origin(result)}")
    write_text(out / "table.md", f"# Throughput, {result['task']}\n\nCommand: `{result['command']}`\n\n"
                                 f"{preamble}\n\n{markdown_table(header, rows)}\n")
    return f"{preamble}\n{text_table(header, rows)}"
