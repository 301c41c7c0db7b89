"""What a compiled program file may hold, field by field: such a file is untrusted input.

A compiled program comes from someone else's `optimize`, or from a hand that edited it: its checksum
only says the file is unchanged since it was written, not who wrote it.  So every field is checked
here, for its type and range, before anything runs or is printed: a forged `rotations: 0` or `"4"`,
an answer mode that does not exist, an instruction that is not text, or a field no export ever
writes (an `api_key`, say) ends in one line naming the file and the field.  The models below are
the whole format; a field added to the export is added here, or the new files are refused.

Two parts are kept loose on purpose, and neither is ever printed: the optimizer's `info` (what a
search found worth keeping: candidates, trials, fronts; its own notes, any JSON) and the optimizer's
`settings` values (plain scalars).  Setting *names* are checked against the optimizer that wrote
them when the caller passes the optimizers' declared settings (`runs.py` always does).

Versions: 1 is the format before the guidance question had its own name (an Optuna search kept its
pool as `guidance_pool`; a generate-mode program stated `rotations: 4`); 2 is today's.  Both load;
`upgrade` turns a version-1 payload into today's shape after its checksum was checked, and states the
default prompt layout and profile step for a version-2 file exported before they were settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from guided_profile.errors import ConfigError
from guided_profile.programs.adapter import DEFAULT_LAYOUT, PROMPT_LAYOUTS
from guided_profile.programs.answer import ANSWER_MODES, answer_config
from guided_profile.programs.conversation import DEFAULT_PROFILE_STEP, PROFILE_STEPS
from guided_profile.redaction import redact

FORMAT = "guided-profile/compiled-program"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)



def _number(value: Any) -> Any:
    # One check instead of a union of int and float, whose errors would name each member ("dev.int: ...").
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("input should be a number")
    if not math.isfinite(value):
        raise ValueError("input should be a finite number")
    return value


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if not isinstance(value, int | float):
        raise ValueError("input should be text, a number, true, false or null")
    return _number(value)


Count = Annotated[StrictInt, Field(ge=0)]
Number = Annotated[int | float, BeforeValidator(_number)]
Amount = Annotated[int | float, BeforeValidator(_number), Field(ge=0)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
StepName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", max_length=100)]
Scalar = Annotated[Any, BeforeValidator(_scalar)]  # a setting's or task option's value: text, number, bool or null


class _Strict(BaseModel):
    """Every part of the format: exact JSON types (no "4" for 4), and no field it does not name."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Answer(_Strict):
    """How the final step answers (`answer_config`): rotations in score mode, at least 1; the prompt layout
    (absent from files exported before it was a setting: they used the default)."""

    answer_mode: Literal[ANSWER_MODES]  # type: ignore[valid-type]
    rotations: Annotated[StrictInt, Field(ge=1)] | None = None
    prompt_layout: Literal[PROMPT_LAYOUTS] = DEFAULT_LAYOUT  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _rotations_in_score_mode(self) -> Answer:
        if self.answer_mode == "score" and self.rotations is None:
            raise ValueError("score mode needs rotations, a whole number of at least 1")
        return self


class Switches(_Strict):
    """Which parts GPG's final step sees."""

    include_context: StrictBool
    include_guidance: StrictBool
    include_profile: StrictBool


class StepShape(_Strict):
    """A step's input and output field names."""

    inputs: list[StepName]
    outputs: list[StepName]


class FieldText(_Strict):
    """A signature field's prompt words, as DSPy saves them."""

    prefix: StrictStr
    description: StrictStr


class SignatureState(_Strict):
    """A step's instruction and field words: what its prompt says."""

    instructions: StrictStr
    fields: list[FieldText]


class StepState(_Strict):
    """One step's DSPy state; `lm` is always null (a compiled program never carries a model or its key)."""

    traces: list[JsonValue] = []
    train: list[JsonValue] = []
    demos: list[dict[StrictStr, JsonValue]] = []
    signature: SignatureState
    lm: None = None


class LMIdentity(_Strict):
    """A model as records name it (`lm.factory.LMSpec`): never a key."""

    spec: StrictStr
    model: StrictStr
    sha256: Sha256 | None = None
    api_base: StrictStr | None = None
    context: Annotated[StrictInt, Field(ge=1)] | None = None
    draft_ngram: Annotated[StrictInt, Field(ge=1)] | None = None


class OptimizerRecord(_Strict):
    """Which optimizer made the program, with what settings, and what it found (`info`, never printed)."""

    name: StrictStr
    settings: dict[StrictStr, Scalar] = {}
    info: dict[StrictStr, JsonValue] = {}


