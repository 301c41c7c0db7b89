"""A DSPy engine that serves a GGUF model in process through xllamacpp (llama.cpp's server).

DSPy 3.4 plugs custom backends in as engines: `complete(Request) -> Response`, passed to
`dspy.LM(..., engine=...)`.  DSPy keeps owning the cache, retries and history; this class only
translates one request into llama.cpp's OpenAI-compatible chat call and back, keeping the
numbers we account for (prompt, cached-prompt and generated tokens, log-probabilities).

Replies that generate text are streamed so a loop can be cut where it is made: after every piece
the tail is checked (`lm.repetition`), and a loop ends the request, which frees the slot at once.
Decoding is the same either way, so the text kept is exactly the start of what the model would
have written; the stop is marked `repetition_stop` (counted as `usage.repetition_stops`).

`draft_ngram` (off by default, until measured) turns on llama.cpp's self-speculative decoding
`ngram-simple`: when the last N tokens occurred earlier in the prompt or the reply, the tokens that
followed them there are drafted and the model checks the whole draft in one batch.  A profile that
quotes the history's item names then costs fewer sequential decoding steps; greedy replies stay the
model's own (a draft token is kept only where the model would have chosen it), up to the small
numeric differences any batching brings.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dspy.lm15 import Message, Response, TextPart, Usage

from guided_profile._dspy_internals import TokenLogprob, TopLogprob
from guided_profile.lm.repetition import LoopRule, loop_at_tail

DEFAULT_CONTEXT = 8192
DRAFT_TOKENS = 16  # most tokens drafted at once with draft_ngram (llama.cpp's documented --draft-max default)


def default_threads() -> int:
    """All cores for llama.cpp: DSPy's own threads only wait on it, so they add no CPU load."""
    return max(1, os.cpu_count() or 1)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while llama.cpp loads the model, and deliver them once it has.  A signal that
    lands inside the loading left the process waiting forever (seen: SIGTERM 2-3 s after start); held, it
    stops the run right after the load, as anywhere else.  The server's threads, started in the load, inherit
    the held mask, so these signals always reach the main thread, where Python handles them."""
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class EmbeddedEngine:
    """llama.cpp in this process; nothing leaves the machine."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = DEFAULT_CONTEXT, n_parallel: int = 1,
                 threads: int | None = None, model_name: str | None = None, cache_prompt: bool = True,
                 loop_rule: LoopRule | None = None, draft_ngram: int | None = None):
        import xllamacpp

        self.model_path = str(model_path)
        self.model_name = model_name or Path(model_path).stem
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.threads = threads or default_threads()
        self.cache_prompt = cache_prompt
        self.loop_rule = loop_rule  # None: no streaming, replies run to their end or cap
        params = xllamacpp.CommonParams()
        params.model.path = self.model_path
        params.n_ctx = n_ctx * n_parallel  # llama.cpp divides the context among the slots
        params.n_parallel = n_parallel
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.cache_prompt = cache_prompt  # reuse the KV entries of a shared prompt prefix
        params.warmup = False
        params.verbosity = -1
        if draft_ngram is not None:
            draft_from_ngrams(params, draft_ngram)
        with signals_held():
            self._server = xllamacpp.Server(params)
        self._lock = threading.Lock() if n_parallel == 1 else None

    def complete(self, request) -> Response:
        body = self.with_prompt_cache(self.chat_body(request))
        if self.loop_rule is None or body.get("logprobs") or body["max_tokens"] <= 1:
            return self.to_response(self.raw(body))  # scoring reads one token: nothing can loop
        return self.to_response(self.raw_streamed(body))

    def raw(self, body: dict[str, Any]) -> dict[str, Any]:
        """One OpenAI-style chat request as llama.cpp answers it (with its `timings`)."""
        return self._call(body)

    def raw_streamed(self, body: dict[str, Any]) -> dict[str, Any]:
        """`raw`'s answer, streamed and cut at a loop; shaped like a non-streamed reply."""
        stream = LoopWatch(self.loop_rule)
        self._call({**body, "stream": True, "stream_options": {"include_usage": True}, "timings_per_token": True},
                   stream)
        return stream.reply()

    def _call(self, body: dict[str, Any], callback=None) -> dict[str, Any] | None:
        if self._lock is None:
            return self._server.handle_chat_completions(body, callback)
        with self._lock:
            return self._server.handle_chat_completions(body, callback)

    def stream(self, request):
        raise NotImplementedError("the embedded engine does not stream to DSPy (it streams to itself: raw_streamed)")

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the model's own tokenizer, without model time: llama.cpp's `/tokenize`
        route on the address the in-process server listens on (xllamacpp wraps no tokenize call)."""
        import json
        import urllib.request

        address = self._server.listening_address
        url = (address if "://" in address else f"http://{address}").rstrip("/") + "/tokenize"
        request = urllib.request.Request(url, data=json.dumps({"content": text, "add_special": False}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:  # a loopback address, never remote
            return len(json.loads(reply.read())["tokens"])

    def close(self) -> None:
        self._server = None

    @staticmethod
    def chat_body(request) -> dict[str, Any]:
        messages = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        config = request.config
        body: dict[str, Any] = {
            "messages": messages,
            "temperature": 0.0 if config.temperature is None else config.temperature,
            "max_tokens": config.max_tokens or 512,
        }
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        if config.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = config.logprobs
        if config.response_format is not None:
            body["response_format"] = config.response_format
        return body

    def with_prompt_cache(self, body: dict[str, Any]) -> dict[str, Any]:
        return body if self.cache_prompt else {**body, "cache_prompt": False}

    def to_response(self, raw: dict[str, Any]) -> Response:
        if "error" in raw:
            raise RuntimeError(f"llama.cpp refused the request: {raw['error']}")
        choice = raw["choices"][0]
        usage = raw.get("usage", {})
        logprobs = None
        if choice.get("logprobs") and choice["logprobs"].get("content") is not None:
            logprobs = tuple(
                TokenLogprob(
                    token=t["token"], logprob=float(t["logprob"]),
                    top=tuple(TopLogprob(token=a["token"], logprob=float(a["logprob"]))
                              for a in t.get("top_logprobs", [])),
                )
                for t in choice["logprobs"]["content"]
            )
        finish = "stop" if choice.get("finish_reason") == "stop" else "length"
        return Response(
            id=raw.get("id"),
            model=self.model_name,
            message=Message.assistant((TextPart(choice["message"].get("content") or ""),)),
            finish_reason=finish,
            usage=Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                cache_read_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
            ),
            logprobs=logprobs,
            provider_data={"timings": {k: raw["timings"][k] for k in ("prompt_ms", "predicted_ms")
                                       if k in raw.get("timings", {})},
                           "repetition_stop": bool(raw.get("repetition_stop"))},
        )


def draft_from_ngrams(params: Any, ngram: int) -> None:
    """Set llama.cpp's `ngram-simple` speculative decoding on `params` (an `xllamacpp.CommonParams`): look the
    last `ngram` tokens up in the prompt and reply so far, and draft up to DRAFT_TOKENS of what followed."""
    import xllamacpp

    if ngram < 1:
        raise ValueError("draft_ngram must be at least 1")
    speculative = params.speculative
    speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
    speculative.ngram_simple.size_n = ngram
    speculative.ngram_simple.size_m = DRAFT_TOKENS
    speculative.draft.n_max = DRAFT_TOKENS  # this build's default (3) would cut every draft to 3 tokens


class LoopWatch:
    """The callback of a streamed request: gathers the pieces and stops the stream at a loop.

    llama.cpp calls it with each chunk and ends the request when it returns True; an exception
    raised here would be swallowed by xllamacpp (it just stops), so errors are kept and raised
    by `reply` instead.
    """

    def __init__(self, rule: LoopRule):
        self.rule = rule
        self.text = ""
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] = {}
        self.loop_unit: int | None = None
        self.error: Any = None

    def __call__(self, chunk: dict[str, Any]) -> bool:
        try:
            return self.take(chunk)
        except Exception as exc:  # re-raised by reply()
            self.error = exc
            return True

    def take(self, chunk: dict[str, Any]) -> bool:
        """Keep one chunk; True to stop the stream (an error, or the text now ends in a loop)."""
        if "error" in chunk or ("code" in chunk and "choices" not in chunk):
            self.error = chunk.get("error", chunk)
            return True
        self.timings = chunk.get("timings") or self.timings
        self.usage = chunk.get("usage") or self.usage
        for choice in chunk.get("choices") or []:
            self.text += (choice.get("delta") or {}).get("content") or ""
            self.finish = choice.get("finish_reason") or self.finish
        if self.finish is None:
            self.loop_unit = loop_at_tail(self.text, self.rule)
        return self.loop_unit is not None

    def reply(self) -> dict[str, Any]:
        """The streamed answer in the shape of a non-streamed one (`to_response` reads both)."""
        if self.error is not None:
            if isinstance(self.error, Exception):
                raise self.error
            return {"error": self.error}
        stopped = self.loop_unit is not None
        return {"choices": [{"message": {"content": self.text}, "finish_reason": "stop" if stopped else self.finish}],
                "usage": self.usage if self.usage and not stopped else usage_from_timings(self.timings),
                "timings": self.timings, "repetition_stop": stopped}


def usage_from_timings(timings: dict[str, Any]) -> dict[str, Any]:
    """Token counts of a request cut short, from llama.cpp's per-token timings (no final usage then).

    cache_n is the prompt reused, prompt_n the prompt computed, predicted_n the tokens generated so
    far (the one or two generated while the stop reached the server are not counted).
    """
    cached = timings.get("cache_n", 0)
    return {"prompt_tokens": timings.get("prompt_n", 0) + cached, "completion_tokens": timings.get("predicted_n", 0),
            "prompt_tokens_details": {"cached_tokens": cached}}
