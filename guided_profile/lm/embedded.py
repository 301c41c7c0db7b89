"""A DSPy engine that serves a GGUF model in process through xllamacpp (llama.cpp's server).

DSPy 3.4 plugs custom backends in as engines: `complete(Request) -> Response`, passed to
`dspy.LM(..., engine=...)`.  DSPy keeps owning the cache, retries and history; this class only
translates one request into llama.cpp's OpenAI-compatible chat call and back, keeping the
numbers we account for (prompt, cached-prompt and generated tokens, log-probabilities).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from dspy.lm15 import Message, Response, TextPart, Usage

from guided_profile._dspy_internals import TokenLogprob, TopLogprob

DEFAULT_CONTEXT = 8192


def default_threads() -> int:
    """All cores for llama.cpp: DSPy's own threads only wait on it, so they add no CPU load."""
    return max(1, os.cpu_count() or 1)


class EmbeddedEngine:
    """llama.cpp in this process; nothing leaves the machine."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = DEFAULT_CONTEXT, n_parallel: int = 1,
                 threads: int | None = None, model_name: str | None = None, cache_prompt: bool = True):
        import xllamacpp

        self.model_path = str(model_path)
        self.model_name = model_name or Path(model_path).stem
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.threads = threads or default_threads()
        self.cache_prompt = cache_prompt
        params = xllamacpp.CommonParams()
        params.model.path = self.model_path
        params.n_ctx = n_ctx * n_parallel  # llama.cpp divides the context among the slots
        params.n_parallel = n_parallel
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.cache_prompt = cache_prompt  # reuse the KV entries of a shared prompt prefix
        params.warmup = False
        params.verbosity = -1
        self._server = xllamacpp.Server(params)
        self._lock = threading.Lock() if n_parallel == 1 else None

    # -- DSPy engine protocol -------------------------------------------------------------------
    def complete(self, request) -> Response:
        return self.to_response(self.raw(self.with_prompt_cache(self.chat_body(request))))

    def raw(self, body: dict[str, Any]) -> dict[str, Any]:
        """One OpenAI-style chat request as llama.cpp answers it (with its `timings`)."""
        if self._lock is None:
            return self._server.handle_chat_completions(body)
        with self._lock:
            return self._server.handle_chat_completions(body)

    def stream(self, request):
        raise NotImplementedError("the embedded engine does not stream")

    def close(self) -> None:
        self._server = None

    # -- translation ----------------------------------------------------------------------------
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
                                       if k in raw.get("timings", {})}},
        )
