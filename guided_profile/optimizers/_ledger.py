"""What an optimization has paid over all its sessions, kept in its run folder (`cost.json`).

A search cut short resumes in a later session (the Optuna study, DSPy's answer cache), and that
session pays only for what is new: its own seconds and model calls say little about what the
export cost.  Each session therefore writes its running totals beside the study, every
`interval` seconds and at the end, so a killed session loses at most that much, and the next one
adds its own to the earlier ones'.
"""

from __future__ import annotations

import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guided_profile import json_text
from guided_profile.files import write_json
from guided_profile.lm.accounting import CallCounter

FILENAME = "cost.json"
INTERVAL = 30.0  # seconds between writes: what a killed session may leave uncounted


class CostLedger:
    """Use as `with CostLedger(workdir, counters): ...` around a search; `totals()` sums every session.

    `counters` are the optimization's call counters (task and prompt model); a call DSPy's cache
    answered is not counted as paid, so a resumed session does not count an earlier one's calls again.
    Without a `workdir` (a library call that keeps no state) only this session is counted.
    """

    def __init__(self, workdir: Path | str | None, counters: list[CallCounter], interval: float = INTERVAL):
        self.path = Path(workdir) / FILENAME if workdir is not None else None
        self.counters = counters
        self.interval = interval
        self.earlier = self._read()
        self.started = time.perf_counter()
        self.ended: float | None = None  # set on leaving the block: later reads agree with the file
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_every_interval, daemon=True)

    def __enter__(self) -> CostLedger:
        if self.path is not None:
            self._writer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join()
        self.ended = time.perf_counter()
        self._write()

    def session(self) -> dict[str, Any]:
        """This session so far: when it started, seconds, calls made and calls the model answered."""
        usage = [counter.snapshot() for counter in self.counters]
        calls = sum(u.calls for u in usage)
        seconds = (self.ended or time.perf_counter()) - self.started
        return {"started": self.started_at, "seconds": round(seconds, 1),
                "calls": calls, "model_calls": calls - sum(u.cache_hits for u in usage),
                "prompt_tokens": sum(u.prompt_tokens for u in usage),
                "completion_tokens": sum(u.completion_tokens for u in usage)}

    def totals(self) -> dict[str, Any]:
        """Every session's seconds, model calls and tokens added up, and how many sessions there were."""
        sessions = [*self.earlier, self.session()]
        keys = ("seconds", "model_calls", "prompt_tokens", "completion_tokens")
        summed = {key: sum(s.get(key, 0) for s in sessions) for key in keys}
        return {"sessions": len(sessions), **summed, "seconds": round(summed["seconds"], 1)}

    def _write_every_interval(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def _write(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {"sessions": [*self.earlier, self.session()]})

    def _read(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        try:
            sessions = json_text.loads(self.path.read_text())["sessions"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"{self.path}: unreadable ({exc}); the cost is counted from this session on", stacklevel=2)
            return []
        return [s for s in sessions if isinstance(s, dict)]
