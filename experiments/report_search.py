"""Report of one Optuna search (issue 18): every trial, what racing saved, the cost, the confirm stage.

Reads a compiled program exported by `guided-profile optimize --optimizer optuna` (the confirm stage, racing
savings and cost it records) and its run folder's study (`X.run/study.db` beside `X.json`), which also holds
the trials the export leaves out: pruned ones with the mean they had when the race stopped them, and failed
ones (interrupted, then retried).  Writes `search.md` into the run folder, so the numbers a note quotes come
from a committed command rather than from reading the dashboard.

    python experiments/report_search.py experiments/results/compiled/preference-optuna-raced-1.5b.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from guided_profile.evaluation import read_records  # noqa: E402
from guided_profile.files import write_text  # noqa: E402
from guided_profile.report import markdown_table, origin  # noqa: E402

REPORT = "search.md"
QUESTION_CHARS = 70  # a guidance question is cut to this in the trials table; the pool below has them whole


def source(index: int, question: str, config: dict[str, Any]) -> str:
    """Where a guidance question came from: the task's own (pool index 0), the person's --candidates file,
    or the prompt model's proposals."""
    if index == 0:
        return "hand-written"
    return "ours (--candidates)" if question in config.get("user_candidates", []) else "proposed"


def state_cell(trial: optuna.trial.FrozenTrial, retried: set[int]) -> str:
    if trial.state == optuna.trial.TrialState.PRUNED:
        return f"pruned after {trial.user_attrs.get('pruned_after_examples', '?')}"
    if trial.state == optuna.trial.TrialState.FAIL:
        return "failed, retried" if trial.number in retried else "failed"
    return trial.state.name.lower()


