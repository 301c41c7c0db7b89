"""Tweet paraphrasing (the paper's LaMP-7 task): rewrite a neutral tweet the way its author writes,
given the author's other tweets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guided_profile.datasets.example import Example
from guided_profile.datasets.lamp import PREFIX, load_lamp7
from guided_profile.metrics.text import BLEU_STATS, corpus_bleu_from_stats, text_scores
from guided_profile.tasks.text import TextTask


class ParaphraseTask(TextTask):
    """LaMP-7: rewrite a neutral tweet as its author would, scored against the author's own tweet with the
    paper's Figure 3 metrics."""

    name = "paraphrase"
    description = "LaMP-7 tweet paraphrasing: rewrite a tweet in its author's style (ROUGE, METEOR, BLEU)"
    guidance_question = ("Among the usage of 1. Capitalization, 2. Emoji, 3. Abbreviation, 4. Punctuation, which is "
                         "the most distinctive feature of the above tweets?")
    profile_instruction = ("Write a short profile of how this person writes tweets: their tone and topics, and their "
                           "habits of capitalization, emoji, abbreviation, spelling and punctuation. "
                           "Use at most 60 words.")
    guided_profile_instruction = ("Starting from the distinctive feature named in the guidance, write a short profile "
                                  "of how this person writes tweets: how they use that feature, with examples, and "
                                  "their tone. Use at most 60 words.")
    answer_instruction = ("Paraphrase the tweet in the question the way this person would write it, in their style "
                          "(capitalization, emoji, abbreviations, punctuation). Reply with only the tweet, without "
                          "any explanation before or after it.")
    answer_desc = "only the paraphrased tweet"
    # fitted_max_tokens: none until a dev run is committed (caps are fitted on train/dev only: token-caps.md)
    # gpg_switches: TextTask's, the paper's GPG row for this task (the tweets, the guidance answer, the profile).
    objective = "meteor"
    metric_keys = ("rouge1", "rouge2", "meteor", "rougeL", "bleu")  # the order of the paper's Figure 3
    data_subdir = "lamp7"
    sample_subdir = "lamp7_sample"

    def load(self, path: Path) -> tuple[list[Example], dict[str, int]]:
        return load_lamp7(path, keep_empty=self.include_empty_history)

    def question_text(self, example: Example) -> str:
        return f"{PREFIX} {example.query}"  # LaMP's own input, as the paper's prompts used it

    def score(self, example: Example, answer: str, profile: str | None = None) -> dict[str, Any]:
        return text_scores(answer.strip(), example.gold)

    def feedback_notes(self, example: Example, answer: str) -> list[str]:
        """Small models often hand back the neutral input tweet unchanged: say so, it is the commonest failure."""
        if " ".join(answer.split()).lower() == " ".join(example.query.split()).lower():
            return ["The reply repeats the neutral input tweet word for word; the person's own tweet says the same "
                    "thing in their style (their capitalization, emoji, abbreviations and punctuation)."]
        return []

    def summarize(self, scores: list[dict[str, Any]]) -> dict[str, Any]:
        """Means of the per-example metrics, except BLEU: corpus BLEU over all replies, as BLEU is defined."""
        row = super().summarize(scores)
        row["bleu"] = corpus_bleu_from_stats([s[BLEU_STATS] for s in scores]) if scores else None
        return row
