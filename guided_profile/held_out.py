"""A compiled program is never scored on the users it was tuned on, unless asked to be.

An optimizer picks the instructions that did best on its train and dev users; scored on those same
users again, the program looks better than it is.  A compiled program records what it was tuned on
(the data's content hash, the split seed, the train and dev example ids; the confirm stage's users
are dev users, chosen on like the rest), so before a run the evaluated examples are checked against
it.  A program tuned on other data is a transfer evaluation: allowed, and said so.  Old files
without these fields still run, with what could not be checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from guided_profile.errors import ConfigError

OVERRIDE = "--allow-overlap"


def tuning_relation(payload: dict[str, Any], data_sha256: str, seed: int, evaluated: set[str],
                    task_options: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """(how the program's tuning data relates to this evaluation, in words for the report;
    the leak found, or None).  Examples built with other task options from the same file (e.g. a
    history that showed categories) are the same users, so overlap is still a leak, but the scores
    measure transfer to this build."""
    relation, leak = _data_relation(payload, data_sha256, seed, evaluated)
    tuned = payload.get("task_options")
    if leak is None and task_options is not None and isinstance(tuned, dict) and tuned != task_options:
        relation += (f"; transfer: tuned with task options {_options(tuned)}, evaluated with "
                     f"{_options(task_options)}")
    return relation, leak


def _options(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True) if options else "{} (the defaults)"


def _data_relation(payload: dict[str, Any], data_sha256: str, seed: int,
                   evaluated: set[str]) -> tuple[str, str | None]:
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    sha = data.get("sha256")
    if not sha:
        return "unverified: the file records no data hash, so overlap with the evaluated users was not checked", None
    if sha != data_sha256:
        return (f"transfer: tuned on other data ({data.get('path', 'path not recorded')}, sha256 {sha[:12]}); "
                "these scores measure transfer to this data"), None
    if data.get("seed") is None:
        return "unverified: tuned on this data, but the file records no split seed", None
    if data["seed"] != seed:
        return "", (f"was tuned on this data split with seed {data['seed']}, and the users of seed {seed}'s split "
                    f"include its train and dev users; use --seed {data['seed']}")
    ids = [*(data.get("train_ids") or []), *(data.get("dev_ids") or []), *_confirm_ids(payload)]
    if "train_ids" not in data or "dev_ids" not in data:
        return "unverified: tuned on this data and seed, but the file records no train/dev example ids", None
    seen = sorted({str(i) for i in ids} & evaluated)
    if seen:
        return "", (f"was tuned on {len(seen)} of the evaluated examples (ids {', '.join(seen[:5])}"
                    f"{', ...' if len(seen) > 5 else ''}); evaluate on the test split")
    return f"held out: tuned on this data and seed, none of its {len(set(ids))} train/dev examples is evaluated", None


def _confirm_ids(payload: dict[str, Any]) -> list[str]:
    """The confirm stage's users: dev users (`dev_ids` holds them too), named here as well because the
    exported program was chosen on them; a file that recorded only the search's part would leak them."""
    stage = payload.get("confirm") if isinstance(payload.get("confirm"), dict) else {}
    return [str(i) for i in stage.get("example_ids") or []]


def check_held_out(payloads: dict[str, dict[str, Any]], files: dict[str, Path], *, data_sha256: str, seed: int,
                   evaluated: Iterable[str], task_options: dict[str, Any] | None = None,
                   allow_overlap: bool = False) -> dict[str, str]:
    """Per compiled program (by table name), how it relates to the evaluated examples, for the config
    and the report.  A leak raises ConfigError naming the file, unless `allow_overlap`; then it is
    run, and the relation says the overlap was allowed."""
    evaluated = {str(e) for e in evaluated}
    relations = {}
    for name, payload in payloads.items():
        relation, leak = tuning_relation(payload, data_sha256, seed, evaluated, task_options)
        if leak and not allow_overlap:
            raise ConfigError(f"{files.get(name, name)}: {leak}, or pass {OVERRIDE} to evaluate it anyway")
        relations[name] = f"overlap allowed ({OVERRIDE}): {leak}" if leak else relation
    return relations
