"""The retrieval dimension of the Optuna search: retriever and k as one choice beside the guidance question.

One categorical parameter, `retrieval`, whose choices are labels: `base` (the program's own retrieval,
today's history if it has none) and `NAME:K` (`bm25:8`, `dense:4`, `recent:8`).  One label rather than
two parameters (retriever, k) because not every retriever takes every k (`none` ignores it, `base` may have
none), and a conditional k would make TPE model a hole; labels are strings because Optuna stores
categorical choices as JSON primitives, and because a label also names the configuration in racing keys
(two trials differing only in retrieval must never share per-example scores).  A retrieval chosen here
keeps the base program's `steps`: the switch is the user's, the search only tries items and k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guided_profile.errors import ConfigError
from guided_profile.programs.retrieved import Retrieval

BASE = "base"
PARAM = "retrieval"  # the Optuna parameter's name


def retrieval_choices(retrievers: Sequence[str], ks: Sequence[int]) -> list[str]:
    """`base` and every `NAME:K`, each checked now (an unknown retriever or a bad k fails before any call).

    Args:
        retrievers: retriever names to try, e.g. ("bm25", "dense"); `none` is tried once, whatever k.
        ks: the k values to try with each, e.g. (4, 8).

    Returns:
        The labels, `base` first (the first, enqueued trial is the hand-written configuration).
    """
    labels = [BASE]
    for name in dict.fromkeys(retrievers):
        for k in ([ks[0]] if name == "none" and ks else ks):
            Retrieval(name, k)  # raises ConfigError for an unknown name or a k below 1
            labels.append(f"{name}:{k}")
    return list(dict.fromkeys(labels))


def label_of(retrieval: Retrieval | None, base: Retrieval | None) -> str:
    """The label of `retrieval` in a search whose base program has `base` (what the first trial enqueues)."""
    if retrieval == base or (retrieval is None and base is None):
        return BASE
    if retrieval is None or retrieval.k is None or retrieval.settings != Retrieval(retrieval.retriever, 1).settings:
        raise ConfigError(f"retrieval {retrieval!r} has no label in the search space (labels are NAME:K with the "
                          "retriever's default settings)")
    return f"{retrieval.retriever}:{retrieval.k}"


def retrieval_from_label(label: str, base: Retrieval | None) -> Retrieval | None:
    """The retrieval a label stands for; `base` is the base program's (None: today's history)."""
    if label == BASE:
        return base
    name, _, k = label.partition(":")
    if not k.isdigit():
        raise ConfigError(f"retrieval label {label!r}: expected 'base' or NAME:K, e.g. bm25:8")
    return Retrieval(name, int(k), steps=base.steps if base is not None else "all")


def suggest_retrieval(trial: Any, choices: Sequence[str], base: Retrieval | None) -> tuple[str, Retrieval | None]:
    """(label, retrieval) the trial tries: `trial.suggest_categorical("retrieval", choices)`."""
    label = trial.suggest_categorical(PARAM, list(choices))
    return label, retrieval_from_label(label, base)
