"""A digestion or profile step that reuses the profile store while one is in use for an example.

The store reaches the steps through one named context, `using_store(store, user_id)`, rather than
through the program's constructor: the same program object then runs with the store in a run,
without it in an optimizer, and saves and loads as plain DSPy state.  Outside that context a
`StoredStep` is a plain `dspy.Predict`.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dspy

from guided_profile.lm.accounting import usage_of
from guided_profile.programs.conversation import prior_turn
from guided_profile.redaction import redact
from guided_profile.store import ProfileStore
from guided_profile.tasks.base import UNFITTED_MAX_TOKENS


@dataclass
class StoreUse:
    """The profile store as one example's steps use it: which store, whose history, and what it answered.

    Args:
        store: where digestions and profiles are looked up before any LM call and kept after.
        user_id: the person the example is about, kept beside each saved step.
        hits: the kind of each step the store answered (a record counts them as `usage.store_hits`).
    """

    store: ProfileStore
    user_id: str | None = None
    hits: list[str] = field(default_factory=list)


_in_use: contextvars.ContextVar[StoreUse | None] = contextvars.ContextVar("profile_store_in_use", default=None)


@contextmanager
def using_store(store: ProfileStore | None, user_id: str | None = None) -> Iterator[StoreUse | None]:
    """Within the block (in this thread), stored steps use `store` for `user_id`; None means no store."""
    use = StoreUse(store, user_id) if store is not None else None
    token = _in_use.set(use)
    try:
        yield use
    finally:
        _in_use.reset(token)


def store_in_use() -> ProfileStore | None:
    """The profile store the current example's steps use, if any (a retriever keeps its embeddings beside it)."""
    use = _in_use.get()
    return use.store if use is not None else None


class StoredStep(dspy.Predict):
    """`dspy.Predict` for a step whose answer depends only on the history, its instruction and the
    guidance given: the store can answer it again for any later method or run."""

    def __init__(self, signature: type[dspy.Signature], kind: str, **config):
        super().__init__(signature, **config)
        self.kind = kind

    def forward(self, **kwargs) -> dspy.Prediction:
        use = _in_use.get()
        lm = kwargs.get("lm", self.lm) or dspy.settings.lm  # the model DSPy will call, in DSPy's order
        if use is None or lm is None:
            return super().forward(**kwargs)
        (output,) = self.signature.output_fields
        config = {**self.config, **kwargs.get("config", {})}  # as DSPy merges them for the call
        key = (self.kind, kwargs["history"], self._instruction(kwargs.get("demos", self.demos), config),
               kwargs.get("guidance", ""), self._model(lm, config))
        text = use.store.lookup(*key)
        if text is not None:
            use.hits.append(self.kind)  # the runner reports these beside the calls actually made
            return dspy.Prediction(**{output: text})
        seen = len(lm.history)
        start = time.perf_counter()
        prediction = super().forward(**kwargs)
        text = prediction[output]
        # Not kept: an empty reply (an endpoint's passing failure would be pinned for good) and a reply the
        # store would hold redacted (a later hit would return other text than the model wrote).
        if text.strip() and redact(text) == text:
            use.store.save(*key, text, user_id=use.user_id, usage=usage_of(lm.history[seen:]).to_dict(),
                           seconds=round(time.perf_counter() - start, 3))
        return prediction

    def _instruction(self, demos: list, config: dict) -> str:
        """The step's instruction, plus whatever else of this step's prompt changes the output."""
        instruction = self.signature.instructions
        if demos:  # a compiled step with demos answers differently from the same instruction without
            instruction += "\n[demos] " + json.dumps([dict(d) for d in demos], sort_keys=True, default=str)
        cap = config.get("max_tokens", UNFITTED_MAX_TOKENS)
        if cap != UNFITTED_MAX_TOKENS:  # a cut elsewhere is another output (earlier entries were all made at 256)
            instruction += f"\n[max_tokens] {cap}"
        turn = prior_turn()
        if turn is not None:  # a continued step's prompt also holds the prior step's instruction: another output
            instruction += "\n" + turn.describe()
        return instruction

    @staticmethod
    def _model(lm: dspy.BaseLM, config: dict) -> str:
        """The model as the key names it: its DSPy string (in-process: with the weights' hash), the server
        (two OpenAI-compatible servers may serve different weights under one name) and, when not greedy,
        the temperature (every entry so far was made at 0, so greedy keys stay as they were)."""
        model = lm.model + (f"@{redact(lm.kwargs['api_base'])}" if lm.kwargs.get("api_base") else "")
        temperature = config.get("temperature", lm.kwargs.get("temperature", 0.0))
        return model + (f"[temperature {temperature}]" if temperature else "")
