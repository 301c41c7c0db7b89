"""Where a result came from, in words that hold on any machine.

Results are committed and read elsewhere, so nothing written may carry this machine's folders: data
is named `real:SUB` (under the data root), `sample:SUB` (the committed samples) or as the user gave
it.  Beside the name go the data's content hash, the git commit of the code and the package version,
so a reader can tell whether two results were made from the same data by the same code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path

from guided_profile.datasets.example import data_root, samples_dir
from guided_profile.files import write_text
from guided_profile.paths import cache_dir

SAMPLE, REAL = "sample", "real"
RESULTS = "experiments/results"  # committed results: not code
CHECKOUT = Path(__file__).resolve().parents[1]  # the git checkout this package runs from, if it is one


def _roots() -> list[tuple[str, Path]]:
    found = [(SAMPLE, samples_dir())]
    root = data_root()
    if root is not None:
        found.append((REAL, root))
    return [(scheme, path.resolve()) for scheme, path in found]


def portable(path: str | Path, given: str | None = None) -> str:
    """`path` as results name it: `real:SUB` or `sample:SUB` when it lies under the data root or the
    samples folder, else `given` (what the user typed) when it is a relative path, else the path relative
    to the working folder, else `.../NAME` (the data's sha256 beside it identifies it; no folder of this
    machine is written).  Names that are already portable come back unchanged, so old and new records
    compare equal."""
    text = str(path)
    if text.partition(":")[0] in (SAMPLE, REAL) and not Path(text).exists():
        return text
    resolved = Path(text).expanduser().resolve()
    for scheme, root in _roots():
        if resolved.is_relative_to(root):
            return f"{scheme}:{resolved.relative_to(root).as_posix()}"
    typed = text if given is None else given
    if not Path(typed).expanduser().is_absolute():
        return typed
    if resolved.is_relative_to(Path.cwd().resolve()):
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    return f".../{resolved.name}"


def from_portable(name: str) -> Path | None:
    """The folder a `real:SUB` or `sample:SUB` name means on this machine (None for other names,
    or `real:` without a data root)."""
    scheme, sep, sub = name.partition(":")
    for known, root in _roots():
        if sep and scheme == known:
            return root / sub
    return None


def data_sha256(path: Path) -> str:
    """Content hash of a data file or folder (relative names and bytes, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def cached_data_sha256(path: Path) -> str:
    """`data_sha256`, remembered per (path, each file's size and mtime): every run states the hash, and
    real data sets are large enough that hashing them at each start would be felt."""
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(f.relative_to(path) if f != path else f.name), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(json.dumps([str(path), stats]).encode()).hexdigest()
    remembered = cache_dir() / "data-hashes" / f"{key}.sha256"  # one small file per key: no shared index to race on
    if not remembered.is_file():
        remembered.parent.mkdir(parents=True, exist_ok=True)
        write_text(remembered, data_sha256(path))  # whole or not at all: a cut file would name a wrong hash
    return remembered.read_text().strip()


@functools.cache
def git_state(repo: Path = CHECKOUT) -> dict[str, str | bool | None]:
    """The commit of the code that runs, and whether the code differs from it: changed or new files
    anywhere but the committed results, which a run that resumes one of their folders changes itself
    (None outside a git checkout, e.g. an installed wheel: the package version then identifies the code)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=normal", "--", ".", f":(exclude){RESULTS}")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


UNSTATED = "unstated"  # records made before each record stated its commit
DIRTY = "+dirty"


def made_at(git: dict[str, str | bool | None] | None) -> str:
    """A `git_state` as one key, how config.json's `records_at` counts records: the commit, with DIRTY when the
    checkout had changes, or UNSTATED when none was recorded."""
    if not git or not git.get("commit"):
        return UNSTATED
    return git["commit"] + (DIRTY if git.get("dirty") else "")
