"""The confirm stage: a search's best candidates and the hand-written program meet again on dev users
the search never saw, and a candidate is exported only if it beats the hand-written program there.

Why: a search that scores several candidates on the same few users and keeps the best reports that
user sample's luck as a gain (the committed 20-user runs won on dev and lost on test).  Users held out
of the search give an estimate the search could not fit; the winner's p-value is multiplied by the
number of candidates confirmed (Bonferroni), since picking the best of k on the confirm users is
itself a choice made on them.  The correction widens the interval and raises p; it does not shrink
the winner's mean difference, which leans high when k > 1 (compare.md says "best of k" beside it).
Users, not examples, are the unit: a user's examples are averaged before pairing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.metrics.stats import differing, paired_bootstrap, paired_permutation_pvalue, user_means
from guided_profile.programs.answer import answer_config_of
from guided_profile.programs.export import instructions
from guided_profile.programs.retrieved import retrieval_of
from guided_profile.report import p_clause, signed

ALPHA = 0.05
DEFAULT_FRACTION = 0.3  # of the dev users: of optimize's default 160 (real preference data), 44 confirm, 116 search
DEFAULT_TOP = 3
# Objectives on a 0-1 scale read better as points (x100); text metrics keep their own scale.
POINT_OBJECTIVES = frozenset({"accuracy", "gold_probability", "gold_margin"})


@dataclass(frozen=True)
class ConfirmSettings:
    """How the confirm stage runs (recorded in the export).

    Args:
        fraction: share of the dev users held out of the search for the confirm stage (0: no stage,
            the search's best is exported as before, with no verdict).
        top: how many of the search's best distinct configurations meet the hand-written program there.
        export_unconfirmed: export the best candidate even when it is not confirmed (flagged so).
    """

    fraction: float = DEFAULT_FRACTION
    top: int = DEFAULT_TOP
    export_unconfirmed: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.fraction < 1:
            raise ConfigError(f"confirm fraction must be in [0, 1), got {self.fraction}")
        if self.top < 1:
            raise ConfigError(f"confirm top must be at least 1, got {self.top}")


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

    `n` counts confirm users (a user's examples are averaged first); `diff`, `low`, `high` are the
    candidate's mean paired difference to the hand-written program on them with its bootstrap interval at
    `confidence` (95% for one finalist, 1 - 0.05 / k for the best of k: Bonferroni); `p` is the paired
    permutation p-value, already multiplied by `candidates`, and decides; `differing` counts the users whose
    two scores differ (None in exports made before it was kept); `exported` is "candidate" or "handwritten".
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
    confidence: float = 1 - ALPHA
    differing: int | None = None
    reported: dict[str, tuple[float, float]] | None = None  # metric -> (candidate's mean, hand-written's)

    def line(self) -> str:
        """One line in plain words, e.g. "confirmed: +4.1 points [+1.0, +7.2], p = 0.010 on 60 confirm users"."""
        if self.candidates == 0:
            return (f"not confirmed: the search found no configuration other than the hand-written one "
                    f"({self.n} confirm users); the hand-written program is exported")
        scale, unit = (100, " points") if self.objective in POINT_OBJECTIVES else (1, "")
        digits = 1 if scale == 100 else 3
        diff, low, high = (signed(scale * x, digits) for x in (self.diff, self.low, self.high))
        numbers = f"{diff}{unit} [{low}, {high}] {self.objective}, {p_clause(self.p)} on {self.n} confirm users"
        if self.candidates > 1:
            numbers += (f" ({100 * self.confidence:.1f}% interval and p adjusted for the best of {self.candidates} "
                        "finalists, Bonferroni)")
        if not self.confirmed and self.low > 0 and self.differing is not None:
            # A bootstrap interval is too narrow when few pairs differ; the exact test is the one that decides.
            numbers += (f"; the bootstrap interval excludes 0, the exact paired test does not ({self.differing} of "
                        f"{self.n} users scored differently)")
        for metric, (candidate, handwritten) in (self.reported or {}).items():  # shown beside, never deciding
            numbers += (f"; {metric} there {candidate:.1%} against {handwritten:.1%}" if metric in POINT_OBJECTIVES
                        else f"; {metric} there {candidate:.3f} against {handwritten:.3f}")
        if self.confirmed:
            return f"confirmed: {numbers}; the optimized program is exported"
        if self.exported == "candidate":
            return f"not confirmed: {numbers}; the best candidate is exported anyway, flagged as unconfirmed"
        return f"not confirmed: {numbers}; the hand-written program is exported"

    def to_dict(self) -> dict:
        return asdict(self) | {"line": self.line()}


def judge(candidate: Sequence[float], handwritten: Sequence[float], *, objective: str, candidates: int = 1,
          export_unconfirmed: bool = False, alpha: float = ALPHA) -> Verdict:
    """Compare the chosen candidate's per-user scores with the hand-written program's, paired by user.

    Confirmed when the candidate is better on average and its Bonferroni-adjusted p-value is below
    `alpha`.  The hand-written program is exported otherwise, unless `export_unconfirmed` asks for the
    candidate anyway (the verdict still says it was not confirmed).  The interval is adjusted the same
    way (confidence 1 - alpha / candidates), since the candidate is the best of that many on these users.
    """
    if len(candidate) != len(handwritten) or not candidate:
        raise ValueError("the confirm stage needs the same, non-empty set of examples for both programs")
    confidence = 1 - alpha / max(1, candidates)
    diff, low, high = paired_bootstrap(list(candidate), list(handwritten), confidence=confidence)
    p = min(1.0, paired_permutation_pvalue(list(candidate), list(handwritten)) * max(1, candidates))
    confirmed = diff > 0 and p < alpha
    exported = "candidate" if confirmed or export_unconfirmed else "handwritten"
    return Verdict(objective, len(candidate), max(1, candidates), diff, low, high, p, confirmed, exported, confidence,
                   differing(candidate, handwritten))


def nothing_to_confirm(objective: str, n: int) -> Verdict:
    """The verdict when every finalist is the hand-written program itself."""
    return Verdict(objective, n, 0, 0.0, 0.0, 0.0, 1.0, False, "handwritten")


def reported_mean(examples: Sequence[Example], metrics: Sequence[dict[str, Any] | None], name: str) -> float | None:
    """The mean of metric `name` on the confirm `examples` (`metrics[i]` is example i's), on the objective's
    footing: each user's examples averaged first.  None when an example lacks it (kept before metrics were)."""
    values = [(m or {}).get(name) for m in metrics]
    if not values or any(v is None for v in values):
        return None
    means = user_means([float(v) for v in values], [ex.user_id for ex in examples])
    return math.fsum(means) / len(means)


def pick_on_confirm(scores: dict[str, Sequence[float]]) -> str:
    """The candidate with the best mean on the confirm users (ties: the first given, i.e. the search's best)."""
    if not scores:
        raise ValueError("no candidate to confirm")
    return max(scores, key=lambda name: (math.fsum(scores[name]) / len(scores[name]), -list(scores).index(name)))


def configuration(program: dspy.Module) -> str:
    """What makes two programs the same configuration: every step's instruction, the switches, the answer,
    the history retrieval."""
    retrieval = retrieval_of(program)
    return json.dumps([instructions(program), getattr(program, "switches", None), answer_config_of(program),
                       retrieval.to_dict() if retrieval is not None else None], sort_keys=True)


def search_ranks(programs: dict[str, dspy.Module], searched: Sequence[dspy.Module]) -> dict[str, int | None]:
    """Each confirmed program's place in the search's ranking (0: the search's best; None: the search never
    scored its configuration), so a report can name the trial a finalist came from: several trials can share
    a guidance question, and the finalists' instructions alone cannot tell them apart."""
    first: dict[str, int] = {}
    for i, program in enumerate(searched):
        first.setdefault(configuration(program), i)
    return {name: first.get(configuration(program)) for name, program in programs.items()}


def confirm_stage(handwritten: dspy.Module, searched: Sequence[dspy.Module], examples: Sequence[Example], *,
                  score: Callable[[dspy.Module, Sequence[Example]], list[float]], objective: str,
                  settings: ConfirmSettings, written: Sequence[dspy.Module] = (),
                  progress: Callable[[str], None] | None = None,
                  reported: Callable[[dspy.Module], dict[str, float]] | None = None
                  ) -> tuple[dspy.Module, dict[str, Any]]:
    """Score the hand-written program and the finalists on the confirm `examples` (`score` gives a program's
    per-example objective): the first `settings.top` distinct configurations of `searched` (the search's
    ranking, best first) other than the hand-written one, and every distinct one of `written` (a person's
    candidates).  Return the program to export and what the export records (per-user means, winner, verdict).
    `progress(line)` hears which program is being scored: the stage can take an hour on a CPU.  `reported(program)`,
    called after a program is scored, gives the means of the metrics reported beside the objective (accuracy when
    the objective is the gold option's probability): kept per program as `reported`, never used to decide."""
    reference = configuration(handwritten)  # the hand-written program is the reference, not a candidate
    distinct: dict[str, dspy.Module] = {}
    for program in searched:
        if len(distinct) < settings.top and configuration(program) != reference:
            distinct.setdefault(configuration(program), program)
    for program in written:
        if configuration(program) != reference:
            distinct.setdefault(configuration(program), program)
    named = {f"finalist {i}": program for i, program in enumerate(distinct.values(), 1)}
    users, programs, scores = [ex.user_id for ex in examples], {"handwritten": handwritten, **named}, {}
    for i, (name, program) in enumerate(programs.items(), 1):
        if progress is not None:
            progress(f"confirm stage: {name} ({i} of {len(programs)}) on {len(examples)} examples")
        scores[name] = user_means(score(program, examples), users)
    if named:
        winner = pick_on_confirm({name: scores[name] for name in named})
        verdict = judge(scores[winner], scores["handwritten"], objective=objective, candidates=len(named),
                        export_unconfirmed=settings.export_unconfirmed)
    else:
        winner, verdict = "handwritten", nothing_to_confirm(objective, len(scores["handwritten"]))
    kept = {name: reported(program) for name, program in programs.items()} if reported is not None else None
    beside = {metric: (value, kept["handwritten"][metric])
              for metric, value in kept[winner].items() if metric in kept["handwritten"]} if kept and named else {}
    if beside:  # the verdict line shows them beside the objective
        verdict = replace(verdict, reported=beside)
    info = {"settings": asdict(settings), "n": len(scores["handwritten"]), "examples": len(examples),
            "example_ids": [ex.example_id for ex in examples],
            "means": {name: math.fsum(values) / len(values) for name, values in scores.items()},
            "finalists": {name: instructions(program) for name, program in named.items()},
            "search_ranks": search_ranks(programs, searched), "winner": winner, "verdict": verdict.to_dict()}
    if kept is not None:
        info["reported"] = kept
    return (named[winner] if verdict.exported == "candidate" else handwritten), info