def mean_cell(trial: optuna.trial.FrozenTrial) -> str:
    """A complete trial's dev mean; a pruned trial's mean over the examples it had (Optuna's value for it is
    its last example's score); nothing for a trial that scored nothing."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        return f"{trial.values[0]:.4f}"
    so_far = trial.user_attrs.get("mean_so_far")
    return f"({so_far:.4f} so far)" if so_far is not None else "-"


def trial_rows(study: optuna.Study) -> list[list[str]]:
    config, pool = study.user_attrs["config"], study.user_attrs["guidance_question_pool"]
    retried = set(study.user_attrs.get("retried", []))
    rows = []
    for t in study.trials:
        params = t.params or t.system_attrs.get("fixed_params", {})  # a trial never run has only what was enqueued
        index = params.get("guidance")
        question = pool[index] if index is not None else "(not chosen yet)"
        cut = question if len(question) <= QUESTION_CHARS else question[: QUESTION_CHARS - 1] + "…"
        scored = t.user_attrs.get("dev_examples")
        paid, reused = t.user_attrs.get("paid_examples"), t.user_attrs.get("reused_examples")
        origin = source(index, question, config) if index is not None else "-"
        rows.append([str(t.number), state_cell(t, retried), f"{origin}: {cut}",
                     str(t.user_attrs.get("parts", params.get("parts", "-"))).upper(),
                     str(t.user_attrs.get("profile_words", "-")),
                     f"{scored} ({paid} paid, {reused} reused)" if scored is not None and paid is not None else "-",
                     mean_cell(t), str(t.user_attrs.get("calls", "-")),
                     str(t.user_attrs.get("tokens_per_example", "-"))])
    return rows


def cost_lines(payload: dict[str, Any]) -> list[str]:
    """Wall time and model calls over every session of the search up to this export, as the export states them
    (`usage.all_sessions`, the run folder's cost.json added up when it was written)."""
    total = (payload.get("usage") or {}).get("all_sessions")
    if not total:
        return ["Cost over all sessions: not recorded in this export.", ""]
    tokens = total.get("prompt_tokens", 0) + total.get("completion_tokens", 0)
    return [f"**Cost** (the export's `usage.all_sessions`: {total['sessions']} sessions of search, confirm stage "
            f"and export): {total['seconds'] / 3600:.1f} h of wall time, {total['model_calls']:,} model calls, "
            f"{tokens:,} prompt + generated tokens.", ""]


def racing_lines(info: dict[str, Any]) -> list[str]:
    racing = info.get("racing")
    if not racing:
        return ["Racing: not recorded (a search without pruning, or exported before it was).", ""]
    share = racing["saved"] / racing["full_evaluation"] if racing["full_evaluation"] else 0.0
    return [f"**Racing:** {racing['trials']} trials ran ({racing['pruned']} pruned) and scored "
            f"{racing['dev_examples_scored']} dev evaluations, against {racing['full_evaluation']} for a full "
            f"evaluation of each: {racing['saved']} saved ({share:.0%}). Of the scored, {racing['paid']} were paid "
            "and the rest reused from earlier trials (the same configuration on the same user).", ""]


def reported_means(payload: dict[str, Any], run_dir: Path) -> tuple[dict[str, dict[str, float]], str]:
    """Per confirm-stage program, the means of the metrics reported beside the objective (accuracy), and a note
    on where they come from.  Exports made before the stage kept them (`confirm.reported`) are read from the run
    folder's confirm.jsonl: each configuration's lines on the confirm users, named by the program whose recorded
    objective mean they reproduce (one example per user only, and only a unique match)."""
    stage = payload["confirm"]
    if stage.get("reported"):
        return stage["reported"], ""
    path = run_dir / "confirm.jsonl"
    if not path.exists() or stage.get("examples") != stage.get("n"):
        return {}, ""
    ids, lines = set(stage["example_ids"]), defaultdict(list)
    for record in read_records(path):  # a line a kill cut short is skipped with a warning
        if record.get("example_id") in ids and record.get("metrics") and "configuration" in record:
            lines[record["configuration"]].append(record)
    found: dict[str, dict[str, float]] = {}
    for records in lines.values():
        if len(records) != len(ids):
            continue
        mean = math.fsum(r["score"] for r in records) / len(records)
        names = [name for name, value in stage["means"].items() if abs(value - mean) < 1e-9]
        if len(names) == 1 and all("accuracy" in r["metrics"] for r in records):
            found[names[0]] = {"accuracy": math.fsum(r["metrics"]["accuracy"] for r in records) / len(records)}
    note = ("Accuracy on the confirm users is read from `confirm.jsonl` (the export keeps none): each program's "
            "lines are the configuration whose scores reproduce its recorded mean.")
    return found, note if found else ""


def search_trials(payload: dict[str, Any], study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial] | None:
    """The search trial of each program the confirm stage scored, as the export records it (its place in the
    search's ranking, and the ranking's trials); None for exports made before it was recorded."""
    ranks = (payload.get("confirm") or {}).get("search_ranks")
    order = payload["optimizer"].get("info", {}).get("ranked_trials")
    if ranks is None or order is None:
        return None
    by_number = {t.number: t for t in study.trials}
    return {name: by_number[order[rank]] for name, rank in ranks.items() if rank is not None}


def confirm_lines(payload: dict[str, Any], searched: dict[str, optuna.trial.FrozenTrial],
                  recorded: dict[str, optuna.trial.FrozenTrial] | None, run_dir: Path) -> list[str]:
    """Each program's mean on the confirm users beside its search trial (and its accuracy), and the verdict.
    `recorded`: each program's trial as the export records it; `searched`, for older exports: the complete trial
    of each guidance question that only one complete trial has."""
    stage = payload.get("confirm") or {}
    verdict = stage.get("verdict")
    if not verdict:
        return ["No confirm stage recorded.", ""]
    reported, note = reported_means(payload, run_dir)
    rows = []
    for name, mean in stage["means"].items():
        digest = (payload.get("handwritten_instructions") if name == "handwritten" else stage["finalists"][name])
        question = (digest or {}).get("digest")
        trial = recorded.get(name) if recorded is not None else searched.get(question)
        found = ([f"{trial.number}: {str(trial.user_attrs.get('parts', '-')).upper()}",
                  f"{trial.values[0]:.4f}"] if trial else ["-", "-"])
        accuracy = (reported.get(name) or {}).get("accuracy")
        rows.append([name + (" (winner)" if name == stage["winner"] else ""), question or "-", *found, f"{mean:.4f}",
                     f"{accuracy:.1%}" if accuracy is not None else "-"])
    return [f"## Confirm stage: {stage['n']} dev users the search never saw", "",
            markdown_table(["program", "guidance question", "search trial: final step reads", "search mean",
                            f"confirm mean ({verdict['objective']})", "confirm accuracy"], rows), "",
            "A program's search trial is " + ("the trial its configuration came from ('-': none scored it)."
                                              if recorded is not None else "the complete trial with its guidance "
                                              "question ('-' when several share it: this export does not record "
                                              "which).") + " Accuracy is reported, never used to decide."
            + (f" {note}" if note else ""),
            "", f"**Verdict:** {verdict['line']}", ""]


def markdown(compiled: Path, run_dir: Path) -> str:
    payload = json.loads(compiled.read_text())
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run_dir / 'study.db'}")
    config, info = study.user_attrs["config"], payload["optimizer"].get("info", {})
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pool = study.user_attrs["guidance_question_pool"]
    questions = [pool[t.params.get("guidance", 0)] for t in complete]
    searched = {q: t for q, t in zip(questions, complete, strict=True) if questions.count(q) == 1}
    recorded = search_trials(payload, study)
    lm = payload.get("lm") or {}
    data = payload.get("data") or {}
    header = ["trial", "state", "guidance question", "final step reads", "profile words",
              "dev examples scored", f"mean ({config['objective']})", "calls", "tokens/ex"]
    return "\n".join([
        f"# {config['task']}: Optuna search `{study.study_name}`", "",
        f"Command: `{payload.get('command')}`", "",
        f"Model {lm.get('model')} (weights sha256 {(lm.get('sha256') or '')[:12]}), seed {config['seed']}, "
        f"objective {config['objective']}; {len(study.user_attrs.get('dev_ids', []))} search users and "
        f"{(payload.get('confirm') or {}).get('n', 0)} confirm users from split dev, train "
        f"{len(data.get('train_ids', []))} users for proposals; the test split is not read. "
        f"{origin({**payload, 'data_sha256': data.get('sha256')})}.", "",
        "## Trials (every one the study holds)", "", markdown_table(header, trial_rows(study)), "",
        "*final step reads*: PC the history, G the guidance answer, PP the profile. A failed trial was "
        "interrupted by a stop (or some of its examples failed); its configuration ran again as a later trial.", "",
        *racing_lines(info), *cost_lines(payload), *confirm_lines(payload, searched, recorded, run_dir),
        "## Guidance questions (the study's pool, whole)", "",
        *[f"{i}. {source(i, q, config)}: {q}" for i, q in enumerate(pool)], ""])


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("compiled", type=Path, help="a compiled program from `optimize --optimizer optuna`")
    parser.add_argument("--run-dir", type=Path, default=None, help="its run folder (default: COMPILED with .run)")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or args.compiled.with_suffix(".run")
    for path in (args.compiled, run_dir / "study.db"):
        if not path.is_file():
            parser.exit(2, f"report_search: {path} not found\n")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = run_dir / REPORT
    write_text(out, markdown(args.compiled, run_dir))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
