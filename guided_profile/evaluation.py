"""Run methods over examples into a run folder that survives interruption.

A run folder holds `config.json` (what was asked), `records.jsonl` (one line per method and
example, appended and flushed as each finishes) and `summary.json`.  Re-running the same command
skips every (method, example) already recorded, so a killed run loses at most the example in flight.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.lm.accounting import Usage
from guided_profile.metrics.stats import bootstrap_ci
from guided_profile.programs.adapter import PersonalAdapter
from guided_profile.programs.attempt import attempt
from guided_profile.programs.methods import is_cold_start
from guided_profile.programs.retrieved import TODAY
from guided_profile.provenance import portable
from guided_profile.store import ProfileStore
from guided_profile.tasks.base import Task

RECORDS = "records.jsonl"
# What a config made before a setting existed did without it: such a run resumes under today's default.
ASSUMED = {"retrieval": TODAY.to_dict()}


def read_records(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (none if it does not exist).  A line a kill cut short is
    skipped with a note: its example is simply run again.  With `repair`, that line is ended so the
    next appended record starts on a line of its own."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if repair and text and not text.endswith("\n"):
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n")
    records = []
    for line_no, line in enumerate(text.splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            print(f"note: {path} line {line_no} is incomplete and will be redone")
    return records


@dataclass
class RunFolder:
    """A run's folder: the configuration it was made with, and its records by (method, example id).

    Reopened by a rerun of the same command, it skips what is done and retries what failed; a rerun
    with other settings (task, split, seed, model, data, task options, answer mode, retrieval) is refused.
    """

    path: Path
    config: dict[str, Any]
    done: dict[tuple[str, str], dict] = field(default_factory=dict)  # (method, example id) -> its record
    failed: set[tuple[str, str]] = field(default_factory=set)  # whose last attempt failed (retried on resume)

    @classmethod
    def open(cls, path: Path, config: dict[str, Any]) -> RunFolder:
        """Create the folder, or reopen it to resume if it was made by the same configuration."""
        path.mkdir(parents=True, exist_ok=True)
        config_file = path / "config.json"
        old: dict[str, Any] = {}
        if config_file.exists():
            old = json.loads(config_file.read_text())
            if isinstance(old.get("data"), str):  # runs made before data was named portably stated a path
                old["data"] = portable(old["data"])
            keys = ("task", "split", "seed", "lm", "data", "task_options", "answer_mode", "rotations", "retrieval")
            changed = [k for k in keys if old.get(k, ASSUMED.get(k)) != config.get(k, ASSUMED.get(k))]
            if changed:
                raise ConfigError(f"{path} holds a run with different {', '.join(changed)}; "
                                  "use another --out folder to start a new run")
            # A compiled program is named by its file stem: the same name must still mean the same file.
            old_programs, new_programs = old.get("programs") or {}, config.get("programs") or {}
            replaced = sorted(m for m in new_programs if m in old_programs and old_programs[m] != new_programs[m])
            if replaced:
                raise ConfigError(f"{path} holds results of other programs named {', '.join(replaced)} (the files "
                                  "changed since); use another --out folder")
            config = config | {"methods": list(dict.fromkeys(old.get("methods", []) + config["methods"])),
                               "programs": old_programs | new_programs}
        # Written now only when new, or when it gains methods or programs (which later resumes check);
        # otherwise with the summary, so the command and limit it states are those of the summary.
        gains = (set(config["methods"]) != set(old.get("methods", []))
                 or (old.get("programs") or {}) != (config.get("programs") or {}))
        if not old or gains:
            config_file.write_text(json.dumps(config, indent=2))
        run = cls(path, config)
        records = path / RECORDS
        for record in read_records(records, repair=True):
            run._remember(record)
        return run

    def save_summary(self, summaries: dict[str, dict]) -> None:
        """summary.json, with config.json rewritten beside it so both state the same command."""
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2))
        (self.path / "summary.json").write_text(json.dumps({"config": self.config, "methods": summaries}, indent=2))

    def check_matches(self, task: Task, examples: list[Example]) -> None:
        """Refuse to resume on records whose example now reads differently (the data file, the task's
        options or its prompt formatting changed): reusing them would mix two experiments silently."""
        recorded = {example_id for _, example_id in self.done}
        now = {ex.example_id: json.loads(json.dumps({"inputs": task.inputs(ex), "gold": ex.gold}))
               for ex in examples if ex.example_id in recorded}
        for (method, example_id), record in self.done.items():
            if example_id in now and {"inputs": record["inputs"], "gold": record["gold"]} != now[example_id]:
                raise ConfigError(f"{self.path / RECORDS}: the record of {method} on example {example_id} has other "
                                  "inputs or gold than the data gives now (the data or the task changed); use "
                                  "another --out folder to start a new run")

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path / RECORDS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
        self._remember(record)

    def _remember(self, record: dict[str, Any]) -> None:
        key = (record["method"], record["example_id"])
        if record.get("error") is None:
            self.done[key] = record
            self.failed.discard(key)
        elif key not in self.done:
            self.failed.add(key)


def evaluate(programs: dict[str, dspy.Module], task: Task, examples: list[Example], lm: dspy.BaseLM,
             run: RunFolder, *, workers: int = 1, adapter: dspy.Adapter | None = None,
             store: ProfileStore | None = None,
             progress: Callable[[int], Any] | None = None) -> dict[str, dict]:
    """Every program on every example not yet in `run`; returns each method's summary (also of the
    methods the folder ran before on these examples).

    The unit of work is one example with all its pending methods, run back to back, so the model's
    prompt cache still holds that user's history and a run cut short has every method on the same
    users.  With `workers` > 1, that many examples run at once (one per server slot); each worker
    has its own copy of `lm` (same engine, own history) so costs are still counted per example.
    `adapter` defaults to `PersonalAdapter` (the benchmark also runs DSPy's default one); with a
    `store`, digestions and profiles are looked up there before any LM call and kept there after.
    Each method on each example is one `attempt`: a failed LM call is that record's error and the run
    goes on; a set-up error (e.g. a broken store) stops the run.
    A cold-start row among `programs` (`cold-start:METHOD`) answers the users with too short a history,
    and only them (`Task.is_cold_start`).
    `progress(total)` makes a bar (tqdm-like: `update(n)`, `close()`) for the method runs to do.
    """
    adapter = adapter or PersonalAdapter()
    run.check_matches(task, examples)
    todo = [(ex, [m for m in _answering(programs, task, ex) if (m, ex.example_id) not in run.done]) for ex in examples]
    todo = [(ex, methods) for ex, methods in todo if methods]
    local = threading.local()
    saving = threading.Lock()

    def work(item: tuple[Example, list[str]]) -> int:
        if not hasattr(local, "lm"):
            local.lm = lm.copy() if workers > 1 else lm
        example, methods = item
        records = [{"method": m, **attempt(programs[m], task, example, lm=local.lm, adapter=adapter,
                                           store=store).record()} for m in methods]
        with saving:  # saved by the worker, so an example in flight when the run stops is kept too
            for record in records:
                run.append(record)
        return len(records)

    total = sum(len(methods) for _, methods in todo)
    bar = progress(total) if progress else None
    try:
        with closing(_each_done(work, todo, workers)) as finished:
            for n_records in finished:
                if bar is not None:
                    bar.update(n_records)
    finally:
        if bar is not None:
            bar.close()
    # Also the folder's other methods with records on these examples, so a run grown one method at a
    # time still has every row in its summary.
    earlier = [m for m in run.config.get("methods", []) if m not in programs
               and any((m, ex.example_id) in run.done for ex in examples)]
    summaries = {method: summarize(task, [run.done.get((method, ex.example_id)) for ex in examples],
                                   failed=sum((method, ex.example_id) in run.failed for ex in examples))
                 for method in [*programs, *earlier]}
    run.save_summary(summaries)
    return summaries


def _answering(programs: dict[str, dspy.Module], task: Task, example: Example) -> list[str]:
    """The programs that answer `example`: a cold-start row, if given, answers the users with too short a
    history (`Task.is_cold_start`) and no one else; every other program answers the rest."""
    cold = [m for m in programs if is_cold_start(m)]
    if not cold:
        return list(programs)
    return cold if task.is_cold_start(example) else [m for m in programs if m not in cold]


def _each_done(work: Callable, items: list, workers: int) -> Iterator:
    """`work(item)` for every item, yielded as each finishes.  If the caller stops early (Ctrl-C, an
    error) nothing queued is started any more: only the examples already in flight finish."""
    if workers <= 1:
        yield from map(work, items)
        return
    stop = threading.Event()  # set by the first failure, before the caller even hears of it

    def guarded(item: Any) -> Any:
        if stop.is_set():
            return 0
        try:
            return work(item)
        except BaseException:
            stop.set()
            raise

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield from (future.result() for future in as_completed([pool.submit(guarded, item) for item in items]))
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def summarize(task: Task, records: list[dict | None], failed: int = 0) -> dict[str, Any]:
    """The task's table row for one method, plus interval, failures and mean cost per example."""
    ok = [r for r in records if r is not None]
    row = task.summarize([r["metrics"] for r in ok])
    values = [r["metrics"][task.objective] for r in ok]
    row["ci95"] = bootstrap_ci(values) if values else None
    row["failed"] = failed
    row["history_cut"] = sum(map(_history_cut, ok))
    total = Usage()
    for r in ok:
        total.add(Usage(**r["usage"]))
    n = max(1, len(ok))
    row["totals"] = total.to_dict()
    row["per_example"] = {k: round(v / n, 1) for k, v in total.to_dict().items()}
    row["seconds_per_example"] = round(sum(r["seconds"] for r in ok) / n, 2)
    paths = Counter(r["answer_path"] for r in ok if "answer_path" in r)
    if paths:  # score mode: how many answers came from log-probabilities, how many from the fallback
        row["answer_paths"] = dict(paths)
        row["rotations_without_letter"] = sum(r.get("rotations_without_letter") or 0 for r in ok)
    return row


def _history_cut(record: dict[str, Any]) -> bool:
    """Whether a history some step read was cut to fit: a retrieving program's kept items (`retrieval.cut`), and
    the whole history where its switch leaves a step reading that."""
    retrieval = record.get("retrieval")
    if retrieval is None:
        return record["history_cut"]
    return retrieval["cut"] or (retrieval["steps"] != "all" and record["history_cut"])
