"""A digestion or profile step that reuses the profile store when one is set in DSPy's context.

Outside `dspy.context(profile_store=...)` it is a plain `dspy.Predict`, so optimizers, save and
load see nothing different.
"""

from __future__ import annotations

import json
import time

import dspy

from guided_profile.lm.accounting import usage_of
from guided_profile.redaction import redact


class StoredStep(dspy.Predict):
    def __init__(self, signature: type[dspy.Signature], kind: str, **config):
        super().__init__(signature, **config)
        self.kind = kind

    def forward(self, **kwargs) -> dspy.Prediction:
        store = dspy.settings.get("profile_store")
        lm = kwargs.get("lm") or dspy.settings.lm
        if store is None or lm is None:
            return super().forward(**kwargs)
        (output,) = self.signature.output_fields
        instruction = self.signature.instructions
        if self.demos:  # a compiled step with demos answers differently from the same instruction without
            instruction += "\n[demos] " + json.dumps([dict(d) for d in self.demos], sort_keys=True, default=str)
        # Two OpenAI-compatible servers may serve different weights under one model name: keep them apart.
        model = lm.model + (f"@{redact(lm.kwargs['api_base'])}" if lm.kwargs.get("api_base") else "")
        key = (self.kind, kwargs["history"], instruction, kwargs.get("guidance", ""), model)
        text = store.lookup(*key)
        if text is not None:
            hits = dspy.settings.get("profile_hits")
            if hits is not None:
                hits.append(self.kind)  # the runner reports these beside the calls actually made
            return dspy.Prediction(**{output: text})
        seen = len(lm.history)
        start = time.perf_counter()
        prediction = super().forward(**kwargs)
        store.save(*key, prediction[output], user_id=dspy.settings.get("profile_user"),
                   usage=usage_of(lm.history[seen:]).to_dict(), seconds=round(time.perf_counter() - start, 3))
        return prediction
