"""Scoring one configuration on the dev examples as a race: example by example, paired, stoppable.

Each example's score is reported to the Optuna trial under the example's index, so Optuna's
`WilcoxonPruner` can compare the trial with the best one so far on the same users (a paired
signed-rank test) and stop it as soon as that test finds it worse (p below `p_threshold`, 0.1 by
default).  That is what makes 100-200 dev users affordable: a poor guidance question is dropped after a
few dozen users instead of paying for all.  The price: the test is repeated after every batch, so a
configuration as good as the best is stopped more often than 1 in 10 (Optuna's documentation says as
much).  The search takes that risk for speed; what is exported is decided on held-out users instead
(the confirm stage, `confirm.py`).

Every score paid for is kept in the study, one attribute per (configuration, example), so a trial's
writes grow with its examples (not with their square) and a configuration met again, by a later
trial, a resumed run or another worker, pays only for examples not yet scored.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import optuna

from guided_profile.datasets.example import Example

# attempts(examples) -> [(score, tokens, failed)] in the examples' order
Scorer = Callable[[Sequence[Example]], list[tuple[float, int, bool]]]


@dataclass
class DevScores:
    """A configuration's dev scores (in the dev set's order; a failed or unscored example is absent)."""

    scores: dict[int, float] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    reused: int = 0  # examples whose score the study already held
    failed: int = 0
    paid: int = 0  # examples scored now

    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0

    def mean_tokens(self) -> float:
        return sum(self.tokens.values()) / len(self.tokens) if self.tokens else 0.0


def memo_key(configuration: str, example_id: str) -> str:
    return f"score:{configuration}|{example_id}"


def race(study: optuna.Study, trial: optuna.Trial | None, configuration: str, examples: Sequence[Example], *,
         score: Scorer, batch: int, seed: int, prune: bool,
         progress: Callable[[DevScores, int], None] | None = None) -> DevScores:
    """Score `configuration` on `examples`, `batch` at a time, in an order shuffled by `seed` (give each trial
    its own, so no trial is judged on the same first users), reporting each score to `trial` (if any) under
    the example's index; with `prune`, raise `optuna.TrialPruned` once the pruner finds the trial worse than
    the best so far on the same examples (the scores paid for stay in the study).  `progress(dev, total)`
    is called after each batch: a trial on 100+ users takes an hour on a CPU, and should be seen to move."""
    held = study.user_attrs
    dev = DevScores()
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    pending = []
    for index in order:
        kept = held.get(memo_key(configuration, examples[index].example_id))
        if kept is None:
            pending.append(index)
            continue
        dev.scores[index], dev.tokens[index] = kept
        dev.reused += 1
        _report(trial, index, kept[0])
    _stop_if_worse(trial, dev, examples, prune)
    for start in range(0, len(pending), batch):
        chunk = pending[start:start + batch]
        for index, (value, tokens, failed) in zip(chunk, score([examples[i] for i in chunk]), strict=True):
            dev.paid += 1
            if failed:  # scored 0 by the caller; not kept, so a later trial retries it
                dev.failed += 1
                continue
            dev.scores[index], dev.tokens[index] = value, tokens
            study.set_user_attr(memo_key(configuration, examples[index].example_id), [value, tokens])
            _report(trial, index, value)
        if progress is not None:
            progress(dev, len(examples))
        _stop_if_worse(trial, dev, examples, prune)
    return dev


def _report(trial: optuna.Trial | None, index: int, value: float) -> None:
    if trial is not None:
        trial.report(value, step=index)


def _stop_if_worse(trial: optuna.Trial | None, dev: DevScores, examples: Sequence[Example], prune: bool) -> None:
    total = len(examples)
    if trial is None or not prune or len(dev.scores) == total or not trial.should_prune():
        return
    # Optuna gives a pruned trial its last intermediate value, one user's score: the mean is what to read.
    seen, mean = len(dev.scores), dev.mean()
    trial.set_user_attr("pruned_after_examples", seen)
    trial.set_user_attr("mean_so_far", round(mean, 4))
    trial.set_user_attr("paid_examples", dev.paid)
    trial.set_user_attr("reused_examples", dev.reused)
    record_scores(trial, dev, examples)
    raise optuna.TrialPruned(f"worse than the best trial after {seen} of {total} dev examples "
                             f"(mean so far {mean:.3f})")


def record_scores(trial: optuna.Trial, dev: DevScores, examples: Sequence[Example]) -> None:
    """Write, once as the trial ends, the dev scores it saw by example id: the intermediate values are keyed by
    index and the study's memo by configuration, so this is what lets a person read one trial on its own in
    optuna-dashboard.  A JSON text, not a dict: the dashboard cuts a dict's JSON at 1,024 characters, a text
    it shows whole.  Two writes however long the race: the count, and at most `len(examples)` scores in the dev
    set's order."""
    scores = {examples[i].example_id: round(dev.scores[i], 4) for i in sorted(dev.scores)}
    trial.set_user_attr("dev_examples", len(scores))
    trial.set_user_attr("example_scores", json.dumps(scores))
