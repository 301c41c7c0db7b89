"""Guidance questions a person wrote, searched beside the ones the prompt model proposes (`--candidates FILE`).

Comparing one's own hand-written alternatives is a main use of the optimizers, so the file format is
the simplest that can hold them: a text file with one question per line (blank lines and lines
starting with '#' are skipped), or a JSON list whose items are a question or an object
`{"guidance_question": "...", "instructions": {"write_profile": "...", "answer": "..."}}` that also
sets other steps' instructions.  Every problem is one error naming the file and the line or item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from guided_profile.datasets.io import read_json, read_text
from guided_profile.errors import ConfigError, DataError
from guided_profile.optimizers._guidance_shape import set_instruction

MAX_CHARS = 600  # a guidance question is a sentence or two; longer text is almost surely the wrong file


@dataclass(frozen=True)
class Candidate:
    """One user-written configuration: a guidance question and, optionally, other steps' instructions."""

    guidance_question: str
    instructions: dict[str, str] = field(default_factory=dict)


def read_candidates(path: Path, steps: tuple[str, ...] = ()) -> list[Candidate]:
    """The candidates in `path`, in file order, without repeats.  `steps` names the steps whose
    instructions a JSON item may set (empty: any name is accepted here and checked by the caller)."""
    path = Path(path)
    if path.suffix == ".json":
        raw = read_json(path, unique_keys=True)
        if not isinstance(raw, list):
            raise DataError(path, "expected a JSON list of questions or {\"guidance_question\": ...} objects")
        found = [_from_json(path, i, item, steps) for i, item in enumerate(raw, 1)]
    else:
        lines = [(n, line.strip()) for n, line in enumerate(read_text(path).splitlines(), 1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if lines and lines[0][1][0] in "[{":  # JSON in a text file would become questions made of JSON
            raise DataError(path, f"line {lines[0][0]} starts like JSON: a JSON list of candidates goes in a "
                                  "file named *.json; a text file holds one plain question per line")
        found = [Candidate(_question(path, f"line {n}", line)) for n, line in lines]
    if not found:
        raise DataError(path, "holds no candidate (one guidance question per line, or a JSON list)")
    return _unique(found)


def _unique(found: list[Candidate]) -> list[Candidate]:
    """First occurrences only: a repeated line would be paid for twice and weigh twice in the search."""
    seen: dict[str, Candidate] = {}
    for candidate in found:
        key = json.dumps([candidate.guidance_question, candidate.instructions], sort_keys=True)
        seen.setdefault(key, candidate)
    return list(seen.values())


def _from_json(path: Path, index: int, item: Any, steps: tuple[str, ...]) -> Candidate:
    where = f"item {index}"
    if isinstance(item, str):
        return Candidate(_question(path, where, item))
    if not isinstance(item, dict) or "guidance_question" not in item:
        raise DataError(path, f"{where}: expected a question or an object with 'guidance_question'")
    unknown = set(item) - {"guidance_question", "instructions"}
    if unknown:
        raise DataError(path, f"{where}: unknown field(s) {', '.join(sorted(map(repr, unknown)))}")
    texts = item.get("instructions", {})
    if not isinstance(texts, dict) or not all(isinstance(v, str) and v.strip() for v in texts.values()):
        raise DataError(path, f"{where}: 'instructions' must map step names to non-empty texts")
    if steps and set(texts) - set(steps):
        raise DataError(path, f"{where}: no step named {', '.join(sorted(set(texts) - set(steps)))}; "
                              f"the program's steps are {', '.join(steps)}")
    return Candidate(_question(path, where, item["guidance_question"]), {k: v.strip() for k, v in texts.items()})


def _question(path: Path, where: str, text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, f"{where}: a guidance question must be non-empty text")
    text = " ".join(text.split())
    if len(text) > MAX_CHARS:
        raise DataError(path, f"{where}: {len(text)} characters; a guidance question has at most {MAX_CHARS}")
    return text


def with_candidate(program: dspy.Module, candidate: Candidate) -> dspy.Module:
    """A copy of `program` whose digest step asks `candidate`'s question and whose named steps take its
    instructions; a program without a digest step (DG, PG) cannot take a guidance question."""
    steps = dict(program.named_predictors())
    if "digest" not in steps:
        raise ConfigError("guidance question candidates need a program with a digest step (gpg or gpg:PARTS)")
    unknown = set(candidate.instructions) - set(steps)
    if unknown:
        raise ConfigError(f"candidate {candidate.guidance_question!r} names no step {', '.join(sorted(unknown))}; "
                          f"the program's steps are {', '.join(steps)}")
    copy = program.deepcopy()
    for name, text in {"digest": candidate.guidance_question, **candidate.instructions}.items():
        set_instruction(copy, name, text)
    return copy
