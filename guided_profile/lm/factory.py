"""One place that knows how each `--lm` value becomes a `dspy.LM`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import dspy

from guided_profile import json_text
from guided_profile.errors import ConfigError
from guided_profile.files import write_json
from guided_profile.lm.embedded import DEFAULT_CONTEXT, EmbeddedEngine
from guided_profile.lm.repetition import DEFAULT_LOOP_RULE
from guided_profile.lm.weights import EMBEDDED_MODELS, ensure_model_file, sha256_file
from guided_profile.paths import cache_dir
from guided_profile.redaction import has_user_part, redact

GGUF_MAGIC = b"GGUF"
API_KEY_ENV = "OPENAI_API_KEY"
# Where LiteLLM sends an openai/ model given no api_base, in the order it reads them (litellm/main.py).
ENDPOINT_ENVS = ("OPENAI_BASE_URL", "OPENAI_API_BASE")


@dataclass(frozen=True)
class LMSpec:
    """What identifies a model in records and caches. Never holds an API key.  `draft_ngram` is the n-gram
    length of self-speculative decoding (`lm.embedded`), None when off."""

    spec: str
    model: str
    sha256: str | None = None
    api_base: str | None = None
    context: int = DEFAULT_CONTEXT
    draft_ngram: int | None = None

    def to_dict(self) -> dict:
        """For records: a password in the server URL is masked; `draft_ngram` only when on, so records made
        before it existed describe the same model as today's without it."""
        fields = asdict(self) | {"api_base": self.api_base and redact(self.api_base)}
        return fields if self.draft_ngram is not None else {k: v for k, v in fields.items() if k != "draft_ngram"}


