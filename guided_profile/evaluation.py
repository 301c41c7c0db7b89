"""Run methods over examples into a run folder that survives interruption.

A run folder holds `config.json` (what was asked), `records.jsonl` (one line per method and
example, appended and synced as each finishes) and `summary.json`.  Re-running the same command
skips every (method, example) already recorded, so a killed run loses at most the examples in flight.
One process writes to a folder at a time (its lock), an interrupt abandons the requests in flight
without waiting for them, a server that cannot be reached stops the run, and a damaged file is one
clear error (or, for a records line, a warning and a redo): never a traceback, a lost or a doubled record.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dspy

from guided_profile import json_text
from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError, RunFolderError, RunFolderWarning
from guided_profile.files import FolderLock, append_line, irregular, make_folder, write_json
from guided_profile.lm.accounting import Usage
from guided_profile.lm.transport import endpoint_down
from guided_profile.metrics.stats import bootstrap_ci
from guided_profile.programs.adapter import DEFAULT_LAYOUT, PersonalAdapter
from guided_profile.programs.attempt import attempt
from guided_profile.programs.conversation import DEFAULT_PROFILE_STEP
from guided_profile.programs.methods import is_cold_start
from guided_profile.programs.retrieved import TODAY
from guided_profile.provenance import made_at, portable
from guided_profile.store import ProfileStore
from guided_profile.tasks.base import Task

RECORDS = "records.jsonl"
CONFIG = "config.json"
# What a config made before a setting existed did without it: such a run resumes under today's default.
ASSUMED = {"retrieval": TODAY.to_dict(), "prompt_layout": DEFAULT_LAYOUT, "profile_step": DEFAULT_PROFILE_STEP}
RECORD_TYPES = {"method": str, "example_id": str, "inputs": dict, "usage": dict, "seconds": (int, float),
                "history_cut": (bool, int), "steps": list}  # what resumes and summaries read from every record
CONFIG_TYPES = {"methods": list, "programs": dict, "task_options": dict, "data": str}


def read_records(path: Path, repair: bool = False,
                 check: Callable[[dict[str, Any]], str | None] | None = None) -> list[dict[str, Any]]:
    """The records (JSON objects) of a JSON-lines file (none if it does not exist).  A line that is not one,
    or that `check` finds wrong (a kill cut it short, or it was edited), is skipped with a warning naming
    the line and left in the file: its example is simply run again.  No warning once another line holds the
    same method and example (it was run again: nothing is lost, nothing will run).  With `repair`, a last
    line a kill cut short is ended, so the next appended record starts on a line of its own."""
    raw = _read_run_file(path)
    if raw is None:
        return []
    if repair and raw and not raw.endswith(b"\n"):
        append_line(path, "")
    records, skipped = [], []
    for line_no, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        parsed, problem = _parse_record(line, check)
        if problem:
            skipped.append((line_no, problem, _identity(parsed)))
        else:
            records.append(parsed)
    redone = {_identity(record) for record in records}
    for line_no, problem, identity in skipped:
        if identity is None or identity not in redone:
            warnings.warn(RunFolderWarning(f"{path}, line {line_no}: {problem}; skipped and left in the file, its "
                                           "example will be run again"), stacklevel=2)
    return records


def _identity(parsed: Any) -> tuple[str, str] | None:
    """(method, example id) of a parsed line that names both as text, else None."""
    if isinstance(parsed, dict) and isinstance(parsed.get("method"), str) and isinstance(parsed.get("example_id"), str):
        return parsed["method"], parsed["example_id"]
    return None


def _parse_record(line: bytes, check: Callable[[dict[str, Any]], str | None] | None) -> tuple[Any, str | None]:
    """(the parsed line, None), or (the parsed line or None, what is wrong with it)."""
    try:
        record = json_text.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "incomplete or not JSON (cut short by a kill?)"
    if not isinstance(record, dict):
        return record, f"{_json_kind(record)}, not a record"
    return record, check(record) if check else None


def record_problem(record: dict[str, Any]) -> str | None:
    """What keeps `record` from being a run folder's record (what resumes and summaries read), or None."""
    needed = [*RECORD_TYPES, "gold", "error"] + (["metrics"] if record.get("error") is None else [])
    missing = [key for key in needed if key not in record]
    if missing:
        return f"not a record (no {', '.join(missing)})"
    wrong = [key for key, kind in RECORD_TYPES.items() if not isinstance(record[key], kind)]
    if record.get("error") is None and not isinstance(record["metrics"], dict):
        wrong.append("metrics")
    if "seconds" not in wrong and not _amount(record["seconds"]):
        wrong.append("seconds")
    usage = record["usage"] if isinstance(record["usage"], dict) else {}
    wrong += [f"usage.{key}" for key, value in usage.items() if not _amount(value)]
    unknown = set(usage) - {f.name for f in fields(Usage)}
    if wrong or unknown:
        return f"not a record ({', '.join(wrong + sorted(unknown))} of the wrong type or unknown)"
    return None


