"""Purchase-preference prediction (the paper's Amazon task): which of four products will this
person buy, given their past purchases?"""

from __future__ import annotations

from pathlib import Path

from guided_profile.datasets.amazon import AUTO_SEPARATOR, build_preference_examples, load_amazon
from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.tasks.base import ChoiceTask, whole_number


class PreferenceTask(ChoiceTask):
    """The paper's purchase-preference prediction: which of four products a shopper buys, from their
    purchase titles (the guidance question asks for the categories, which the titles only imply)."""

    name = "preference"
    description = "Amazon purchase-preference prediction (4 options, one held-out purchase)"
    guidance_question = ("Provide the product category of above one by one, each of them use less than 10 words, "
                         "split by a comma:")
    profile_instruction = ("Write a short profile of this shopper: what kinds of products they buy and "
                           "what they seem to need them for. Use at most 60 words.")
    guided_profile_instruction = ("Using the product categories in the guidance, write a short profile of this "
                                  "shopper: which categories they buy from most and what they seem to need. "
                                  "Use at most 60 words.")
    answer_instruction = "Choose the product this person is most likely to buy."
    gpg_switches = {"include_context": True, "include_guidance": False, "include_profile": True}
    # Chosen on 60 dev users by the rule experiments/retrieval_preference.sh fixed before its runs: BM25's 4
    # purchases nearest the question and options kept accuracy (56.7 both) and gold-option probability (27.9
    # vs 27.1) and cut the answer steps' prompt tokens from 2,778 to 1,656 (experiments/results/retrieval.md).
    default_retrieval = ("bm25", 4)
    fitted_max_tokens = {"profile": 232}  # with stop_runaways: fitted on dev, experiments/results/token-caps.md
    data_subdir = "amazon_scientific"
    sample_subdir = "amazon_sample"

    def __init__(self, seed: int = 0, category_level: int = 1, min_categories: int = 5,
                 show_categories: bool = False, category_separator: str = AUTO_SEPARATOR, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if self.include_empty_history:  # a silent no-op would let a user believe such users were evaluated
            raise ConfigError("task option include_empty_history does not apply to preference: an example holds "
                              "out one purchase of a user who bought from several categories, so its history is "
                              "never empty")
        self.category_level = whole_number("category_level", category_level)
        self.min_categories = whole_number("min_categories", min_categories, minimum=0)
        if not isinstance(show_categories, bool):
            raise ConfigError(f"task option show_categories must be true or false, got {show_categories!r}")
        if not isinstance(category_separator, str) or not category_separator:
            raise ConfigError(f"task option category_separator must be 'auto' or a non-empty string, "
                              f"got {category_separator!r}")
        self.show_categories = show_categories
        self.category_separator = category_separator

    def load(self, path: Path) -> tuple[list[Example], dict[str, int]]:
        catalog, histories = load_amazon(path, category_separator=self.category_separator)
        return build_preference_examples(catalog, histories, seed=self.seed, category_level=self.category_level,
                                         min_categories=self.min_categories, show_categories=self.show_categories,
                                         source=str(path))
