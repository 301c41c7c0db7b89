"""The Optuna search's retrieval dimension (`optimizers/_retrieval_space.py`): labels, checks, round trips."""

import optuna
import pytest

from guided_profile.errors import ConfigError
from guided_profile.optimizers._retrieval_space import (
    BASE,
    label_of,
    retrieval_choices,
    retrieval_from_label,
    suggest_retrieval,
)
from guided_profile.programs.retrieved import Retrieval


def test_choices_put_the_base_first_and_try_none_once():
    assert retrieval_choices(["bm25", "dense", "none"], [4, 8]) == [BASE, "bm25:4", "bm25:8", "dense:4", "dense:8",
                                                                     "none:4"]


@pytest.mark.parametrize("retrievers,ks,needle", [(["bm42"], [4], "unknown retriever"), (["bm25"], [0], "at least 1")])
def test_bad_choices_fail_before_any_call(retrievers, ks, needle):
    with pytest.raises(ConfigError, match=needle):
        retrieval_choices(retrievers, ks)


@pytest.mark.parametrize("base", [None, Retrieval("bm25", 4, steps="digest")])
def test_labels_round_trip_and_keep_the_base_switch(base):
    for label in retrieval_choices(["bm25", "recent"], [2, 8]):
        retrieval = retrieval_from_label(label, base)
        same_as_base = label == BASE or (base is not None and label == f"{base.retriever}:{base.k}")
        assert (retrieval == base) == same_as_base
        assert label_of(retrieval, base) == (BASE if same_as_base else label)
        if retrieval is not None:
            assert retrieval.steps == (base.steps if base else "all")
    assert retrieval_from_label(BASE, base) == base


def test_a_trial_suggests_one_label():
    trial = optuna.trial.FixedTrial({"retrieval": "bm25:8"})
    assert suggest_retrieval(trial, retrieval_choices(["bm25"], [4, 8]), None) == ("bm25:8", Retrieval("bm25", 8))
    with pytest.raises(ConfigError, match="expected 'base' or NAME:K"):
        retrieval_from_label("bm25", None)
