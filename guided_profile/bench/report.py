"""`bench.json` and its `table.md`: per answer mode, each configuration against the ideal floor, plain DSPy
and the mode's one-slot default, where its tokens went step by step, and what batching changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guided_profile.bench.tokens import CATEGORIES
from guided_profile.files import write_json, write_text
from guided_profile.report import markdown_table, origin, signed, text_table

STEPS = ("digest", "profile", "answer")


def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def _paired(vs: dict | None) -> str:
    if not vs or not vs.get("n"):
        return "-"
    return f"{signed(vs['diff'])} [{signed(vs['ci95'][0])}, {signed(vs['ci95'][1])}] p={vs['p']:.2f}"


def mode_table(mode: dict, objective: str) -> tuple[list[str], list[list[str]]]:
    """Wall time against the floor and plain DSPy, and accuracy against plain DSPy and the one-slot default
    (paired)."""
    header = ["config", "wall s", "s/user", "wall/floor", "speedup vs plain", objective,
              f"{objective} - plain [95% CI] p", f"{objective} - default [95% CI] p", "loop stops", "cut at cap"]
    rows = [[r["config"], f"{r['wall_seconds']:.1f}", f"{r['seconds_per_user']:.1f}", _fmt(r["wall_over_floor"]),
             _fmt(r["speedup_over_plain"]), _fmt(r.get(objective), ".3f"), _paired(r.get("vs_plain")),
             _paired(r.get("vs_default")), str(r["repetition_stops"]), str(r["truncated"])] for r in mode["results"]]
    floor = mode["floor"]
    rows.append(["ideal floor", _fmt(floor["seconds"]), _fmt(round(floor["seconds"] / max(1, floor["n"]), 1)),
                 "1.00", "-", "-", "-", "-", "-", "-"])
    return header, rows


def token_table(result: dict, mode_name: str) -> tuple[list[str], list[list[str]]]:
    """Computed tokens per user, by step and category, for each configuration of a mode and the floor."""
    header = ["step", "config", *CATEGORIES, "cached"]
    mode = result["modes"][mode_name]
    rows = []
    for step in STEPS:
        for r in mode["results"]:
            config = result["configs"][r["config"]]
            per = config["tokens"]["per_step"].get(step)
            users = max(1, len(config["tokens"]["content"]))
            if per:
                rows.append([step, r["config"], *(f"{per[c] / users:.0f}" for c in (*CATEGORIES, "cached"))])
        ideal = mode["floor"]["per_step"][step]
        rows.append([step, "ideal floor", *(f"{ideal[c] / max(1, mode['floor']['n']):.0f}" for c in CATEGORIES), "-"])
    return header, rows


def batching_table(mode: dict) -> tuple[list[str], list[list[str]]] | None:
    """Outputs that differ from the one-slot run's, per step, for each multi-slot configuration."""
    kinds = (*STEPS, "scores")
    rows = [[r["config"], *(str(r["batching_changes"].get(s, "-")) for s in kinds), str(r["batching_changes"]["n"])]
            for r in mode["results"] if r.get("batching_changes")]
    return (["config", *(f"{s} changed" for s in kinds), "of users"], rows) if rows else None


def preamble(result: dict) -> str:
    speed, machine = result["speed"], result["machine"]
    first = next(iter(result["configs"].values()))
    lm, counter = first["lm"], first["tokens"]["counter"]
    data = result.get("data", {})
    return (f"Model {lm['spec']} ({lm['model']}); CPU {machine['cpu']['model']}, {machine['cores']} cores, "
            f"{machine['llama_threads']} llama.cpp threads; n={result['n']} {data.get('split')} examples, method "
            f"{result['method']}, score mode with {result['rotations']} rotations.  Floor speeds (best measured): "
            f"{speed['prompt_tokens_per_s']} prompt / {speed['generated_tokens_per_s']} generated tok/s.  Tokens "
            f"counted by {counter}.  Data `{data.get('path')}`, seed {data.get('seed')}; {origin(result)}")


def write_report(result: dict, out: Path) -> str:
    """`bench.json` (the whole result, for scripts) and `table.md` (for people) in `out`; returns the text for
    the terminal."""
    text, terminal = [f"# Throughput, {result['task']}", f"Command: `{result.get('command')}`", preamble(result)], []
    for name, mode in result["modes"].items():
        header, rows = mode_table(mode, result["objective"])
        text += [f"## {name} mode", markdown_table(header, rows)]
        terminal += [f"{name} mode", text_table(header, rows)]
        header, rows = token_table(result, name)
        text += ["Computed tokens per user (cached tokens are not computed):", markdown_table(header, rows)]
        batching = batching_table(mode)
        if batching:
            text += ["Outputs batching changed against one slot:", markdown_table(*batching)]
    write_json(out / "bench.json", result, indent=1)
    write_text(out / "table.md", "\n\n".join(text) + "\n")
    return "\n".join([preamble(result), *terminal])
