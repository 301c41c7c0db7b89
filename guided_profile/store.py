"""The profile store: digestions (the answers to the guidance question) and profiles kept in SQLite.

A step's answer depends on the person's history, the step's instruction (for a digestion, the
guidance question; for a profile continuing the digestion's conversation, also the guidance question
it follows: `programs.conversation`), the guidance it was given (for a guided profile) and the model,
so that is the key; the user id is kept to show a person's profiles.  Every method, ablation row, question of the
same user and later run then reuses a profile instead of paying for it again, whatever the
prompt layout.  SQLite in WAL mode lets several processes read and write at once; writes are
serialised by SQLite and nothing is lost.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from guided_profile.errors import GuidedProfileError
from guided_profile.files import irregular, processes_using
from guided_profile.redaction import redact

SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    kind TEXT NOT NULL,             -- 'digest' or 'profile' ('guidance': a digest kept before the rename)
    key TEXT NOT NULL,              -- sha256 of (kind, history, instruction, guidance, lm)
    user_id TEXT,
    lm TEXT NOT NULL,
    instruction TEXT NOT NULL,
    guidance TEXT,
    history_sha TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER, cached_prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL,
    created REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS steps_user ON steps (user_id);
"""


# Store kinds by their earlier names: a digest was kept as kind 'guidance' (the word that now means only the
# model's answer), so rows written then are found, and shown, under their current kind.
LEGACY_KINDS = {"digest": "guidance"}


class StoreError(GuidedProfileError):
    """The store file is unreadable or stays locked; `--no-store` runs without it."""


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class SQLiteFile:
    """One SQLite file in WAL mode, shared by threads and processes; every failure is one StoreError
    that names the file and what to do.  Subclasses set the schema and the words of those errors."""

    schema: ClassVar[str]
    label: ClassVar[str]            # what the file is, as errors name it
    unusable_hint: ClassVar[str]    # what to do when the file cannot be opened
    failing_hint: ClassVar[str]     # what to do when a statement fails
    in_use_hint: ClassVar[str] = ""  # what else to do when another process keeps the file locked

    def __init__(self, path: str | Path, timeout: float = 30.0):
        self.path = Path(path)
        self.timeout = timeout
        kind = irregular(self.path)
        if kind:  # SQLite would block on a pipe, or fail with "unable to open database file" on a folder
            raise StoreError(f"{self.label} {self.path} is {kind}; give a file, or {self.failing_hint}")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. a file where its folder should be
            raise StoreError(f"{self.label} {self.path}: cannot create its folder ({exc.strerror or exc}); "
                             f"{self.unusable_hint}") from exc
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(self.schema)
        except sqlite3.Error as exc:
            raise self._error(exc, self.unusable_hint) from exc

    def _error(self, exc: sqlite3.Error, hint: str) -> StoreError:
        """The error to show: a file another process keeps locked is in use, not broken (deleting it would
        destroy that process's work), so that case names the process when it can."""
        if "locked" not in str(exc) and "busy" not in str(exc):
            return StoreError(f"{self.label} {self.path} cannot be used ({exc}); {hint}")
        users = ", ".join(processes_using(self.path)) or "another process"
        otherwise = f", or {self.in_use_hint}" if self.in_use_hint else ""
        return StoreError(f"{self.label} {self.path} is in use by {users} and stayed locked for {self.timeout:g} s; "
                          f"wait for it to finish{otherwise}")

    def _run(self, sql: str, params: Sequence = (), many: bool = False) -> list[tuple]:
        """One statement in its own transaction (`many`: once per row of `params`)."""
        try:
            with self._lock, self._db:
                if many:
                    self._db.executemany(sql, params)
                    return []
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, self.failing_hint) from exc

    def close(self) -> None:
        self._db.close()


class ProfileStore(SQLiteFile):
    """Digestions and profiles by (kind, history, instruction, guidance, model); see the module's docstring."""

    schema = SCHEMA
    label = "profile store"
    unusable_hint = "delete it or run with --no-store"
    failing_hint = "run with --no-store to go on without it"
    in_use_hint = "run with --no-store to go on without it"

    @staticmethod
    def key(kind: str, history: str, instruction: str, guidance: str, lm: str) -> str:
        return _sha(kind, history, instruction, guidance, lm)

    def lookup(self, kind: str, history: str, instruction: str, guidance: str, lm: str) -> str | None:
        """The kept text of this step, if any; a row kept under the kind's earlier name counts too."""
        for name in (kind, LEGACY_KINDS.get(kind)):
            if name is None:
                continue
            rows = self._run("SELECT text FROM steps WHERE kind = ? AND key = ?",
                             (name, self.key(name, history, instruction, guidance, lm)))
            if rows:
                return rows[0][0]
        return None

    def save(self, kind: str, history: str, instruction: str, guidance: str, lm: str, text: str, *,
             user_id: str | None = None, usage: dict[str, int] | None = None, seconds: float | None = None) -> None:
        usage = usage or {}
        self._run("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (kind, self.key(kind, history, instruction, guidance, lm), user_id, lm, redact(instruction),
                   redact(guidance), _sha(history), redact(text), usage.get("prompt_tokens"),
                   usage.get("cached_prompt_tokens"), usage.get("completion_tokens"), seconds, time.time()))

    def for_user(self, user_id: str) -> list[dict[str, Any]]:
        rows = self._run("SELECT kind, lm, instruction, guidance, text, prompt_tokens, completion_tokens, seconds, "
                         "created FROM steps WHERE user_id = ? ORDER BY created", (user_id,))
        names = ("kind", "lm", "instruction", "guidance", "text", "prompt_tokens", "completion_tokens", "seconds",
                 "created")
        current = {old: new for new, old in LEGACY_KINDS.items()}
        return [{**dict(zip(names, row, strict=True)), "kind": current.get(row[0], row[0])} for row in rows]

    def count(self) -> int:
        return self._run("SELECT COUNT(*) FROM steps")[0][0]
