"""Method names as the CLI and result tables spell them.

`dg-no-pc`, `dg-pc`, `pg` and `gpg` are the paper's four methods (`gpg` uses the task's main
switches).  Any ablation row of the paper's Table 3 is `gpg:` plus the parts the final step sees,
joined by '+': `gpg:pc+g+pp`, `gpg:g`, `gpg:pp`, ...  `cold-start:METHOD` is METHOD answering the
users whose history is too short for the others (`Task.is_cold_start`), in a table row of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import dspy

from guided_profile.errors import ConfigError
from guided_profile.programs.adapter import DEFAULT_LAYOUT
from guided_profile.programs.conversation import DEFAULT_PROFILE_STEP, check_profile_step
from guided_profile.programs.modules import DirectAnswer, GuidedProfile, ProfileThenAnswer
from guided_profile.programs.retrieved import Retrieval, with_retrieval
from guided_profile.tasks.base import Task

METHODS: dict[str, Callable[..., dspy.Module]] = {
    "dg-no-pc": lambda task, **answer: DirectAnswer(task, with_context=False, **answer),
    "dg-pc": lambda task, **answer: DirectAnswer(task, with_context=True, **answer),
    "pg": ProfileThenAnswer,
    "gpg": GuidedProfile,  # the task's main switches
}

COLD_START = "cold-start:"  # the prefix of the row that answers users with too short a history

# The parts the final step of GPG may see, by their short names in method names (`gpg:pc+g+pp`).
PARTS = {"pc": "include_context", "g": "include_guidance", "pp": "include_profile"}


def parts_of(switches: dict[str, bool]) -> str:
    """'pc+pp' for context and profile on, guidance off."""
    return "+".join(part for part, switch in PARTS.items() if switches[switch])


def switches_of(parts: str) -> dict[str, bool]:
    chosen = set(parts.split("+"))
    return {switch: part in chosen for part, switch in PARTS.items()}


def ablation_switches(method: str) -> dict[str, bool]:
    """Switches of a `gpg:...` name, e.g. 'gpg:pc+pp' -> context and profile on, guidance off."""
    parts = [p.strip() for p in method.split(":", 1)[1].split("+") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"method {method!r}: parts must be some of {'+'.join(PARTS)}, e.g. gpg:pc+g+pp")
    if not {"g", "pp"} & set(parts):
        raise ConfigError(f"method {method!r} uses neither guidance nor profile: that is dg-pc / dg-no-pc")
    return switches_of("+".join(parts))


def canonical(method: str) -> str:
    """One spelling per program, so records and table rows are not split between synonyms:
    'gpg:pp+pc' -> 'gpg:pc+pp' (parts in pc, g, pp order).  Other names are returned unchanged."""
    if method.startswith("gpg:"):
        return "gpg:" + parts_of(ablation_switches(method))
    return method


def cold_start_method(task: Task) -> str:
    """The row name of the task's declared fallback for cold-start users, e.g. 'cold-start:dg-no-pc'."""
    return COLD_START + task.cold_start_fallback


def is_cold_start(method: str) -> bool:
    """Whether `method` names a cold-start row (its users are the ones no other row answers)."""
    return method.startswith(COLD_START)


def build_program(method: str, task: Task, *, answer_mode: str = "generate", rotations: int | None = 4,
                  prompt_layout: str = DEFAULT_LAYOUT, profile_step: str = DEFAULT_PROFILE_STEP,
                  retrieval: Retrieval | None = None) -> dspy.Module:
    """A fresh program for `method` on `task`; `answer_mode` / `rotations` / `prompt_layout` configure its final
    step (`answer_config` gives all three; rotations matter in score mode only), `profile_step` how GPG formats
    its profile step (the other methods have none to continue), and `retrieval` (default none: the history as
    before retrieval) which history items its steps see.  A cold-start row never retrieves: its fallback reads
    no history, or too little to choose from."""
    answer = {"answer_mode": answer_mode, "rotations": rotations, "prompt_layout": prompt_layout}
    check_profile_step(profile_step)
    if method.startswith(COLD_START):
        return build_program(method[len(COLD_START):], task, **answer, profile_step=profile_step)
    if method == "gpg" or method.startswith("gpg:"):
        switches = ablation_switches(method) if method != "gpg" else {}
        return with_retrieval(GuidedProfile(task, **switches, **answer, profile_step=profile_step), task, retrieval)
    if method in METHODS:
        return with_retrieval(METHODS[method](task, **answer), task, retrieval)
    raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)} or gpg:PARTS (e.g. gpg:pc+g+pp)")


def profile_step_of(program: dspy.Module) -> str:
    """How a built program formats its profile step: a program without GPG's profile step formats none
    otherwise than before the setting existed."""
    return getattr(program, "profile_step", DEFAULT_PROFILE_STEP)
