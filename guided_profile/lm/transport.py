"""Telling a server that cannot be reached from a call that failed on its own.

A closed port, a timeout or an unknown host fails every call alike, each after DSPy's retries, so a run
or an optimization stops and says so once instead of recording every example as failed.
"""

from __future__ import annotations

import socket

import dspy

from guided_profile.errors import EndpointDown
from guided_profile.lm.factory import LMSpec
from guided_profile.redaction import redact

TRANSPORT = {"LMTransportError", "LMTimeoutError", "APIConnectionError", "APITimeoutError", "ConnectError",
             "ConnectTimeout", "ReadTimeout", "TimeoutException"}  # DSPy's, LiteLLM's, openai's, httpx's names


def unreachable(error: BaseException | None) -> bool:
    """Whether `error`, or an error that caused it, says the server was never reached: refused, timed out, no
    such host.  DSPy raises `LMTransportError` (and `LMTimeoutError`); LiteLLM, openai and httpx have their own
    names, matched by name so none of them is imported here."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)) or type(error).__name__ in TRANSPORT:
            return True
        error = error.__cause__ or error.__context__
    return False


def endpoint(lm: dspy.BaseLM) -> str:
    """The server a model is asked through (its URL, or the provider's model name), for messages."""
    return str(getattr(lm, "kwargs", {}).get("api_base") or getattr(lm, "model", "the model"))


def endpoint_down(lm: dspy.BaseLM, cause: str, what: str) -> EndpointDown:
    """The one line: which server, why, and how to go on."""
    cause = cause.replace("\n", " ")
    return EndpointDown(redact(f"cannot reach the model at {endpoint(lm)}: {what} ({cause}); start or fix the "
                               "server, then rerun the same command to resume"))


def check_reachable(lm: dspy.LM, identity: LMSpec) -> None:
    """One one-token request to a server model before a long job, uncached: an optimizer that started on a
    server that is down would spend its whole budget on failing calls.  In-process models are not asked."""
    if identity.sha256 is not None or identity.spec == "fake":
        return
    try:
        lm.copy(cache=False, max_tokens=1)("Reply with OK.")
    except Exception as exc:  # any other failure (a refused key, an unknown model) is the job's to report
        if unreachable(exc):
            raise endpoint_down(lm, f"{type(exc).__name__}: {exc}", "a first request failed to connect") from exc
