"""The Optuna search's retrieval dimension wired in (`search_retrieval`, `retrieval_k`), with the fake LM."""

import json
import re

import optuna
import pytest
from test_optimizers import DEV, TASK, TRAIN, lms

from guided_profile.cli import main
from guided_profile.errors import ConfigError
from guided_profile.optimizers import get_optimizer
from guided_profile.optimizers.runner import run_optimizer
from guided_profile.programs import build_program
from guided_profile.programs.export import load_compiled, save_compiled
from guided_profile.programs.retrieved import Retrieval, retrieval_of

OLDER_ITEM = re.compile(r"item [td]\d")  # each example's older history item; k=1 keeps only the newer one


def one_item_rule(system, user):
    """Right (B) only when the final step's history holds one item: only a k=1 retrieval scores."""
    tail = user.rsplit("\n\n", 1)[-1].lower()
    if "reply with only the guidance" in tail or "reply with only the profile" in tail:
        return "a shopper"
    return "A" if OLDER_ITEM.search(user) else "B"


def search(tmp_path, base=None, **settings):
    task_lm, task_engine, prompt_lm, _ = lms(one_item_rule)
    optimizer = get_optimizer("optuna", task=TASK, task_lm=task_lm, prompt_lm=prompt_lm, workdir=tmp_path,
                              progress=None, **({"trials": 8, "candidates": 0, "ground_proposals": False,
                                                 "search_switches": False} | settings))
    program = build_program("gpg", TASK, retrieval=base)
    result = run_optimizer(optimizer, program, trainset=TRAIN, valset=DEV, budget=10_000, log=lambda line: None)
    return optimizer, program, result


def test_a_search_over_bm25_and_recent_exports_the_chosen_retrieval(tmp_path):
    optimizer, program, result = search(tmp_path, search_retrieval="bm25,recent", retrieval_k="1,2")
    best = result.program
    label = optimizer.info["best_trial"]["retrieval"]
    assert label in ("bm25:1", "recent:1") and result.scores["dev"] == 1.0  # the base (all items) scores 0
    assert retrieval_of(best) == Retrieval(label.split(":")[0], 1)
    tried = {t["retrieval"] for t in optimizer.info["trials"]}
    assert "base" in tried and tried <= {"base", "bm25:1", "bm25:2", "recent:1", "recent:2"}
    path = tmp_path / "tuned.json"
    save_compiled(path, best, TASK, {})
    assert json.loads(path.read_text())["retrieval"]["k"] == 1
    loaded, _ = load_compiled(path, TASK)
    assert retrieval_of(loaded) == retrieval_of(best)
    study = optuna.load_study(study_name=optimizer.info["study_name"], storage=optimizer.storage_url())
    keys = [k for k in study.user_attrs if k.startswith("score:")]
    assert keys and all("|r" in k for k in keys)
    config = study.user_attrs["config"]
    assert config["retrieval"]["search"][0] == "base" and config["retrieval"]["base"] is None


def test_without_the_search_the_keys_and_study_stay_as_before_and_the_base_keeps_its_retrieval(tmp_path):
    optimizer, program, result = search(tmp_path / "plain", trials=2)
    study = optuna.load_study(study_name=optimizer.info["study_name"], storage=optimizer.storage_url())
    keys = [k for k in study.user_attrs if k.startswith("score:")]
    assert keys and all("|r" not in k for k in keys)
    config = study.user_attrs["config"]
    assert "retrieval" not in config and "search_retrieval" not in config["settings"]
    assert "retrieval" not in optimizer.info["best_trial"] and retrieval_of(result.program) is None
    base = Retrieval("bm25", 1)
    optimizer, _, result = search(tmp_path / "base", base=base, trials=2)
    assert retrieval_of(result.program) == base and result.scores["dev"] == 1.0
    study = optuna.load_study(study_name=optimizer.info["study_name"], storage=optimizer.storage_url())
    assert study.user_attrs["config"]["retrieval"] == {"base": base.to_dict(), "search": None}


@pytest.mark.parametrize("settings,needle", [({"search_retrieval": "bm42", "retrieval_k": "2"}, "unknown retriever"),
                                             ({"search_retrieval": "bm25"}, "needs retrieval_k"),
                                             ({"retrieval_k": "2"}, "needs search_retrieval"),
                                             ({"search_retrieval": "bm25", "retrieval_k": "0"}, "at least 1"),
                                             ({"search_retrieval": "bm25", "retrieval_k": "two"}, "whole numbers")])
def test_a_bad_retrieval_search_is_refused_before_any_call(settings, needle):
    with pytest.raises(ConfigError, match=needle):
        get_optimizer("optuna", task=TASK, task_lm=lms()[0], **settings)


def test_optimize_with_a_retriever_and_optuna_through_the_command_line(tmp_path):
    out = tmp_path / "o.json"
    assert main(["optimize", "--task", "preference", "--optimizer", "optuna", "--option", "trials=2", "--option",
                 "candidates=0", "--lm", "fake", "--no-cache", "--retriever", "bm25", "--k", "2", "--train-limit",
                 "3", "--dev-limit", "3", "--confirm-fraction", "0", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["retrieval"]["retriever"]["name"] == "bm25" and payload["retrieval"]["k"] == 2
    searched = tmp_path / "s.json"
    assert main(["optimize", "--task", "preference", "--optimizer", "optuna", "--option", "trials=3", "--option",
                 "candidates=0", "--option", "search_retrieval=bm25,recent", "--option", "retrieval_k=1,2",
                 "--retriever", "recent", "--lm", "fake", "--no-cache", "--train-limit", "3", "--dev-limit", "3",
                 "--confirm-fraction", "0", "--out", str(searched)]) == 0  # recent: the base program reads every item
    payload = json.loads(searched.read_text())
    label = payload["optimizer"]["info"]["best_trial"]["retrieval"]
    assert payload.get("retrieval") == (None if label == "base" else Retrieval(label.split(":")[0],
                                                                                int(label.split(":")[1])).to_dict())
