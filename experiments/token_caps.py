"""The token caps and the loop rule, fitted on the committed runs of the train and dev splits.

Test runs are never read: a cap is a setting, and settings are chosen without looking at test.  For
each task and step (digest, profile, answer) it reads the completion tokens of every step the model
actually computed (no DSPy cache hit, no profile-store hit: then each step's position says which
step it was) in the train/dev folders of `experiments/results/`, generate and score runs alike, and
splits them into outputs that ended on their own and runaways (cut at the cap they ran under, or
caught by `LoopRule`).  The cap chosen is the longest normal output plus a quarter, rounded up to
a multiple of 8, at least 32 (an optimizer's rewritten instruction may ask for a few more words) and
never above the cap the runs had: no output that ended normally in these runs would have been cut.
The caps are declared on the tasks (`Task.step_max_tokens`); the table shows both.

A task with no train/dev run has no fitted cap (its row is missing; `Task.fitted_max_tokens` stays
empty and `stop_runaways` applies only the loop stop).

    python experiments/token_caps.py            # writes experiments/results/token-caps.md
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from guided_profile.evaluation import answer_step_count
from guided_profile.lm.repetition import DEFAULT_LOOP_RULE, first_loop_end
from guided_profile.tasks import BUILT_IN, get_task

RESULTS = Path(__file__).parent / "results"
MIN_CAP = 32
OLD_STEP_CAP = 256  # what digestion and profile ran under when these records were made
TEXT_FIELD = {"digest": "guidance", "profile": "profile", "answer": "reply"}
FITTING_SPLITS = ("train", "dev")


def step_kinds(method: str, n_steps: int, answer_steps: int) -> list[str]:
    """Each computed step's kind, in order: the steps before the answer are the method's digestion
    and profile (PG: the profile alone), in program order."""
    before = n_steps - answer_steps
    plan = [] if method.startswith("dg") else ["profile"] if method.startswith("pg") else ["digest", "profile"]
    return plan[:before] + ["answer"] * answer_steps


def computed_steps(folder: Path):
    """(task, kind, completion tokens, text, old cap) for every step a run computed with the model."""
    config = json.loads((folder / "config.json").read_text())
    if "task" not in config or "methods" not in config:
        return  # not a run of methods (e.g. the profile-update experiment's own layout)
    task = get_task(config["task"])
    score = config.get("answer_mode") == "score"
    for line in (folder / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("error") or record["usage"].get("store_hits"):
            continue  # a step the store answered is missing from `steps`, and positions would shift
        kinds = step_kinds(record["method"], len(record["steps"]), answer_step_count(config, record))
        for kind, step in zip(kinds, record["steps"], strict=True):
            if (kind == "answer" and score) or step.get("cache_hits"):
                continue  # scoring asks for one token: nothing to cap; a DSPy cache hit computed nothing
            cap = task.answer_max_tokens if kind == "answer" else OLD_STEP_CAP
            yield task.name, kind, step["completion_tokens"], record.get(TEXT_FIELD[kind]) or "", cap


def fit(folders: list[Path]) -> dict[tuple[str, str], dict]:
    """Per (task, step): counts, quantiles of normal outputs, runaways, and the cap they give."""
    seen: dict[tuple[str, str], list] = defaultdict(list)
    for folder in folders:
        for task, kind, tokens, text, cap in computed_steps(folder):
            seen[(task, kind)].append((tokens, text, cap))
    return {key: summarize(key, steps) for key, steps in sorted(seen.items())}


def summarize(key: tuple[str, str], steps: list[tuple[int, str, int]]) -> dict:
    """One (task, step) row; a runaway caught by the loop rule would have kept about `tokens x stop / length`."""
    ends = [first_loop_end(text) for _, text, _ in steps]
    normal = sorted(t for (t, _, cap), end in zip(steps, ends, strict=True) if t < cap and end is None)
    caught = [(t, end / len(text)) for (t, text, cap), end in zip(steps, ends, strict=True) if t >= cap and end]
    longest = normal[-1] if normal else 0
    return {"n": len(steps), "normal": len(normal), "cut_at_cap": sum(t >= cap for t, _, cap in steps),
            "loop_caught_at_cap": len(caught), "kept_at_stop": round(sum(t * f for t, f in caught) / len(caught))
            if caught else None, "loop_ended_early": sum(t < cap and end is not None for (t, _, cap), end
                                                         in zip(steps, ends, strict=True)),
            "p50": _q(normal, 0.5), "p95": _q(normal, 0.95), "p99": _q(normal, 0.99), "max_normal": longest,
            "cap": fitted_cap(longest, steps[0][2]),
            "declared": get_task(key[0], stop_runaways=True).step_max_tokens()[key[1]]}


def fitted_cap(longest_normal: int, old_cap: int) -> int:
    """The longest normal output plus a quarter, rounded up to 8, at least 32, at most the old cap."""
    return min(old_cap, max(MIN_CAP, 8 * math.ceil(longest_normal * 1.25 / 8)))


def _q(values: list[int], q: float) -> int:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0


def markdown(table: dict, folders: list[Path]) -> str:
    rule = DEFAULT_LOOP_RULE.to_dict()
    rows = ["| task | step | computed | ended normally | cut at cap | of which loops | tokens kept at the stop "
            "| loop under cap | p50 | p95 | p99 | longest normal | fitted cap | declared |", "|" + "---|" * 14]
    for (task, kind), r in table.items():
        kept = "-" if r["kept_at_stop"] is None else r["kept_at_stop"]
        rows.append(f"| {task} | {kind} | {r['n']} | {r['normal']} | {r['cut_at_cap']} | {r['loop_caught_at_cap']} | "
                    f"{kept} | "
                    f"{r['loop_ended_early']} | {r['p50']} | {r['p95']} | {r['p99']} | {r['max_normal']} | "
                    f"{r['cap']} | {r['declared']} |")
    names = ", ".join(f"`{f.name}`" for f in folders)
    missing = sorted({task.name for task in BUILT_IN} - {task for task, _ in table})
    unfitted = (f"No train/dev run of {', '.join(missing)}: no cap fitted there (stop_runaways applies the loop "
                f"stop only).  " if missing else "")
    return (f"# Token caps per step, fitted on the committed train/dev runs\n\n"
            f"Command: `python experiments/token_caps.py`\n\nTest runs are not read.  {unfitted}"
            f"Completion tokens of every step the model computed (records with no cache or store hit; score-mode "
            f"answers are one token and not listed) in {names}.  Runaways: cut at the cap they ran under "
            f"({OLD_STEP_CAP} for digest and profile, the task's answer cap for answers), or a loop by "
            f"`LoopRule` {rule} (the loop column under the cap counts outputs that looped yet ended by "
            f"themselves: the outputs a stop would have shortened; tokens kept: the mean a loop stop would have "
            f"generated instead of running to the cap, estimated as tokens x stop position / length).  "
            f"Fitted cap = longest normal output x 1.25, "
            f"rounded up to 8, at least {MIN_CAP}, at most the runs' cap; declared = `Task.step_max_tokens()`.\n\n"
            + "\n".join(rows) + "\n")


def fitting_folders() -> list[Path]:
    """The committed run folders of the train and dev splits."""
    folders = sorted(p.parent for p in RESULTS.glob("*/records.jsonl") if (p.parent / "config.json").exists())
    return [f for f in folders if json.loads((f / "config.json").read_text()).get("split") in FITTING_SPLITS]


def main(argv: list[str]) -> int:
    folders = fitting_folders()
    table = fit(folders)
    text = markdown(table, folders)
    (RESULTS / "token-caps.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
