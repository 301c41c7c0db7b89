"""Running the benchmark's configurations, each from a fresh model load, and putting their numbers together.

Every configuration runs GPG on the same examples with DSPy's answer cache and the profile store off
(every call is real) and writes its folder under `out`: records, and `result.json` once it finished.
A configuration whose `result.json` matches (same settings, examples and model) is kept, not rerun:
the one bench command can be run again in a later session to finish what an earlier one did not.
Each result records the git commit it was made at (`git`), since a kept one may be older than the code.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import dspy

from guided_profile import json_text
from guided_profile.bench.paired import outputs_changed, paired_difference
from guided_profile.bench.speed import decode_rates, floor_speeds, machine, measure_speed, run_speed
from guided_profile.bench.tokens import breakdown, content_tokens, floor_seconds, ideal_floor, make_counter
from guided_profile.datasets.example import Example
from guided_profile.evaluation import RunFolder, evaluate
from guided_profile.files import write_json
from guided_profile.lm import make_lm
from guided_profile.lm.embedded import DEFAULT_CONTEXT
from guided_profile.lm.repetition import DEFAULT_LOOP_RULE
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.adapter import DEFAULT_LAYOUT, OPTIONS_LAST
from guided_profile.programs.conversation import CONTINUED, DEFAULT_PROFILE_STEP
from guided_profile.provenance import git_state
from guided_profile.tasks import get_task
from guided_profile.tasks.base import Task

METHOD = "gpg"  # the paper's main row
ROTATIONS = 4   # `run`'s default in score mode (RunSettings.rotations; a test keeps the two equal)
PLAIN = "plain-dspy"
DRAFT_NGRAM = 3  # a short n-gram, so the item names a digestion or profile quotes from the history are matched
PROFILE_CONTINUED = f"profile-{CONTINUED}"
STOP_RUNAWAYS = "stop-runaways"


@dataclass(frozen=True)
class BenchConfig:
    """One way of running GPG that the benchmark times: adapter, prompt-prefix reuse, server slots, answer mode,
    prompt layout, profile step, self-speculative decoding, runaway stops (fitted caps and the repetition stop)."""

    name: str
    adapter: str        # "chat" (DSPy's default) or "personal" (history-first, plain replies)
    prompt_cache: bool  # llama.cpp's reuse of a shared prompt prefix
    parallel: int       # server slots = concurrent examples
    answer_mode: str = "generate"
    prompt_layout: str = DEFAULT_LAYOUT  # where the answer step states its instruction (`programs.adapter`)
    draft_ngram: int | None = None       # llama.cpp's n-gram drafts (`lm.embedded`), None: off
    profile_step: str = DEFAULT_PROFILE_STEP  # how the profile step is formatted (`programs.conversation`)
    stop_runaways: bool = False          # the task option stop_runaways=true (`tasks.base`, `lm.repetition`)

    @property
    def key(self) -> str:
        """Its folder under `out` and its name in tables: the answer mode first, but for plain DSPy."""
        return self.name if self.name == PLAIN else f"{self.answer_mode}/{self.name}"

    def make_adapter(self) -> dspy.Adapter:
        return dspy.ChatAdapter() if self.adapter == "chat" else PersonalAdapter()


def default_configs(parallel: tuple[int, ...] = (2,), modes: tuple[str, ...] = ("score", "generate")
                    ) -> list[BenchConfig]:
    """Plain DSPy once (its ChatAdapter can only generate: the first token it would score is a field
    marker), then per answer mode this project's settings with one slot (`default`) and N slots, and in
    score mode three candidates with one slot: the options-last prompt layout (its rotations recompute only the
    options; generate mode makes one call per answer, so the layout saves nothing there), n-gram drafts
    (they speed up the digestion and profile, which both modes share) and the continued profile step (it
    reuses the digestion's reply instead of reading it again; also shared by both modes), plus the runaway
    stops (fitted token caps and the repetition stop: they shorten digestions and profiles that loop)."""
    configs = [BenchConfig(PLAIN, "chat", False, 1, "generate")]
    for mode in modes:
        configs += [BenchConfig("default", "personal", True, 1, mode),
                    *[BenchConfig(f"parallel-{n}", "personal", True, n, mode) for n in parallel]]
        if mode == "score":
            configs += [BenchConfig(OPTIONS_LAST, "personal", True, 1, mode, prompt_layout=OPTIONS_LAST),
                        BenchConfig(f"draft-ngram-{DRAFT_NGRAM}", "personal", True, 1, mode, draft_ngram=DRAFT_NGRAM),
                        BenchConfig(PROFILE_CONTINUED, "personal", True, 1, mode, profile_step=CONTINUED),
                        BenchConfig(STOP_RUNAWAYS, "personal", True, 1, mode, stop_runaways=True)]
    return configs


def _records(run: RunFolder, examples: list[Example]) -> list[dict]:
    return [run.done[(METHOD, ex.example_id)] for ex in examples if (METHOD, ex.example_id) in run.done]


# A result kept from before a BenchConfig field existed was made with that field's default.
_CONFIG_DEFAULTS = {f.name: f.default for f in fields(BenchConfig) if f.default is not MISSING}


def _kept(folder: Path, key: dict, examples: list[Example]) -> tuple[dict, list[dict]] | None:
    """A finished configuration's result and records from an earlier session, if made the same way."""
    try:
        result = json_text.loads((folder / "result.json").read_text())
        lines = (folder / "records.jsonl").read_text().splitlines()
    except (OSError, ValueError):
        return None
    made = result.get("key") or {}
    if {**made, "config": _CONFIG_DEFAULTS | made.get("config", {})} != key:
        return None
    done = {(r["method"], r["example_id"]): r for r in map(json_text.loads, lines)}
    return result, [done[(METHOD, ex.example_id)] for ex in examples if (METHOD, ex.example_id) in done]


def measurements(config: BenchConfig, engine: Any, records: list[dict]) -> dict[str, Any]:
    """Speeds measured on this configuration's warm engine: its run's own, a fixed prompt's (one-slot
    runs), and the aggregate decode rate of 1..4 sequences (multi-slot runs)."""
    measured = {"run": run_speed(records), "probe": None, "decode": None}
    if config.name == "default":
        measured["probe"] = measure_speed(engine)
    if config.parallel > 1:
        measured["decode"] = decode_rates(engine)
    return measured


def token_accounts(engine: Any, records: list[dict], program: dspy.Module) -> dict[str, Any]:
    """Tokens per step and category, the content tokens per example and each step's own instruction."""
    count = make_counter(engine, records)
    instructions = {"digest": program.digest.signature.instructions,
                    "profile": program.write_profile.signature.instructions,
                    "answer": program.respond.predict.signature.instructions}
    return {"counter": count.name, "instructions": {k: count(v) for k, v in instructions.items()},
            "content": {r["example_id"]: content_tokens(r, count) for r in records},
            "per_step": breakdown(records, count, program.switches, program.respond.prompt_layout)}


def run_config(config: BenchConfig, task: Task, examples: list[Example], lm_spec: str, out: Path, *,
               task_options: dict[str, Any] | None = None, threads: int | None = None,
               context: int = DEFAULT_CONTEXT, log: Callable[[str], None] = print) -> tuple[dict[str, Any], list[dict]]:
    """One configuration from a fresh model load (wall time excludes loading), or its kept result."""
    folder = out / config.key
    options = dict(task_options or {}) | ({"stop_runaways": True} if config.stop_runaways else {})
    if config.stop_runaways and not task.stop_runaways:  # this configuration alone runs with the stops
        task = get_task(task.name, seed=task.seed, **options)
    stop = task.stop_runaways
    key = {"config": asdict(config), "rotations": ROTATIONS, "lm": lm_spec, "context": context,
           "examples": [ex.example_id for ex in examples]} | ({"task_options": options} if options else {})
    kept = _kept(folder, key, examples)
    if kept is not None:
        log(f"{config.key}: kept from an earlier session ({folder / 'result.json'})")
        return kept
    log(f"running {config.key} on {len(examples)} examples ...")
    lm, identity = make_lm(lm_spec, n_parallel=config.parallel, threads=threads, context=context, cache=False,
                           prompt_cache=config.prompt_cache, draft_ngram=config.draft_ngram, stop_loops=stop)
    shutil.rmtree(folder, ignore_errors=True)  # a benchmark is timed whole: never resumed
    run = RunFolder.open(folder, {"task": task.name, "split": "bench", "seed": task.seed, "data": "",
                                  "lm": identity.to_dict(), "task_options": options, "methods": [METHOD],
                                  "answer_mode": config.answer_mode, "rotations": ROTATIONS,
                                  "prompt_layout": config.prompt_layout, "profile_step": config.profile_step,
                                  "step_max_tokens": task.step_max_tokens(),
                                  "loop_rule": DEFAULT_LOOP_RULE.to_dict() if stop else None,
                                  "bench": asdict(config)})
    program = build_program(METHOD, task, answer_mode=config.answer_mode, rotations=ROTATIONS,
                            prompt_layout=config.prompt_layout, profile_step=config.profile_step)
    start = time.perf_counter()
    with run:  # the folder's lock is released when the configuration is done
        summary = evaluate({METHOD: program}, task, examples, lm, run, workers=config.parallel,
                           adapter=config.make_adapter())[METHOD]
    wall = time.perf_counter() - start
    records = _records(run, examples)
    totals = {k: sum(r["usage"].get(k, 0) for r in records) for k in records[0]["usage"]} if records else {}
    result = {"key": key, "config": asdict(config), "lm": identity.to_dict(), "wall_seconds": round(wall, 1),
              "totals": totals, "summary": summary, "speeds": measurements(config, lm.engine, records),
              "tokens": token_accounts(lm.engine, records, program),
              "llama_threads": getattr(lm.engine, "threads", None), "git": git_state(), "finished": time.time()}
    lm.engine.close()  # the next configuration loads its own model: free this one's memory first
    write_json(folder / "result.json", result, indent=1)
    return result, records


def bench(task: Task, examples: list[Example], lm_spec: str, out: Path, *, configs: list[BenchConfig],
          task_options: dict[str, Any] | None = None, threads: int | None = None, context: int = DEFAULT_CONTEXT,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every configuration, then per answer mode the ideal floor and each configuration against it and
    against plain DSPy; returns what `bench.json` holds."""
    results, records = {}, {}
    for config in configs:
        results[config.key], records[config.key] = run_config(config, task, examples, lm_spec, out,
                                                              task_options=task_options, threads=threads,
                                                              context=context, log=log)
        log(f"{config.key}: {results[config.key]['wall_seconds']} s, speeds {results[config.key]['speeds']}")
    speeds = floor_speeds([r["speeds"] for r in results.values()])
    modes = list(dict.fromkeys(c.answer_mode for c in configs if c.name != PLAIN))
    threads_used = next((r["llama_threads"] for r in results.values() if r.get("llama_threads")), None)
    return {"task": task.name, "objective": task.objective, "method": METHOD, "rotations": ROTATIONS,
            "n": len(examples), "machine": machine() | {"llama_threads": threads_used}, "speed": speeds,
            "configs": results,
            "modes": {m: compare_mode(m, task, configs, results, records, speeds) for m in modes}}


def _ratio(a: float, b: float | None) -> float | None:
    return round(a / b, 2) if b and b == b else None  # b == b: not NaN


def compare_mode(mode: str, task: Task, configs: list[BenchConfig], results: dict, records: dict,
                 speeds: dict[str, float]) -> dict[str, Any]:
    """One answer mode: the ideal floor, and each configuration's wall time, ratios and paired accuracy (against
    plain DSPy and against the mode's one-slot default)."""
    chosen = [c for c in configs if c.answer_mode == mode or c.name == PLAIN]
    reference = results.get(f"{mode}/default") or results[chosen[-1].key]
    floor = ideal_floor([records[c.key] for c in chosen], reference["tokens"]["content"],
                        reference["tokens"]["instructions"], scored=mode == "score", rotations=ROTATIONS)
    floor["seconds"] = floor_seconds(floor, speeds)
    plain, one_slot = records.get(PLAIN), records.get(f"{mode}/default")
    rows = []
    for c in chosen:
        r, own = results[c.key], records[c.key]
        wall = r["wall_seconds"]
        ours = c.name != PLAIN
        per_user = wall / max(1, len(own))  # the floor counts the users every run finished: compare per user
        rows.append({"config": c.key, "wall_seconds": wall, "seconds_per_user": round(per_user, 1),
                     "wall_over_floor": _ratio(per_user, floor["seconds"] / floor["n"] if floor["n"] else None),
                     "speedup_over_plain": _ratio(results[PLAIN]["wall_seconds"], wall) if plain else None,
                     task.objective: r["summary"].get(task.objective),
                     "vs_plain": paired_difference(own, plain, task.objective) if plain and ours else None,
                     "vs_default": paired_difference(own, one_slot, task.objective)
                     if one_slot and ours and c.name != "default" else None,
                     "batching_changes": outputs_changed(own, one_slot) if one_slot and ours and c.parallel > 1
                     else None,
                     "repetition_stops": r["totals"].get("repetition_stops", 0),
                     "truncated": r["totals"].get("truncated", 0)})
    return {"floor": floor, "results": rows}