def metrics_problem(task: Task, metrics: dict[str, Any]) -> str | None:
    """What keeps a finished record's metrics from being summarized by `task` (a hand-edited line), or None:
    a per-example metric missing or not a finite number, or anything the task's summary cannot read."""
    wrong = [key for key in task.per_example_metrics if not _amount(metrics.get(key))]
    wrong += [key for key, value in metrics.items() if isinstance(value, float) and not math.isfinite(value)]
    if wrong:
        return f"metrics {', '.join(sorted(set(wrong)))} missing or not finite numbers"
    try:
        task.summarize([metrics])
    except (KeyError, TypeError, ValueError) as exc:
        return f"metrics the {task.name} task cannot summarize ({type(exc).__name__}: {exc})"
    return None


def _amount(value: Any) -> bool:
    """A count or a duration as summaries add them: a finite number, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_run_file(path: Path) -> bytes | None:
    """A run folder's file as bytes, None if it does not exist; a folder, a pipe or an unreadable file in
    its place is one clear error (opening a pipe would block)."""
    _refuse_irregular(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read it ({exc.strerror or exc})") from exc


def _refuse_irregular(path: Path) -> None:
    kind = irregular(path)
    if kind:
        raise RunFolderError(f"{path} is {kind}, where the run keeps a file; move it away or use another --out folder")


def read_config(path: Path) -> dict[str, Any]:
    """A run folder's config.json ({} if there is none yet); a file cut short or of another shape is refused
    with one line: resuming on a configuration that cannot be read would mix two experiments."""
    raw = _read_run_file(path)
    if raw is None:
        return {}
    try:
        config = json_text.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RunFolderError(f"{path}: not UTF-8 text (byte {exc.start}); restore it or use another --out "
                             "folder") from exc
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}: cut short or edited); restore "
                             "it or use another --out folder") from exc
    if not isinstance(config, dict):
        raise RunFolderError(f"{path}: {_json_kind(config)}, not a run's configuration (an object); "
                             "restore it or use another --out folder")
    for key, kind in CONFIG_TYPES.items():
        if config.get(key) is not None and not isinstance(config[key], kind):
            raise RunFolderError(f"{path}: {key!r} is {_json_kind(config[key])}, a run writes "
                                 f"{_json_kind(kind())}; restore it or use another --out folder")
    return config


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words ("null", "an array"), for messages about a file's content."""
    kinds = [(type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
             (list, "an array"), (dict, "an object")]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _check_writable(path: Path) -> None:
    """Fail before any LM call, not at the first record, when the folder or its records cannot be written."""
    records = path / RECORDS
    _refuse_irregular(records)
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
        with open(records, "ab"):
            pass
    except OSError as exc:
        where = records if records.exists() else path
        raise RunFolderError(f"{where}: cannot be written ({exc.strerror or exc}); make it writable or use another "
                             "--out folder") from exc


def _merged_config(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """`config` joined with the folder's own (methods and programs run before), after refusing a folder made
    with other settings; config.json is written when new or when it gains methods or programs."""
    config_file = path / CONFIG
    old = read_config(config_file)
    if old:
        if isinstance(old.get("data"), str):  # runs made before data was named portably stated a path
            old["data"] = portable(old["data"])
        keys = ("task", "split", "seed", "lm", "data", "task_options", "answer_mode", "rotations", "prompt_layout",
                "profile_step", "retrieval")
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
        write_json(config_file, config)
    return config


def records_at(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many of `records` each commit made ("+dirty" when the checkout had changes), most first."""
    counts = Counter(made_at(record.get("git")) for record in records)
    return dict(counts.most_common())


@dataclass
class RunFolder:
    """A run's folder: the configuration it was made with, and its records by (method, example id).

    Reopened by a rerun of the same command, it skips what is done and retries what failed; a rerun
    with other settings (task, split, seed, model, data, task options, answer mode, prompt layout,
    profile step, retrieval) is refused.
    It is locked for one writer at a time until `close()` (or the process ends): a second run on the same
    folder is refused at once, naming the process that holds it.
    """

    path: Path
    config: dict[str, Any]
    done: dict[tuple[str, str], dict] = field(default_factory=dict)  # (method, example id) -> its record
    failed: set[tuple[str, str]] = field(default_factory=set)  # whose last attempt failed (retried on resume)
    lock: FolderLock | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path, config: dict[str, Any]) -> RunFolder:
        """Create the folder, or reopen it to resume if it was made by the same configuration."""
        path = Path(path)
        make_folder(path, "the run folder (--out)")
        lock = FolderLock(path, config.get("command"))
        lock.acquire()
        try:
            _check_writable(path)
            run = cls(path, _merged_config(path, config), lock=lock)
            for record in read_records(path / RECORDS, repair=True, check=record_problem):
                run._remember(record)
        except BaseException:
            lock.release()
            raise
        return run

    def close(self) -> None:
        """Let other processes write here again."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save_summary(self, summaries: dict[str, dict]) -> None:
        """summary.json, with config.json rewritten beside it so both state the same command, and how many
        of the records each commit made (`records_at`; "unstated" for records made before they said)."""
        self.config["records_at"] = records_at(self.done.values())
        write_json(self.path / CONFIG, self.config)
        write_json(self.path / "summary.json", {"config": self.config, "methods": summaries})

    def check_matches(self, task: Task, examples: list[Example]) -> None:
        """Refuse to resume on records whose example now reads differently (the data file, the task's
        options or its prompt formatting changed): reusing them would mix two experiments silently."""
        recorded = {example_id for _, example_id in self.done}
        now = {ex.example_id: task.as_read(ex) for ex in examples if ex.example_id in recorded}
        for (method, example_id), record in self.done.items():
            if example_id in now and {"inputs": record["inputs"], "gold": record["gold"]} != now[example_id]:
                raise ConfigError(f"{self.path / RECORDS}: the record of {method} on example {example_id} has other "
                                  "inputs or gold than the data gives now (the data or the task changed); use "
                                  "another --out folder to start a new run")

    def forget_unscorable(self, task: Task, running: Iterable[str]) -> None:
        """Forget the finished records whose metrics `task` cannot summarize (`metrics_problem`: a line edited
        by hand), with a warning naming each; the lines stay in the file.  A method in `running` runs those
        examples again; another method's summary counts them as failed until a run with it redoes them."""
        running = set(running)
        for (method, example_id), record in list(self.done.items()):
            problem = metrics_problem(task, record["metrics"])
            if problem:
                then = ("its example will be run again" if method in running else
                        f"counted as failed until a run with {method} redoes it")
                warnings.warn(RunFolderWarning(f"{self.path / RECORDS}: the record of {method} on example "
                                               f"{example_id} has {problem}; {then}"), stacklevel=2)
                del self.done[(method, example_id)]
                self.failed.add((method, example_id))

    def append(self, record: dict[str, Any]) -> None:
        """Keep `record`, stamped with the code that made it: a folder grown across sessions states each
        record's commit, where config.json states only the latest command's."""
        if self.config.get("git"):
            record = record | {"git": self.config["git"]}
        append_line(self.path / RECORDS, json.dumps(record, ensure_ascii=False))
        self._remember(record)

    def _remember(self, record: dict[str, Any]) -> None:
        key = (record["method"], record["example_id"])
        if record.get("error") is None:
            self.done[key] = record
            self.failed.discard(key)
        elif key not in self.done:
            self.failed.add(key)


def evaluate(programs: dict[str, dspy.Module], task: Task, examples: list[Example],
             lm: dspy.BaseLM | Callable[[], dspy.BaseLM], run: RunFolder, *, workers: int = 1,
             adapter: dspy.Adapter | None = None, store: ProfileStore | None = None,
             progress: Callable[[int], Any] | None = None) -> dict[str, dict]:
    """Every program on every example not yet in `run`; returns each method's summary (also of the
    methods the folder ran before on these examples).

    The unit of work is one example with all its pending methods, run back to back, so the model's
    prompt cache still holds that user's history and a run cut short has every method on the same
    users.  With `workers` > 1, that many examples run at once (one per server slot); each worker
    has its own copy of `lm` (same engine, own history) so costs are still counted per example.  `lm` may
    be a function that makes it, called only when some example is left to run: a finished folder is
    summarized again without loading a model.
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
    run.forget_unscorable(task, programs)
    todo = [(ex, [m for m in _answering(programs, task, ex) if (m, ex.example_id) not in run.done]) for ex in examples]
    todo = [(ex, methods) for ex, methods in todo if methods]
    if todo and not isinstance(lm, dspy.BaseLM):
        lm = lm()  # a factory: the model is loaded only when something is left to run
    local = threading.local()
    saver = _Saver(run)
    watch = _EndpointWatch(min(len(todo), max(2, workers)), lm)

    def work(item: tuple[Example, list[str]]) -> _Finished:
        if not hasattr(local, "lm"):
            local.lm = lm.copy() if workers > 1 else lm
        example, methods = item
        tried = {m: attempt(programs[m], task, example, lm=local.lm, adapter=adapter, store=store) for m in methods}
        saver.save([{"method": m, **a.record()} for m, a in tried.items()])  # by the worker: kept if the run stops
        return _Finished(len(tried), all(a.unreachable for a in tried.values()),
                         next((a.error for a in tried.values() if a.error), None))

    total = sum(len(methods) for _, methods in todo)
    bar = progress(total) if progress else None
    try:
        with closing(_each_done(work, todo, workers, saver)) as finished:
            try:
                for done in finished:
                    if bar is not None:
                        bar.update(done.records)
                    watch.saw(done)
            except KeyboardInterrupt:
                saver.abandon()  # before the pool is closed, so it is closed without waiting
                raise
    finally:
        if bar is not None:
            bar.close()
    summaries = _summaries(task, run, list(programs), examples)
    run.save_summary(summaries)
    return summaries


def _answering(programs: dict[str, dspy.Module], task: Task, example: Example) -> list[str]:
    """The programs that answer `example`: a cold-start row, if given, answers the users with too short a
    history (`Task.is_cold_start`) and no one else; every other program answers the rest."""
    cold = [m for m in programs if is_cold_start(m)]
    if not cold:
        return list(programs)
    return cold if task.is_cold_start(example) else [m for m in programs if m not in cold]


def _summaries(task: Task, run: RunFolder, methods: list[str], examples: list[Example]) -> dict[str, dict]:
    """Each method's summary on `examples`, also of the folder's other methods with records on them, so a
    run grown one method at a time still has every row in its summary."""
    earlier = [m for m in run.config.get("methods", []) if m not in methods
               and any((m, ex.example_id) in run.done for ex in examples)]
    return {method: summarize(task, [run.done.get((method, ex.example_id)) for ex in examples],
                              failed=sum((method, ex.example_id) in run.failed for ex in examples))
            for method in [*methods, *earlier]}


@dataclass
class _Finished:
    """One example's pending methods, done: how many records, whether every one failed to reach the model's
    server, and the first error."""

    records: int
    unreachable: bool
    error: str | None


class _Saver:
    """Appends records from the worker threads, one example at a time, until the run is interrupted: after
    that nothing more is written, so the process can exit at once without waiting for requests in flight
    (their examples have no record and are run again on resume: nothing is lost, nothing doubled)."""

    def __init__(self, run: RunFolder):
        self.run = run
        self.abandoned = False
        self._lock = threading.RLock()  # re-entrant: with one worker, an interrupt may come while saving

    def save(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            if not self.abandoned:
                for record in records:
                    self.run.append(record)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True


class _EndpointWatch:
    """Stops a run once `probe` examples in a row failed to reach the model's server (at the start, or when
    it goes down mid-run): every later example would fail the same way, each after DSPy's retries, and a
    run of failed records looks finished.  One example that reaches it starts the count again."""

    def __init__(self, probe: int, lm: dspy.BaseLM):
        self.probe, self.lm = probe, lm
        self.in_a_row = 0
        self.reached = False

    def saw(self, done: _Finished) -> None:
        if not done.unreachable:
            self.in_a_row, self.reached = 0, True
            return
        self.in_a_row += 1
        if self.in_a_row >= self.probe:
            what = f"{self.in_a_row} examples in a row" if self.reached else f"the first {self.in_a_row} examples all"
            raise endpoint_down(self.lm, done.error or "", f"{what} failed to connect")


def _each_done(work: Callable, items: list, workers: int, saver: _Saver) -> Iterator:
    """`work(item)` for every item, yielded as each finishes.  If the caller stops early (an error) nothing
    queued is started any more and the examples already in flight finish; on an interrupt (Ctrl-C, SIGTERM)
    those are abandoned instead: `saver` stops writing and the pool is not waited for."""
    if workers <= 1:
        yield from map(work, items)
        return
    stop = threading.Event()  # set by the first failure, before the caller even hears of it

    def guarded(item: Any) -> Any:
        if stop.is_set():
            return None
        try:
            return work(item)
        except BaseException:
            stop.set()
            raise

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(guarded, item) for item in items]
        yield from (done for done in (future.result() for future in as_completed(futures)) if done is not None)
    except KeyboardInterrupt:
        saver.abandon()
        raise
    finally:
        stop.set()
        pool.shutdown(wait=not saver.abandoned, cancel_futures=True)


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


def answer_step_count(config: dict[str, Any], record: dict[str, Any]) -> int:
    """How many of a record's last steps are the answer step's model calls: one per rotation in score mode
    (never more than the options), two where scoring fell back to generating a letter (the rotation that found
    no log-probabilities, then the generation), else one.  Reports that price the answer alone need this."""
    if config.get("answer_mode") != "score":
        return 1
    if record.get("answer_path") == "fallback-generate":
        return 2
    return min(config.get("rotations") or 1, len(record["inputs"].get("options") or [1]))