def _cached_sha256(path: Path) -> str:
    """sha256 of a user-supplied GGUF, remembered per (path, size, mtime): hashing 1 GB takes seconds."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_file = cache_dir() / "gguf-hashes.json"
    try:
        index = json_text.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    if key not in index:
        index[key] = sha256_file(path)
        index_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(index_file, index, indent=1)
    return index[key]


def _check_gguf(spec: str, path: Path) -> None:
    """Refuse a file that cannot be a GGUF model before llama.cpp sees it: its own error for an empty or
    foreign file is "Failed to init server", which names neither the file nor the cause."""
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(f"--lm {spec}: the GGUF file {path} {what}")
    with open(path, "rb") as f:
        magic = f.read(len(GGUF_MAGIC))
    if not magic:
        raise ConfigError(f"--lm {spec}: {path} is empty, not a GGUF model")
    if magic != GGUF_MAGIC:
        raise ConfigError(f"--lm {spec}: {path} is not a GGUF model (a GGUF file starts with {GGUF_MAGIC!r}, "
                          f"this one with {magic!r})")


def check_api_base(api_base: str | None, option: str = "--api-base") -> None:
    """Refuse credentials in the server URL at once, saying how to pass them: the OpenAI client sends no
    URL user part (every request would fail), and a key belongs in the environment, not a command line.
    `option` is the flag the URL came from, for the message."""
    if not api_base:
        return
    parts, url = urlsplit(api_base), api_base.strip()  # surrounding blanks, as a paste leaves them, are fine
    # urlsplit drops tabs and newlines and keeps spaces, where redaction's reading of a user part stops: a URL
    # holding any of them is refused whole, so the two readings never disagree.
    if any(ch.isspace() or not ch.isprintable() for ch in url):  # not echoed: redact may miss a part
        raise ConfigError(f"{option}: expected an http(s) URL without spaces or control characters")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{option} {redact(api_base)}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
    if has_user_part(url):  # not urlsplit's reading: it misses a user part holding '?' or '#'
        raise ConfigError(f"{option} {redact(api_base)}: credentials in the URL are not sent by the OpenAI "
                          f"client; remove them and put the key in ${API_KEY_ENV} (sent as a bearer token)")


def _api_key(spec: str, api_base: str | None) -> str | None:
    """$OPENAI_API_KEY for any server given by --api-base (and for openai/ models); a placeholder when it
    is unset, since local OpenAI-compatible servers need none but the client insists on one."""
    key = os.environ.get(API_KEY_ENV)
    if api_base:
        return key or "not-needed"
    return key if spec.startswith("openai/") else None


def resolve_spec(spec: str, api_base: str | None = None, context: int = DEFAULT_CONTEXT) -> tuple[LMSpec, Path | None]:
    """Identity of the model behind `spec`, and the GGUF path when it runs in process."""
    if spec in EMBEDDED_MODELS:
        model = EMBEDDED_MODELS[spec]
        return LMSpec(spec, model.name, model.sha256, context=context), ensure_model_file(spec)
    if spec.startswith("gguf:"):
        path = Path(spec[len("gguf:"):]).expanduser()
        _check_gguf(spec, path)
        return LMSpec(spec, path.stem, _cached_sha256(path), context=context), path
    api_base, option = _endpoint(spec, api_base)
    check_api_base(api_base, option)
    if "/" not in spec:
        choices = ", ".join([*EMBEDDED_MODELS, "fake", "gguf:PATH", "provider/model (e.g. openai/gpt-4o-mini)"])
        raise ConfigError(f"--lm {spec!r} is not a model I know; use one of: {choices}")
    return LMSpec(spec, spec, None, api_base=api_base, context=context), None


def _endpoint(spec: str, api_base: str | None) -> tuple[str | None, str]:
    """The server `spec` is sent to, and where that came from: --api-base, else for an openai/ model the
    variable LiteLLM would read.  Made explicit so records, the profile store and the endpoint check see the
    server a run really used, not a bare model name two servers can share."""
    if api_base or not spec.startswith("openai/"):
        return api_base, "--api-base"
    for name in ENDPOINT_ENVS:
        if os.environ.get(name):
            return os.environ[name], f"${name}"
    return None, "--api-base"


def check_draft_ngram(spec: str, draft_ngram: int | None) -> None:
    """Refuse self-speculative decoding for a model llama.cpp does not run in this process."""
    if draft_ngram is not None and not (spec in EMBEDDED_MODELS or spec.startswith("gguf:")):
        raise ConfigError(f"--draft-ngram {draft_ngram}: self-speculative decoding is llama.cpp's, for in-process "
                          f"models (local, local-0.5b, gguf:PATH), not --lm {spec}")


_answer_cache: str | None = None  # the folder DSPy's answer cache was set up in, by this process


def use_answer_cache() -> None:
    """DSPy's answer cache in our cache folder, read back through DSPy's restricted unpickler: an entry is
    rebuilt only from plain data and the LM client's response types, never from an arbitrary class, so a
    tampered cache file cannot run code (DSPy's default is unrestricted pickle).  Once per process."""
    global _answer_cache
    folder = os.environ.get("DSPY_CACHEDIR") or str(cache_dir() / "dspy")
    if _answer_cache != folder:
        dspy.configure_cache(disk_cache_dir=folder, restrict_pickle=True)
        _answer_cache = folder


def describe_lm(spec: str, *, api_base: str | None = None, context: int = DEFAULT_CONTEXT,
                draft_ngram: int | None = None) -> LMSpec:
    """The identity `make_lm` gives the model behind `spec`, without loading it: a run folder is checked
    against it first, so a finished one is reopened without paying for the weights."""
    return _identity_and_weights(spec, api_base, context, draft_ngram)[0]


def _identity_and_weights(spec: str, api_base: str | None, context: int,
                          draft_ngram: int | None) -> tuple[LMSpec, Path | None]:
    """`spec`'s identity as runs record it, and the GGUF path when it runs in process (None otherwise)."""
    check_draft_ngram(spec, draft_ngram)
    if spec == "fake":
        return LMSpec(spec, "scripted-fake"), None
    identity, gguf = resolve_spec(spec, api_base, context)
    return (replace(identity, draft_ngram=draft_ngram) if gguf is not None else identity), gguf


def make_lm(spec: str, *, api_base: str | None = None, context: int = DEFAULT_CONTEXT, n_parallel: int = 1,
            threads: int | None = None, max_tokens: int = 512, temperature: float = 0.0,
            cache: bool = True, prompt_cache: bool = True, num_retries: int = 3,
            stop_loops: bool = False, draft_ngram: int | None = None) -> tuple[dspy.LM, LMSpec]:
    """A `dspy.LM` for `spec` plus its identity.

    Greedy decoding by default, as in the paper.  For in-process models the DSPy model string
    carries the weights' hash, so DSPy's answer cache never mixes two models' answers.  `cache` is
    DSPy's answer cache; `prompt_cache` is llama.cpp's reuse of a shared prompt prefix (KV entries).
    `num_retries`: a remote call that fails for a transient reason (rate limit, timeout, a dropped
    connection) is retried that many times with exponential backoff (LiteLLM's, through DSPy).
    `stop_loops`: an in-process model stops a reply whose tail repeats one piece (lm/repetition.py).
    `draft_ngram`: an in-process model drafts from the last N tokens' earlier occurrence (lm/embedded.py).
    """
    use_answer_cache()
    identity, gguf = _identity_and_weights(spec, api_base, context, draft_ngram)
    if spec == "fake":
        from guided_profile.lm.fake import FakeEngine

        lm = dspy.LM("fake/scripted", engine=FakeEngine(), temperature=temperature, max_tokens=max_tokens,
                     cache=False)
        return lm, identity
    if gguf is not None:
        engine = EmbeddedEngine(gguf, n_ctx=context, n_parallel=n_parallel, threads=threads,
                                model_name=identity.model, cache_prompt=prompt_cache,
                                loop_rule=DEFAULT_LOOP_RULE if stop_loops else None, draft_ngram=draft_ngram)
        # A repetition stop changes outputs: DSPy's answer cache, the profile store and Optuna studies key on
        # this string, so a run with the stop never reads (or writes) another's replies.
        model_string = f"embedded/{identity.model}@{identity.sha256[:16]}" + ("+loop-stop" if stop_loops else "")
        lm = dspy.LM(model_string, engine=engine, temperature=temperature, max_tokens=max_tokens, cache=cache)
    else:
        server = identity.api_base  # --api-base, or the variable LiteLLM would read (`_endpoint`)
        lm = dspy.LM(spec, api_base=server, api_key=_api_key(spec, server), temperature=temperature,
                     max_tokens=max_tokens, cache=cache, num_retries=num_retries)
    return lm, identity
