"""LaMP-7, personalized tweet paraphrasing (Salemi et al. 2023), in the official LaMP file schema.

A folder holds `X_questions.json` ([{id, input, profile: [{id, text, ...}]}], where `input` is
"Paraphrase the following tweet without any explanation before or after it: <tweet>") and
`X_outputs.json` ({task, golds: [{id, output}]}).  Every question is one user: the profile is that
user's other tweets, the input a neutral rewrite of one of their tweets, the gold the tweet itself.

Problems that make the file unusable (bad JSON, a field of the wrong type, duplicate ids) are a
`DataError` naming the file and the question; a question that simply cannot be asked (no gold, no
profile tweets, nothing to paraphrase) is skipped and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guided_profile.datasets.example import Example
from guided_profile.datasets.io import read_json
from guided_profile.errors import DataError

PREFIX = "Paraphrase the following tweet without any explanation before or after it:"

# Every key is always present, so build stats of different runs compare without guards.
STAT_KEYS = ("questions", "built", "no_gold", "empty_profile", "empty_input", "blank_profile_items",
             "unprefixed_input", "golds_without_question")


def find_lamp_files(path: Path) -> tuple[Path, Path]:
    """The (questions, outputs) pair in a folder, or of a questions file given directly."""
    path = Path(path)
    if path.is_file():
        if not path.name.endswith("_questions.json"):
            raise DataError(path, "expected a folder holding X_questions.json + X_outputs.json")
        return path, path.with_name(path.name[: -len("_questions.json")] + "_outputs.json")
    if not path.is_dir():
        raise DataError(path, "no such folder; expected one holding X_questions.json + X_outputs.json")
    questions = sorted(p for p in path.glob("*_questions.json") if p.is_file())
    if not questions:
        present = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
        raise DataError(path, f"expected X_questions.json + X_outputs.json (LaMP layout); found {present}")
    if len(questions) > 1:
        raise DataError(path, f"holds several LaMP splits ({', '.join(p.name for p in questions)}); "
                              "point at one X_questions.json")
    return questions[0], questions[0].with_name(questions[0].name[: -len("_questions.json")] + "_outputs.json")


def load_lamp7(path: Path, keep_empty: bool = False) -> tuple[list[Example], dict[str, int]]:
    """Examples (one per question, in file order) and counts of what was skipped and why.  With
    `keep_empty`, a question without profile tweets is built too (a cold-start user) and still counted
    as `empty_profile`."""
    questions_file, outputs_file = find_lamp_files(path)
    if not outputs_file.exists():
        raise DataError(questions_file, f"no gold file {outputs_file.name} next to it (LaMP keeps golds apart)")
    golds = _read_golds(outputs_file)
    questions = read_json(questions_file)
    if not isinstance(questions, list):
        raise DataError(questions_file, "expected a JSON list of questions {id, input, profile}")

    stats = dict.fromkeys(STAT_KEYS, 0)
    examples: list[Example] = []
    seen: set[str] = set()
    for index, record in enumerate(questions):
        stats["questions"] += 1
        if not isinstance(record, dict):
            raise DataError(questions_file, f"question {index}: expected an object, got {type(record).__name__}")
        qid = _string_id(questions_file, record.get("id"), f"question {index}")
        if qid in seen:
            raise DataError(questions_file, "question id appears twice", record=qid)
        seen.add(qid)
        raw_input = record.get("input")
        if not isinstance(raw_input, str):
            raise DataError(questions_file, "missing or non-string field 'input'", record=qid)
        profile = record.get("profile")
        if not isinstance(profile, list):
            problem = ("missing field 'profile'" if profile is None else
                       f"field 'profile' is {type(profile).__name__}, not a list")
            raise DataError(questions_file, f"{problem} (a list of {{id, text}})", record=qid)
        history = []
        for position, item in enumerate(profile):
            text = item.get("text") if isinstance(item, dict) else None
            if not isinstance(text, str):
                raise DataError(questions_file, f"profile item {position}: expected an object with string 'text'",
                                record=qid)
            if text.strip():
                history.append(text.strip())
            else:
                stats["blank_profile_items"] += 1
        tweet = raw_input.strip()
        if tweet.startswith(PREFIX):
            tweet = tweet[len(PREFIX):].strip()
        else:
            stats["unprefixed_input"] += 1  # used whole: another wording of the instruction stays visible
        gold = golds.get(qid)
        if gold is None or not gold.strip():
            stats["no_gold"] += 1
        elif not history and not keep_empty:
            stats["empty_profile"] += 1
        elif not tweet:
            stats["empty_input"] += 1
        else:
            stats["empty_profile"] += not history
            stats["built"] += 1
            examples.append(Example(example_id=qid, user_id=qid, history=tuple(history), query=tweet,
                                    gold=gold.strip(), meta={"source": str(questions_file)}))
    stats["golds_without_question"] = len(golds.keys() - seen)
    return examples, stats


def _read_golds(path: Path) -> dict[str, str]:
    data = read_json(path)
    golds = data.get("golds") if isinstance(data, dict) else None
    if not isinstance(golds, list):
        raise DataError(path, "expected a JSON object {task, golds: [{id, output}]}")
    result: dict[str, str] = {}
    for index, gold in enumerate(golds):
        if not isinstance(gold, dict):
            raise DataError(path, f"gold {index}: expected an object {{id, output}}")
        gid = _string_id(path, gold.get("id"), f"gold {index}")
        output = gold.get("output")
        if output is not None and not isinstance(output, str):
            raise DataError(path, f"field 'output' should be a string, got {type(output).__name__}", record=gid)
        if gid in result:
            raise DataError(path, "gold id appears twice", record=gid)
        if output is not None:
            result[gid] = output
    return result


def _string_id(path: Path, value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise DataError(path, f"{where}: missing or invalid 'id' ({value!r})")
    return str(value)
