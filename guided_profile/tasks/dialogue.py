"""Personalized dialogue (the paper's PER-CHAT task): reply to a message as this person would, given
their earlier replies; also judges the written profile against the person's true persona."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guided_profile.datasets.dialogue import load_dialogues
from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.tasks.text import TextTask

ASPECTS = ("pets", "family", "residence", "favorites", "partner", "possession", "gender", "self-description")


class DialogueTask(TextTask):
    """PER-CHAT: the person's next chat reply from their earlier replies, scored by embedding similarity to the
    real reply; the written profile is also judged against the person's true persona."""

    name = "dialogue"
    description = ("personalized dialogue reply (PER-CHAT shape; PersonaChat data): reply as the person would "
                   "(sentence-transformer similarity, BERTScore, profile vs true persona)")
    guidance_question = ("What is this person's basic personal information, according to the above replies? "
                         "Answer briefly for each aspect: " + ", ".join(f"{i}. {a}" for i, a in enumerate(ASPECTS, 1))
                         + " (write 'unknown' for an aspect the replies do not show).")
    profile_instruction = ("Write a short profile of this person from their replies: who they are, what they like "
                           "and how they talk. Use at most 60 words.")
    guided_profile_instruction = ("Using the personal information in the guidance, write a short first-person "
                                  "profile of this person (pets, family, residence, favorites, partner, possessions, "
                                  "gender, self-description), leaving out what is unknown. Use at most 60 words.")
    answer_instruction = ("Write this person's next message in the chat: their reply to the message in the question, "
                          "as they would write it (what they like, how they talk). Reply with only that message, one "
                          "or two sentences.")
    answer_desc = "only the person's reply"
    # fitted_max_tokens: none until a dev run is committed (caps are fitted on train/dev only: token-caps.md)
    # gpg_switches: TextTask's (PC + G + PP), as for tweets; the paper singles out no other row for this task.
    objective = "st"
    metric_keys = ("st", "bs", "profile_quality")  # the paper's Table 2, then the profile against the true persona
    optional_keys = ("profile_quality",)
    data_subdir = "personachat"
    sample_subdir = "personachat_sample"

    def __init__(self, seed: int = 0, similarity_filter: bool = False, similarity_low: float = 0.4,
                 similarity_high: float = 0.6, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(similarity_filter, bool):
            raise ConfigError(f"similarity_filter must be true or false, got {similarity_filter!r}")
        if not (isinstance(similarity_low, int | float) and isinstance(similarity_high, int | float)
                and similarity_low <= similarity_high):
            raise ConfigError(f"similarity_low ({similarity_low!r}) must be a number <= similarity_high "
                              f"({similarity_high!r})")
        self.similarity_filter = similarity_filter
        self.similarity_low = float(similarity_low)
        self.similarity_high = float(similarity_high)

    def load(self, path: Path) -> tuple[list[Example], dict[str, int]]:
        examples, stats = load_dialogues(path, keep_empty=self.include_empty_history)
        if self.similarity_filter:
            examples, stats = self.filter_by_similarity(examples, stats)
        return examples, stats

    def filter_by_similarity(self, examples: list[Example], stats: dict[str, int]) -> tuple[list[Example], dict]:
        """The paper's filter: keep examples whose reply is neither unrelated to the history nor
        repeating it (best history-to-reply similarity within [low, high])."""
        from guided_profile.metrics.embedding import max_similarities

        best = max_similarities([ex.history for ex in examples], [ex.gold for ex in examples])
        kept = [ex for ex, s in zip(examples, best, strict=True) if self.similarity_low <= s <= self.similarity_high]
        stats = stats | {"similarity_too_low": sum(s < self.similarity_low for s in best),
                         "similarity_too_high": sum(s > self.similarity_high for s in best), "built": len(kept)}
        return kept, stats

    def score(self, example: Example, answer: str, profile: str | None = None) -> dict[str, Any]:
        """st and bs of the reply against the real reply; profile_quality is the cosine between the written
        profile and the true persona sentences joined into one text (None without either)."""
        from guided_profile.metrics.embedding import bertscore_f1, st_similarity

        answer = answer.strip()
        persona = example.meta.get("persona")
        judge_profile = profile is not None and bool(persona)
        pairs = [(answer, example.gold)] + ([(profile, " ".join(persona))] if judge_profile else [])
        similarities = st_similarity([a for a, _ in pairs], [b for _, b in pairs])
        return {"st": similarities[0], "bs": bertscore_f1([answer], [example.gold])[0],
                "profile_quality": similarities[1] if judge_profile else None}