class DataRecord(_Strict):
    """The data a program was tuned on, which the held-out check reads."""

    path: StrictStr | None = None
    sha256: Sha256 | None = None
    seed: StrictInt | None = None
    build_stats: dict[StrictStr, Count] = {}
    split_sizes: dict[Literal["train", "dev", "test"], Count] = {}
    used: dict[Literal["train", "dev"], Count] = {}
    limits: dict[Literal["train", "dev"], Count | None] = {}
    train_ids: list[StrictStr] = []
    dev_ids: list[StrictStr] = []


class MetricScores(_Strict):
    """Another metric's mean on the train and dev examples."""

    train: Number | None = None
    dev: Number | None = None


class Scores(BaseModel):
    """The objective's mean on the train and dev examples, which dev users those were (`dev_on`), and the
    task's reported metric beside it when the objective is another one (`{"accuracy": {"train", "dev"}}`)."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, MetricScores]

    objective: StrictStr | None = None
    train: Number | None = None
    dev: Number | None = None
    dev_on: StrictStr | None = None

    @model_validator(mode="after")
    def _metric_names(self) -> Scores:
        for name in self.__pydantic_extra__ or {}:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name):
                raise ValueError(f"{_shown(name)} is not a metric's name")
        return self


class UsageCounts(_Strict):
    """One model's calls, tokens and seconds (`lm.accounting.Usage`)."""

    calls: Count = 0
    cache_hits: Count = 0
    prompt_tokens: Count = 0
    cached_prompt_tokens: Count = 0
    completion_tokens: Count = 0
    store_hits: Count = 0
    model_seconds: Amount = 0
    prompt_seconds: Amount = 0
    generation_seconds: Amount = 0
    truncated: Count = 0
    repetition_stops: Count = 0
    empty_replies: Count = 0


class SessionsRecord(_Strict):
    """What every session of a resumed search paid together (`optimizers._ledger`)."""

    sessions: Annotated[StrictInt, Field(ge=1)]
    seconds: Amount
    model_calls: Count
    prompt_tokens: Count
    completion_tokens: Count


class UsageRecord(_Strict):
    """What the optimization cost (the exporting session's, and `all_sessions`), and what its plan expected."""

    calls: Count | None = None
    model_calls: Count | None = None
    task: UsageCounts | None = None
    prompt: UsageCounts | None = None
    expected_calls: Count | None = None
    expected_parts: dict[StrictStr, Count] = {}
    budget: Count | None = None
    all_sessions: SessionsRecord | None = None


class ConfirmSettingsRecord(_Strict):
    """How the confirm stage ran (`optimizers.confirm.ConfirmSettings`)."""

    fraction: Annotated[int | float, BeforeValidator(_number), Field(ge=0, lt=1)]
    top: Annotated[StrictInt, Field(ge=1)]
    export_unconfirmed: StrictBool = False


class VerdictRecord(_Strict):
    """What the confirm stage concluded (`optimizers.confirm.Verdict.to_dict()`); compare.md prints `line`."""

    objective: StrictStr
    n: Count
    candidates: Count
    diff: Number
    low: Number
    high: Number
    p: Amount
    confirmed: StrictBool
    exported: Literal["candidate", "handwritten"]
    line: StrictStr
    # The level of [low, high]: 1 - 0.05 / candidates (files made before it was recorded: the same rule).
    confidence: Annotated[int | float, BeforeValidator(_number), Field(gt=0, lt=1)] | None = None
    # Users whose two scores differ: the exact paired test's p can be no smaller than 2 / 2^differing.
    differing: Count | None = None
    # The metrics reported beside the objective, [candidate's mean, hand-written's] on the confirm users.
    reported: dict[StrictStr, Annotated[list[Number], Field(min_length=2, max_length=2)]] | None = None


