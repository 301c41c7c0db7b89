"""Personalized dialogue replies: a person's earlier replies, a message to them, and their real reply.

Two shapes are read into the same `Example`s:

* JSON (a list) or JSON lines of {user_id?, id?, history: [str], query: str, response: str,
  persona?: [str]}: the shape of PER-CHAT (the paper's Reddit data: a user's comment history, a
  post, the user's real reply), into which any Reddit export can be put;
* the ConvAI2 / PersonaChat ParlAI text format ("N your persona: ..." lines, then
  "N partner utterance<TAB>persona reply" lines; N restarts at 1 with each dialogue), one example per
  dialogue: the persona side's earlier replies are the history, the last partner utterance the
  query, the persona's reply to it the gold, and the persona sentences the true profile, kept in
  `meta["persona"]` for scoring only (never shown to a program).  The user is the persona: its
  dialogues share one user id, so a split by user keeps each persona on one side.

The format is told by the file name (.txt is ParlAI; .json / .jsonl / .json.gz JSON).  A folder is
accepted when it holds exactly one such file.  Malformed input is a `DataError` naming the file and
line or record; an example that cannot be asked (no reply, no history) is skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guided_profile import json_text
from guided_profile.datasets.example import Example
from guided_profile.datasets.io import read_text, text_lines
from guided_profile.errors import DataError

STAT_KEYS = ("dialogues", "built", "no_gold", "no_query", "empty_history")
SILENCE = "__SILENCE__"  # ParlAI's placeholder when the persona side speaks first
_PARLAI_LINE = re.compile(r"^(\d+) (.*)$")
_SUFFIXES = (".txt", ".json", ".jsonl", ".json.gz", ".jsonl.gz")


def find_dialogue_file(path: Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(path, "not a regular file or a folder" if path.exists() else "no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_SUFFIXES))
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise DataError(path, f"expected exactly one dialogue file (ParlAI .txt, or .json / .jsonl); found {found}")
    return files[0]


def load_dialogues(path: Path, keep_empty: bool = False) -> tuple[list[Example], dict[str, int]]:
    """Examples from a ParlAI .txt or a JSON / JSON-lines file, chosen by the file name.  With
    `keep_empty`, an example without earlier replies is built too (a cold-start user), still counted
    as `empty_history`."""
    file = find_dialogue_file(path)
    if file.name.endswith(".txt"):
        return load_parlai(file, keep_empty)
    if file.name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return load_dialogue_json(file, keep_empty)
    raise DataError(file, "unknown format: expected a ParlAI .txt file or a .json / .jsonl file")


def load_parlai(path: Path, keep_empty: bool = False) -> tuple[list[Example], dict[str, int]]:
    """One example per dialogue of a ParlAI text file (PersonaChat / ConvAI2 "self" files)."""
    path = Path(path)
    stats = dict.fromkeys(STAT_KEYS, 0)
    examples: list[Example] = []
    dialogue: dict[str, Any] | None = None

    def finish() -> None:
        if dialogue is None:
            return
        stats["dialogues"] += 1
        result = _parlai_example(dialogue, stats["dialogues"] - 1, path, keep_empty)
        if isinstance(result, str):
            stats[result] += 1
        else:
            stats["empty_history"] += not result.history
            stats["built"] += 1
            examples.append(result)

    previous = 0
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        match = _PARLAI_LINE.match(line)
        if match is None:
            raise DataError(path, f"line {lineno}: expected 'N text' (ParlAI format: a turn number, a space, text)")
        number, text = int(match.group(1)), match.group(2)
        if number == 1:
            finish()
            dialogue = {"line": lineno, "persona": [], "turns": []}
        elif dialogue is None:
            raise DataError(path, f"line {lineno}: the file starts at turn {number}, not 1 (was its top cut off?)")
        elif number != previous + 1:
            raise DataError(path, f"line {lineno}: turn number {number} follows {previous} (expected {previous + 1})")
        previous = number
        if text.startswith("your persona:"):
            dialogue["persona"].append(text[len("your persona:"):].strip())
        elif text.startswith("partner's persona:"):
            continue  # the "both" files also show the partner's persona: not this person's
        else:
            fields = text.split("\t")
            if len(fields) < 2:
                raise DataError(path, f"line {lineno}: expected 'partner utterance<TAB>reply'")
            dialogue["turns"].append((fields[0].strip(), fields[1].strip()))
    finish()
    return examples, stats


def persona_id(persona: list[str]) -> str | None:
    """The user behind a ParlAI dialogue is its persona: PersonaChat plays one persona in several
    dialogues, and splitting by dialogue would put the same person in train and test."""
    if not persona:
        return None
    text = "\n".join(sorted(p.strip().lower() for p in persona))
    return "persona-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _parlai_example(dialogue: dict[str, Any], index: int, path: Path, keep_empty: bool = False) -> Example | str:
    turns = dialogue["turns"]
    if not turns or not turns[-1][1]:
        return "no_gold"
    query, gold = turns[-1]
    if not query or query == SILENCE:
        return "no_query"
    history = tuple(reply for _, reply in turns[:-1] if reply)
    if not history and not keep_empty:
        return "empty_history"
    example_id = f"dialogue-{index}"
    return Example(example_id=example_id, user_id=persona_id(dialogue["persona"]) or example_id, history=history,
                   query=query, gold=gold,
                   meta={"persona": tuple(dialogue["persona"]), "source": str(path), "line": dialogue["line"],
                         "turns": len(turns)})


def load_dialogue_json(path: Path, keep_empty: bool = False) -> tuple[list[Example], dict[str, int]]:
    """Examples from a JSON list or JSON lines of {user_id?, id?, history, query, response, persona?}."""
    path = Path(path)
    stats = dict.fromkeys(STAT_KEYS, 0)
    examples: list[Example] = []
    seen: set[str] = set()
    for index, (where, record) in enumerate(_json_records(path)):
        stats["dialogues"] += 1
        if not isinstance(record, dict):
            raise DataError(path, f"{where}: expected an object {{history, query, response}}")
        missing = [key for key in ("history", "query", "response") if key not in record]
        if missing:  # a misnamed field (say "reply") must not quietly count every record as having no gold
            raise DataError(path, f"{where}: no field {', '.join(map(repr, missing))} (fields: "
                            f"{', '.join(map(repr, record)) or 'none'})", record=str(record.get("id", index)))
        example_id = str(record["id"]) if record.get("id") is not None else f"dialogue-{index}"
        if example_id in seen:
            raise DataError(path, f"{where}: id appears twice", record=example_id)
        seen.add(example_id)
        user_id = str(record["user_id"]) if record.get("user_id") is not None else f"dialogue-{index}"
        history = _strings(path, where, example_id, record.get("history"), "history")
        persona = _strings(path, where, example_id, record.get("persona"), "persona") if "persona" in record else None
        query, gold = (_string(path, where, example_id, record.get(k), k) for k in ("query", "response"))
        if not gold.strip():
            stats["no_gold"] += 1
        elif not query.strip():
            stats["no_query"] += 1
        elif not any(h.strip() for h in history) and not keep_empty:
            stats["empty_history"] += 1
        else:
            stats["empty_history"] += not any(h.strip() for h in history)
            stats["built"] += 1
            meta: dict[str, Any] = {"source": str(path), "record": where}
            if persona is not None:
                meta["persona"] = tuple(p.strip() for p in persona if p.strip())
            examples.append(Example(example_id=example_id, user_id=user_id,
                                    history=tuple(h.strip() for h in history if h.strip()),
                                    query=query.strip(), gold=gold.strip(), meta=meta))
    return examples, stats


def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) for each record: "record N" of a JSON list, "line N" of JSON lines."""
    text = read_text(path)
    if text.lstrip().startswith("{") and "\n" in text.strip():
        try:
            json_text.loads(text)
        except json.JSONDecodeError:
            pass  # JSON lines: one object per line
        else:
            raise DataError(path, "holds one JSON object: expected a JSON list of dialogues or JSON lines "
                                  "(one dialogue object per line)")
    if text.lstrip().startswith("["):
        try:
            data = json_text.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
        for index, record in enumerate(data):
            yield f"record {index}", record
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json_text.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"line {lineno}: invalid JSON at column {exc.colno}: {exc.msg}") from exc
        yield f"line {lineno}", record


def _string(path: Path, where: str, record_id: str, value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(path, f"{where}: field {name!r} should be a string, got {type(value).__name__}",
                        record=record_id)
    return value


def _strings(path: Path, where: str, record_id: str, value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(path, f"{where}: field {name!r} should be a list of strings", record=record_id)
    return value
