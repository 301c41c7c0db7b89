"""DSPy's optimizers log every candidate at INFO; our progress line says what matters."""

from __future__ import annotations

import logging


def quiet_dspy_logs() -> None:
    """Leave DSPy's optimizer logs to warnings, and its predictors' to errors."""
    for name in ("dspy.teleprompt", "dspy.evaluate", "dspy.propose", "gepa"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Proposers pass optional fields their signature may not have; DSPy warns about each call.
    logging.getLogger("dspy.predict.predict").setLevel(logging.ERROR)
