"""Writing the files a run keeps: whole or not at all, and with no secret in them.

A file rewritten in place (a run's config.json, summary.json) that a kill or a full disk cuts short
breaks every later resume, so whole files are written to a temporary file beside the target and
renamed over it (a rename within a folder is atomic).  Appended lines (records.jsonl) are flushed
and synced one by one, so a kill loses at most the line being written, which the reader skips.
Every text passes through `redact` first: an error message or a command line may quote a URL with
a password in it, and nothing that reaches a file may carry one.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from guided_profile import json_text
from guided_profile.errors import FolderInUse, OutputError
from guided_profile.redaction import redact, redact_json

# A temporary file is created readable by its owner alone; the file it becomes gets the mode an ordinary
# write would leave (the old file's, else what `open` gives a new one), so results stay readable to whoever
# shares the folder.  The umask is read once, at import, before any thread of ours starts: os.umask can
# only be read by setting it, which is not safe while other threads create files.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_NEW_FILE_MODE = 0o666 & ~_UMASK


def irregular(path: Path) -> str | None:
    """What `path` is when it exists but is not a regular file ("a folder", "a pipe, socket or device"),
    else None.  Opening a named pipe blocks until a writer comes, so a reader must refuse it first."""
    path = Path(path)
    if not path.exists() or path.is_file():
        return None
    return "a folder" if path.is_dir() else "not a regular file (a pipe, socket or device)"


def make_folder(path: Path, what: str) -> None:
    """`path` as a folder, created if missing; a file in its place (or in its parents' places) is one clear
    error naming `what` the folder is for."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder: {what} must be a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create {what} ({exc.strerror or exc})") from exc


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (redacted), atomically."""
    write_bytes(path, redact(text).encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, atomically (for binary files such as charts; text goes through `write_text`)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: cannot write: it is a folder where a file belongs (move the folder away)")
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else _NEW_FILE_MODE
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def write_json(path: Path, data: Any, **dumps: Any) -> None:
    """`write_text` of `json.dumps(data, **dumps)` (indent 2 unless told otherwise); every string is
    redacted before it is escaped, where a secret with a quote or a non-ASCII letter still reads as itself."""
    write_text(path, json.dumps(redact_json(data), **{"indent": 2, **dumps}))


def append_line(path: Path, text: str) -> None:
    """Append `text` (redacted) as one line and sync it, so a finished record survives a kill."""
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(redact(text).replace("\n", " ") + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputError(f"{path}: cannot append: {exc.strerror or exc}") from exc


LOCK_NAME, HOLDER_NAME = ".lock", ".lock-holder.json"


class FolderLock:
    """One writer at a time in a folder: an OS file lock (`filelock`, released by the OS when the process
    dies, so a killed run never leaves a stale lock), and beside it a note of who holds it, for the message
    a second writer gets.  Re-entrant within a process: the library may reopen a folder it holds."""

    def __init__(self, folder: Path, command: str | None):
        from filelock import FileLock

        self.folder = Path(folder)
        self.command = command or " ".join(sys.argv)
        self._lock = FileLock(self.folder / LOCK_NAME, timeout=0, is_singleton=True, thread_local=False)

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise FolderInUse(f"{self.folder} is in use by {self.holder()}; wait for it to end, or use another "
                              "--out folder") from None
        except OSError as exc:  # an unwritable folder, or something else where the lock file belongs
            raise OutputError(f"{self.folder / LOCK_NAME}: cannot lock the folder ({exc.strerror or exc})") from exc
        if self._lock.lock_counter == 1:
            write_json(self.folder / HOLDER_NAME, {"pid": os.getpid(), "command": self.command,
                                                   "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        if self._lock.lock_counter == 1:
            (self.folder / HOLDER_NAME).unlink(missing_ok=True)
        self._lock.release()

    def holder(self) -> str:
        """'process 123 (guided-profile run ...)', from the holder's note; 'another process' without one."""
        note = self.folder / HOLDER_NAME
        try:
            held = json_text.loads(note.read_text(encoding="utf-8")) if not irregular(note) else {}
            return redact(f"process {int(held['pid'])} ({held['command']})")
        except (OSError, ValueError, TypeError, KeyError):
            return "another process"


def processes_using(path: Path) -> list[str]:
    """'process 123 (python -m ...)' for every other process that has `path` open, as far as /proc shows
    (Linux; empty elsewhere or where /proc hides other users' processes)."""
    target = os.path.realpath(path)
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_dir.parent.name)
        try:
            if pid == os.getpid() or not any(os.path.realpath(fd) == target for fd in fd_dir.iterdir()):
                continue
            command = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended, or is not ours to look at
            continue
        found.append(redact(f"process {pid} ({command})"))
    return found