class ConfirmRecord(_Strict):
    """The confirm stage: its settings, users, each program's mean there, the winner and the verdict (null
    without a stage)."""

    settings: ConfirmSettingsRecord
    verdict: VerdictRecord | None = None
    n: Count | None = None  # users (a user's examples are averaged before pairing)
    examples: Count | None = None
    example_ids: list[StrictStr] = []
    means: dict[StrictStr, Number] = {}
    finalists: dict[StrictStr, dict[StepName, StrictStr]] = {}
    winner: StrictStr | None = None
    # Per program, its place in the search's ranking (0: the search's best; null: never searched), absent in
    # files made before it was kept: with the optimizer's `info.ranked_trials` it names a finalist's trial.
    search_ranks: dict[StrictStr, Count | None] = {}
    # Per program, the means of the metrics reported beside the objective (accuracy beside the gold option's
    # probability; absent in files made before it was kept): shown, never used to decide.
    reported: dict[StrictStr, dict[StrictStr, Number]] = {}

    @model_validator(mode="after")
    def _verdict_has_its_means(self) -> ConfirmRecord:
        if self.verdict is not None:  # compare reads the winner's and the hand-written program's means
            for name in ("handwritten", self.winner):
                if name is None or name not in self.means:
                    raise ValueError(f"the verdict's program {name!r} has no mean in `means`")
        unknown = sorted((set(self.reported) | set(self.search_ranks)) - set(self.means))
        if unknown:
            raise ValueError(f"`reported` or `search_ranks` names programs the stage did not score: "
                             f"{', '.join(unknown)}")
        beside = (self.verdict.reported or {}) if self.verdict is not None else {}
        for metric, pair in beside.items():  # compare prints these: they must be the two programs' own
            kept = [self.reported.get(name, {}).get(metric) for name in (self.winner, "handwritten")]
            if kept != list(pair):
                raise ValueError(f"verdict.reported[{metric!r}] is {list(pair)}, but `reported` holds {kept} for "
                                 "the winner and the hand-written program")
        return self


class CandidateRecord(_Strict):
    """One user-written configuration (`optimizers.candidates.Candidate`)."""

    guidance_question: StrictStr
    instructions: dict[StepName, StrictStr] = {}


class UserCandidatesRecord(_Strict):
    """The user's candidates file (its name only) and what it held."""

    file: StrictStr
    candidates: list[CandidateRecord] = []


RETRIEVAL_STEPS = ("all", "digest", "answer")  # `programs.retrieved.STEPS`
WHOLE_HISTORY = ("recent", "none")  # the retrievers that may go without k (`programs.retrieved.WHOLE_HISTORY`)
# Settings a retriever takes that say where this machine keeps things or which model object to use: an export
# never writes them (`programs.retrieved` leaves them out), and a file naming them is refused.
MACHINE_SETTINGS = ("cache_path", "encoder")


