"""Detecting a generation stuck in a loop: its tail is one piece of text repeated over and over.

A 1.5B model digesting a long history sometimes repeats one category ("Industrial Electrical,
Industrial Electrical, ...") until its token cap, and each repeat costs decoding time and is read
again by every later step.  The check is on characters, not tokens, so it does not depend on how
the tokenizer splits the loop, and it looks only at the tail: run after every streamed piece, it
ends the step as soon as the loop is long enough, and everything written before that is kept.

A loop counts when the tail is periodic with a unit of `min_unit`..`max_unit` characters, repeated
at least `min_repeats` times and spanning at least `min_span` characters.  The span keeps a
legitimate list of equal items short of a stop (a digestion names one category per purchase, and
several purchases in a row can share one); the defaults were fitted on every committed output
(`experiments/token_caps.py`: the only outputs that reach them and still ended before their cap are
profiles that repeat one sentence four or more times).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LoopRule:
    """When a repeated tail is a loop; run configs record it beside the token caps."""

    min_repeats: int = 4
    min_span: int = 480   # characters, about 100 tokens: a digestion listing 11 purchases of one category is 429
    min_unit: int = 2
    max_unit: int = 160   # longer repeats are sentences a stop would be unsafe to judge

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


DEFAULT_LOOP_RULE = LoopRule()


def loop_at_tail(text: str, rule: LoopRule = DEFAULT_LOOP_RULE) -> int | None:
    """The unit length (characters) of a loop the text ends in, or None.

    Periodic with unit p over the last `need` characters means text[i] == text[i - p] there, i.e.
    the tail minus its first p characters equals the tail minus its last p characters.
    """
    for unit in range(rule.min_unit, min(rule.max_unit, len(text) // rule.min_repeats) + 1):
        need = max(unit * rule.min_repeats, rule.min_span)
        if need > len(text):
            continue
        tail = text[-need:]
        if tail[unit:] == tail[:-unit]:
            return unit
    return None


def first_loop_end(text: str, rule: LoopRule = DEFAULT_LOOP_RULE) -> int | None:
    """Where a check after every character would first have stopped `text` (its length then), or None.

    The same rule as `loop_at_tail` applied to every prefix, computed per unit with numpy: used to
    fit `LoopRule` on outputs already written and to say how much of each a stop would have kept.
    """
    import numpy as np

    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    first = None
    for unit in range(rule.min_unit, min(rule.max_unit, len(codes) // rule.min_repeats) + 1):
        need = max(unit * rule.min_repeats, rule.min_span) - unit  # matches text[i] == text[i - unit] in a row
        same = np.concatenate(([0], (codes[unit:] == codes[:-unit]).astype(np.int64)))
        if need <= 0 or len(same) - 1 < need:
            continue
        resets = np.maximum.accumulate(np.where(same == 0, np.arange(len(same)), 0))
        runs = np.arange(len(same)) - resets  # matches in a row ending at each position
        hits = np.flatnonzero(runs >= need)
        if hits.size:
            end = int(hits[0]) + unit  # prefix length when the run first reached `need`
            first = end if first is None else min(first, end)
    return first
