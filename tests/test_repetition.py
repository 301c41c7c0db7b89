"""Stopping runaway generations: the loop detector on strings, the streamed engine path with a stub server,
and the count in accounting."""

import json
import random
import threading

import dspy
import pytest
from dspy.lm15 import Config, Message, Request

from guided_profile.lm.accounting import UsageMeter
from guided_profile.lm.embedded import EmbeddedEngine
from guided_profile.lm.repetition import DEFAULT_LOOP_RULE, LoopRule, first_loop_end, loop_at_tail
from guided_profile.tasks import get_task

RUNAWAY = "Lab & Scientific Products, Tapes, Adhesives & Sealants, " + "Industrial Electrical, " * 40
# A digestion that names one category for 11 purchases in a row and then ends: a list, not a loop.
LISTED = "Raw Materials, " + "Occupational Health & Safety Products, " * 11 + "Cutting Tools"


def test_a_tail_repeating_one_piece_long_enough_is_a_loop():
    assert loop_at_tail(RUNAWAY) == len("Industrial Electrical, ")
    assert loop_at_tail("I am the greatest ever. " * 30) == len("I am the greatest ever. ")


@pytest.mark.parametrize("text", [LISTED, "", "short", "ha" * 100, "The end. " * 3,
                                  "A shopper who buys tools and lab supplies for a small workshop."])
def test_lists_short_repeats_and_prose_are_not_loops(text):
    assert loop_at_tail(text) is None and first_loop_end(text) is None


def test_the_first_stop_point_is_where_the_tail_check_fires_on_a_growing_text():
    rule = LoopRule(min_repeats=3, min_span=12, min_unit=1, max_unit=6)
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice("ab ,") for _ in range(rng.randint(0, 120)))
        slow = next((n for n in range(1, len(text) + 1) if loop_at_tail(text[:n], rule)), None)
        assert first_loop_end(text, rule) == slow
    end = first_loop_end(RUNAWAY)
    # the first point where the tail check fires: it fires there and on no shorter start of the text
    assert end < len(RUNAWAY) and loop_at_tail(RUNAWAY[:end]) and not loop_at_tail(RUNAWAY[:end - 1])


class StubServer:
    """Streams `text` in pieces of `piece` characters like llama.cpp's chat stream, one token a piece."""

    def __init__(self, text: str, piece: int = 5):
        self.pieces = [text[i:i + piece] for i in range(0, len(text), piece)]
        self.sent = 0
        self.bodies = []

    def handle_chat_completions(self, body, callback=None):
        self.bodies.append(body)
        if callback is None:
            return {"choices": [{"message": {"content": "".join(self.pieces)}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": len(self.pieces)}, "timings": {}}
        for n, piece in enumerate(self.pieces, 1):
            self.sent = n
            timings = {"cache_n": 40, "prompt_n": 10, "prompt_ms": 100.0, "predicted_n": n, "predicted_ms": 50.0 * n}
            if callback({"choices": [{"delta": {"content": piece}, "finish_reason": None}], "timings": timings}):
                return None
        callback({"choices": [{"delta": {}, "finish_reason": "stop"}], "timings": timings,
                  "usage": {"prompt_tokens": 50, "completion_tokens": n,
                            "prompt_tokens_details": {"cached_tokens": 40}}})
        return None


def stub_engine(text: str, rule=DEFAULT_LOOP_RULE) -> EmbeddedEngine:
    engine = EmbeddedEngine.__new__(EmbeddedEngine)
    engine.model_name, engine.cache_prompt, engine.loop_rule = "stub", True, rule
    engine._server, engine._lock = StubServer(text), threading.Lock()
    return engine


def request(max_tokens=152, logprobs=None) -> Request:
    return Request(model="m", messages=(Message.user("digest"),), config=Config(max_tokens=max_tokens, temperature=0.0,
                                                                                logprobs=logprobs))


def test_the_stream_stops_at_a_loop_keeping_the_start_of_the_reply():
    engine = stub_engine(RUNAWAY)
    response = engine.complete(request())
    kept = response.text
    assert RUNAWAY.startswith(kept) and first_loop_end(RUNAWAY) <= len(kept) < len(RUNAWAY)
    assert engine._server.sent < len(engine._server.pieces)  # the server was told to stop: no more pieces made
    assert response.finish_reason == "stop" and response.provider_data["repetition_stop"] is True
    assert response.usage.output_tokens == engine._server.sent and response.usage.cache_read_tokens == 40
    assert response.usage.input_tokens == 50 and response.provider_data["timings"]["predicted_ms"] > 0
    assert engine._server.bodies[0]["stream"] is True and engine._server.bodies[0]["timings_per_token"] is True


def test_a_normal_reply_streams_to_its_end_unchanged():
    engine = stub_engine(LISTED)
    response = engine.complete(request())
    assert response.text == LISTED and response.provider_data["repetition_stop"] is False
    assert response.usage.output_tokens == len(engine._server.pieces) and response.finish_reason == "stop"


def test_scoring_and_a_switched_off_rule_are_not_streamed():
    engine = stub_engine(RUNAWAY)
    engine.complete(request(max_tokens=1, logprobs=5))
    engine.loop_rule = None
    assert engine.complete(request()).text == RUNAWAY
    assert all("stream" not in body for body in engine._server.bodies)


def test_an_error_inside_the_stream_is_raised_not_swallowed():
    engine = stub_engine(RUNAWAY)
    engine._server.handle_chat_completions = lambda body, callback=None: callback({"error": {"message": "full"}})
    with pytest.raises(RuntimeError, match="refused"):
        engine.complete(request())


def test_records_count_repetition_stops_beside_truncations():
    lm = dspy.LM("embedded/stub", engine=stub_engine(RUNAWAY), temperature=0.0, max_tokens=152, cache=False)
    with UsageMeter(lm) as meter:
        lm("digest this history")
    assert meter.usage.repetition_stops == 1 and meter.usage.truncated == 0
    assert meter.steps[0]["repetition_stops"] == 1


def test_fitted_caps_and_the_loop_stop_are_one_opt_in_task_option_and_runs_record_them(tmp_path):
    from guided_profile.cli import main

    for name in ("preference", "paraphrase", "dialogue"):
        caps = get_task(name, stop_runaways=True).step_max_tokens()
        assert set(caps) == {"digest", "profile", "answer"} and all(8 <= v <= 256 for v in caps.values())
    assert get_task("preference").step_max_tokens()["digest"] == 256  # off by default: the runs so far
    assert get_task("preference", stop_runaways=True).step_max_tokens()["profile"] == 232  # token-caps.md
    for options, rule in (([], None), (["--task-option", "stop_runaways=true"], DEFAULT_LOOP_RULE.to_dict())):
        out = tmp_path / f"run{len(options)}"
        assert main(["run", "--task", "preference", "--data", "sample", "--limit", "1", "--lm", "fake", "--methods",
                     "gpg", "--out", str(out), "--no-progress", *options]) == 0
        config = json.loads((out / "config.json").read_text())
        assert config["step_max_tokens"] == get_task("preference", stop_runaways=bool(options)).step_max_tokens()
        assert config["loop_rule"] == rule