class RetrieverRecord(BaseModel):
    """The retriever by its registered name, and its settings beside the name (`{"name": "bm25", "k1": 1.5}`):
    only settings that retriever takes, each a plain scalar."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: StrictStr

    @model_validator(mode="after")
    def _a_registered_retriever_and_its_settings(self) -> RetrieverRecord:
        from guided_profile.retrieval import RETRIEVERS
        from guided_profile.retrieval.base import takes

        if self.name not in RETRIEVERS:
            raise ValueError(f"no retriever is named {_shown(self.name)} (registered: {', '.join(sorted(RETRIEVERS))})")
        accepted = set(takes(RETRIEVERS[self.name])) - set(MACHINE_SETTINGS)
        for key, value in (self.__pydantic_extra__ or {}).items():
            if key not in accepted:
                raise ValueError(f"retriever {self.name!r} has no setting {_shown(key)} a compiled program may carry")
            try:
                _scalar(value)
            except ValueError as exc:
                raise ValueError(f"setting {key}: {exc}") from None
        return self


class RetrievalRecord(_Strict):
    """Which history items the program's steps see (`programs.retrieved.Retrieval.to_dict()`); absent from
    the file for a program that reads the history as before retrieval."""

    retriever: RetrieverRecord
    k: Annotated[StrictInt, Field(ge=1)] | None
    steps: Literal[RETRIEVAL_STEPS]  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _k_where_needed(self) -> RetrievalRecord:
        if self.k is None and self.retriever.name not in WHOLE_HISTORY:
            raise ValueError(f"retriever {self.retriever.name!r} needs k, the number of history items to keep")
        return self


class GitRecord(_Strict):
    """The commit the program was made at."""

    commit: StrictStr | None = None
    dirty: StrictBool | None = None


class CompiledProgram(_Strict):
    """A whole compiled program file; only `format` ... `checksum` without a default are required."""

    format: Literal[FORMAT]  # type: ignore[valid-type]
    format_version: Literal[READABLE_VERSIONS]  # type: ignore[valid-type]
    task: StrictStr
    method: StrictStr
    answer: Answer
    profile_step: Literal[PROFILE_STEPS] = DEFAULT_PROFILE_STEP  # type: ignore[valid-type]  # absent: from before
    switches: Switches | None = None
    program_class: Literal["DirectAnswer", "ProfileThenAnswer", "GuidedProfile"] | None = None
    instructions: dict[StepName, StrictStr] = {}
    shape: dict[StepName, StepShape]
    state: dict[StepName, StepState]
    base_method: StrictStr | None = None
    handwritten_instructions: dict[StepName, StrictStr] = {}
    objective: StrictStr | None = None
    confirm: ConfirmRecord | None = None
    user_candidates: UserCandidatesRecord | None = None
    optimizer: OptimizerRecord | None = None
    lm: LMIdentity | None = None
    prompt_lm: LMIdentity | None = None
    task_options: dict[StrictStr, Scalar] = {}
    data: DataRecord | None = None
    scores: Scores | None = None
    usage: UsageRecord | None = None
    seconds: Amount | None = None
    version: StrictStr | None = None
    created: StrictStr | None = None
    command: StrictStr | None = None
    git: GitRecord | None = None
    retrieval: RetrievalRecord | None = None
    checksum: Sha256


def validate(payload: dict[str, Any], path: Path,
             optimizer_settings: Mapping[str, Collection[str]] | None = None) -> None:
    """Refuse (ConfigError, one line naming `path` and the field) a payload that does not fit the format.

    `optimizer_settings` maps each optimizer's name to the settings it declares; given, a compiled
    program naming another optimizer, or a setting its optimizer does not have, is refused too.
    """
    try:
        CompiledProgram.model_validate(payload)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_problem(exc)}; the file is refused") from None
    optimizer = payload.get("optimizer")
    if optimizer_settings is None or optimizer is None:
        return
    known = optimizer_settings.get(optimizer["name"])
    if known is None:
        raise ConfigError(f"{path}: field optimizer.name: no optimizer is named {_shown(optimizer['name'])}; "
                          "the file is refused")
    for key in optimizer.get("settings", {}):
        if key not in known:
            raise ConfigError(f"{path}: field optimizer.settings.{_shown(key, quote=False)}: optimizer "
                              f"{optimizer['name']!r} has no such setting; the file is refused")


def _first_problem(exc: ValidationError) -> str:
    """The first error pydantic found, as 'field a.b: what is wrong (got ...)'; an unknown field's value is
    never echoed (it may be a forged secret)."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown field {_shown(where, quote=False)}: no compiled program has it"
    if error["type"] == "missing":
        return f"missing {where}, a required field"
    if where.startswith("state.") and where.endswith(".lm"):
        return f"field {where}: the step carries a model configuration; compiled programs never do"
    message = error["msg"].removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    got = error.get("input")
    if isinstance(got, dict | list):
        return f"field {where}: {message}"
    return f"field {where}: {message} (got {type(got).__name__} {_shown(got)})"


def _shown(value: Any, quote: bool = True) -> str:
    """A value fit for one error line: short, with any URL's password masked."""
    text = redact(repr(value) if quote else str(value))
    return text if len(text) <= 60 else text[:57] + "..."


# Optimizer info keys by their version-1 names (the guidance question's pool and texts were "guidance").
_V1_INFO_KEYS = {"guidance_pool": "guidance_question_pool",
                 "dropped_guidance_candidates": "dropped_guidance_question_candidates"}
_V1_TRIAL_LISTS = ("best_trial", "trials", "pareto_front")


def upgrade(payload: dict[str, Any]) -> dict[str, Any]:
    """A valid payload in today's shape (version 2, its answer stating the prompt layout, its profile step
    stated); an older payload's checksum stays the one it was written with, so `checksum` still describes the
    file on disk."""
    answer = answer_config(**payload["answer"])
    stated = {"answer": answer, "profile_step": payload.get("profile_step", DEFAULT_PROFILE_STEP)}
    if payload["format_version"] == FORMAT_VERSION:
        return payload if all(payload.get(k) == v for k, v in stated.items()) else {**payload, **stated}
    upgraded = {**payload, "format_version": FORMAT_VERSION, **stated}
    if payload.get("optimizer"):
        info = {_V1_INFO_KEYS.get(k, k): v for k, v in payload["optimizer"].get("info", {}).items()}
        for key in _V1_TRIAL_LISTS:
            if key in info:
                info[key] = _renamed_trials(info[key])
        upgraded["optimizer"] = {**payload["optimizer"], "info": info}
    return upgraded


def _renamed_trials(value: Any) -> Any:
    """A trial description (or a list of them) with "guidance" (the question's text) named "guidance_question"."""
    if isinstance(value, list):
        return [_renamed_trials(item) for item in value]
    if isinstance(value, dict) and "guidance" in value:
        return {("guidance_question" if k == "guidance" else k): v for k, v in value.items()}
    return value
