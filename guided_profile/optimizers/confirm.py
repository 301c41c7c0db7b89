"""The confirm stage: a search's best candidates and the hand-written program meet again on dev users
the search never saw, and a candidate is exported only if it beats the hand-written program there.

Why: a search that scores several candidates on the same few users and keeps the best reports that
user sample's luck as a gain (the committed 20-user runs won on dev and lost on test).  Users held out
of the search give an estimate the search could not fit; the winner's p-value is multiplied by the
number of candidates confirmed (Bonferroni), since picking the best of k on the confirm users is
itself a choice made on them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.metrics.stats import paired_bootstrap, paired_permutation_pvalue

ALPHA = 0.05
# Objectives on a 0-1 scale read better as points (x100); text metrics keep their own scale.
POINT_OBJECTIVES = frozenset({"accuracy", "gold_probability"})


def split_for_confirm(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(search part, confirm part) of the dev examples, split by a seeded hash of the user id.

    By user and by hash, like the train / dev / test split: a user's part does not depend on the order
    of the file or on which other users are there, and one user never sits in both parts.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"confirm fraction must be in [0, 1), got {fraction}")
    search, confirm = [], []
    for example in examples:
        digest = hashlib.sha256(f"confirm:{seed}:{example.user_id}".encode()).digest()
        (confirm if int.from_bytes(digest[:8], "big") / 2**64 < fraction else search).append(example)
    return search, confirm


@dataclass(frozen=True)
class Verdict:
    """What the confirm stage concluded, as the export records it and `optimize` says it.

    `diff`, `low`, `high` are the candidate's mean paired difference to the hand-written program on the
    confirm users with its 95% bootstrap interval; `p` is the paired permutation p-value, already
    multiplied by `candidates` (Bonferroni); `exported` is "candidate" or "handwritten".
    """

    objective: str
    n: int
    candidates: int
    diff: float
    low: float
    high: float
    p: float
    confirmed: bool
    exported: str

    def line(self) -> str:
        """One line in plain words, e.g. "confirmed: +4.1 points [+1.0, +7.2], p = 0.01 on 60 confirm users"."""
        scale, unit = (100, " points") if self.objective in POINT_OBJECTIVES else (1, "")
        digits = 1 if scale == 100 else 3
        numbers = (f"{scale * self.diff:+.{digits}f}{unit} [{scale * self.low:+.{digits}f}, "
                   f"{scale * self.high:+.{digits}f}] {self.objective}, p = {_p(self.p)} on {self.n} confirm users")
        if self.confirmed:
            return f"confirmed: {numbers}; the optimized program is exported"
        if self.exported == "candidate":
            return f"not confirmed: {numbers}; the best candidate is exported anyway, flagged as unconfirmed"
        return f"not confirmed: {numbers}; the hand-written program is exported"

    def to_dict(self) -> dict:
        return asdict(self) | {"line": self.line()}


def judge(candidate: Sequence[float], handwritten: Sequence[float], *, objective: str, candidates: int = 1,
          export_unconfirmed: bool = False, alpha: float = ALPHA) -> Verdict:
    """Compare the chosen candidate's per-example scores with the hand-written program's, paired by example.

    Confirmed when the candidate is better on average and its Bonferroni-adjusted p-value is below
    `alpha`.  The hand-written program is exported otherwise, unless `export_unconfirmed` asks for the
    candidate anyway (the verdict still says it was not confirmed).
    """
    if len(candidate) != len(handwritten) or not candidate:
        raise ValueError("the confirm stage needs the same, non-empty set of examples for both programs")
    diff, low, high = paired_bootstrap(list(candidate), list(handwritten))
    p = min(1.0, paired_permutation_pvalue(list(candidate), list(handwritten)) * max(1, candidates))
    confirmed = diff > 0 and p < alpha
    exported = "candidate" if confirmed or export_unconfirmed else "handwritten"
    return Verdict(objective, len(candidate), max(1, candidates), diff, low, high, p, confirmed, exported)


def pick_on_confirm(scores: dict[str, Sequence[float]]) -> str:
    """The candidate with the best mean on the confirm users (ties: the first given, i.e. the search's best)."""
    if not scores:
        raise ValueError("no candidate to confirm")
    return max(scores, key=lambda name: (math.fsum(scores[name]) / len(scores[name]), -list(scores).index(name)))


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"
