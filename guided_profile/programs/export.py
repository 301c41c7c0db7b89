"""A compiled program as one JSON file: DSPy's saved state plus what it was made from.

The file holds `program.dump_state()` (instructions, the guidance question among them, and demos
if any) and metadata: task, method and switches, answer mode, optimizer and settings, model
identity (name and weights hash, never a key), data identity (path, content hash, split sizes,
seed), scores, calls spent, package version.  A checksum over the whole content lets loading tell
a file edited after export from the one that was scored.  Loading first checks every field against
the format (`compiled_schema`: the file is untrusted input, whatever its checksum says), then
rebuilds the program from the task and method, checks its shape against the file and only then
loads the state: no pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import dspy

from guided_profile import json_text
from guided_profile.errors import ConfigError
from guided_profile.files import write_text
from guided_profile.programs.answer import answer_config_of
from guided_profile.programs.compiled_schema import FORMAT, FORMAT_VERSION, READABLE_VERSIONS, upgrade, validate
from guided_profile.programs.methods import build_program, parts_of, profile_step_of
from guided_profile.programs.modules import DirectAnswer, GuidedProfile, ProfileThenAnswer
from guided_profile.programs.retrieved import Retrieval, compiled_retrieval_field
from guided_profile.provenance import data_sha256  # noqa: F401  (moved; imported from here by older code)
from guided_profile.redaction import redact_json
from guided_profile.tasks.base import Task

OptimizerSettings = Mapping[str, Collection[str]]  # each optimizer's name -> the settings it declares


def method_of(program: dspy.Module, task: Task) -> str:
    """The method name that rebuilds this program's skeleton (its switches included)."""
    if isinstance(program, GuidedProfile):
        if program.switches == task.gpg_switches:
            return "gpg"
        return "gpg:" + parts_of(program.switches)
    if isinstance(program, ProfileThenAnswer):
        return "pg"
    if isinstance(program, DirectAnswer):
        return "dg-pc" if program.with_context else "dg-no-pc"
    raise ConfigError(f"cannot export a {type(program).__name__}: not one of the project's methods")


def shape(program: dspy.Module) -> dict[str, dict[str, list[str]]]:
    """Each step's input and output field names: what a saved state must fit."""
    return {name: {"inputs": list(p.signature.input_fields), "outputs": list(p.signature.output_fields)}
            for name, p in program.named_predictors()}


def instructions(program: dspy.Module) -> dict[str, str]:
    return {name: p.signature.instructions for name, p in program.named_predictors()}


def _checksum(payload: dict[str, Any]) -> str:
    body = {k: v for k, v in payload.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def save_compiled(path: Path, program: dspy.Module, task: Task, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write `program` and `metadata` as one JSON file (atomically); returns what was written.

    A step's own model (DSPy saves it with the step) is left out: the model is chosen when the
    program runs, and a saved model configuration could carry a key or a password.
    """
    state = {name: {**step, "lm": None} if isinstance(step, dict) and "lm" in step else step
             for name, step in program.dump_state().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata, "task": task.name,
               "method": method_of(program, task), "answer": answer_config_of(program),
               "profile_step": profile_step_of(program),
               "switches": getattr(program, "switches", None), "program_class": type(program).__name__,
               "instructions": instructions(program), "shape": shape(program), "state": state,
               **compiled_retrieval_field(program)}
    # Plain JSON types only, as loading will see them, and no secret (an instruction or a note may quote a URL).
    payload = redact_json(json.loads(json.dumps(payload, default=str)))
    payload["checksum"] = _checksum(payload)
    path = Path(path)
    validate(payload, path)  # a field the format does not know would make the file unreadable: fail now
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")  # whole, synced, renamed into place
    return payload


def read_compiled(path: Path, optimizer_settings: OptimizerSettings | None = None) -> dict[str, Any]:
    """The file's content, checked field by field against the format and to be unedited (any task), in
    today's format version.  `optimizer_settings` (see `compiled_schema.validate`) also checks the
    optimizer's setting names."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the compiled program ({exc.strerror or exc})") from exc
    try:
        payload = json_text.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); the file is broken or was cut short") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a compiled guided-profile program (no \"format\": \"{FORMAT}\")")
    version = payload.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ConfigError(f"{path}: format version {version!r}; this version reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))}")
    validate(payload, path, optimizer_settings)
    if payload["checksum"] != _checksum(payload):
        raise ConfigError(f"{path}: the file was changed after it was exported (checksum mismatch); its scores "
                          "and metadata no longer describe it. Export it again with `guided-profile optimize`")
    return upgrade(payload)


def load_compiled(path: Path, task: Task,
                  optimizer_settings: OptimizerSettings | None = None) -> tuple[dspy.Module, dict[str, Any]]:
    """The program saved in `path`, rebuilt for `task`, and the file's metadata.

    Refuses (ConfigError) a file that is not a compiled program, was edited after export, was
    made for another task, or whose saved steps do not fit the program its method builds.
    """
    path = Path(path)
    payload = read_compiled(path, optimizer_settings)
    if payload["task"] != task.name:
        raise ConfigError(f"{path}: compiled for task {payload['task']!r}, not {task.name!r}")
    try:
        retrieval = Retrieval.from_dict(payload.get("retrieval"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: field retrieval: {exc}; the file is refused") from None
    program = build_program(payload["method"], task, **payload["answer"], profile_step=payload["profile_step"],
                            retrieval=retrieval)
    expected = shape(program)
    if payload["shape"] != expected:
        raise ConfigError(f"{path}: its steps {_describe(payload['shape'])} do not fit the {payload['method']} "
                          f"program of task {task.name!r}, whose steps are {_describe(expected)}")
    state = payload["state"]
    if set(state) != set(expected):
        raise ConfigError(f"{path}: saved state has steps {sorted(state)}, expected {sorted(expected)}")
    for name, step in state.items():
        fields = len(expected[name]["inputs"]) + len(expected[name]["outputs"])
        if len(step["signature"]["fields"]) != fields:
            raise ConfigError(f"{path}: field state.{name}.signature.fields: {len(step['signature']['fields'])} "
                              f"fields saved, the step has {fields}; the file is refused")
    try:
        program.load_state(state)
    except Exception as exc:
        raise ConfigError(f"{path}: saved state does not load ({type(exc).__name__}: {exc})") from exc
    if getattr(program, "switches", None) != payload.get("switches"):
        raise ConfigError(f"{path}: switches {payload.get('switches')} do not match method {payload['method']!r}")
    return program, payload


def _describe(steps: Any) -> str:
    if not isinstance(steps, dict):
        return repr(steps)
    return "; ".join(f"{name}({', '.join(s.get('inputs', []))} -> {', '.join(s.get('outputs', []))})"
                     for name, s in steps.items() if isinstance(s, dict))


def load_program_files(paths: list[Path], task: Task, taken: set[str] = frozenset(),
                       optimizer_settings: OptimizerSettings | None = None) -> tuple[
        dict[str, dspy.Module], dict[str, dict[str, Any]]]:
    """Compiled programs by table name (the file stem), and each file's metadata.

    Two files with the same stem, or a stem that is also a method name in `taken`, would share
    rows in a run folder: refused.
    """
    programs: dict[str, dspy.Module] = {}
    payloads: dict[str, dict[str, Any]] = {}
    for path in paths:
        name = Path(path).stem
        if name in programs or name in taken:
            raise ConfigError(f"{path}: another program is already named {name!r} (tables use the file stem); "
                              "rename one of the files")
        programs[name], payloads[name] = load_compiled(Path(path), task, optimizer_settings)
    return programs, payloads
