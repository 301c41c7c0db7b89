"""Retrievers: what each keeps, in which order, how ties fall, the registry, the embedding cache, and
each task's retrieval query.  No LM; one test loads the real MiniLM (a handful of sentences)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from guided_profile.datasets.example import Example
from guided_profile.datasets.lamp import PREFIX
from guided_profile.errors import ConfigError
from guided_profile.retrieval import RETRIEVERS, DenseRetriever, Retriever, get_retriever
from guided_profile.store import StoreError
from guided_profile.tasks import TASKS, get_task

HISTORY = (
    "Morning run along the river, legs tired",
    "Finally repotted my fiddle leaf fig",
    "Watching the game tonight with friends",
    "My sourdough starter smells amazing today",
    "Another run in the rain, still tired",
)


class StubEncoder:
    """Bag-of-words vectors over a tiny vocabulary; counts what it is asked to embed."""

    name = "stub"
    vocabulary = ("cats", "dogs", "stock", "market")

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.array([[text.split().count(word) for word in self.vocabulary] for text in texts], dtype=np.float32)


@pytest.fixture
def stub() -> StubEncoder:
    return StubEncoder()


@pytest.fixture
def dense(tmp_path, stub) -> DenseRetriever:
    return DenseRetriever(cache_path=tmp_path / "embeddings.sqlite", encoder=stub)


def build(name: str, tmp_path) -> Retriever:
    """Each registered retriever, the dense one on a stub encoder and a private cache."""
    if name == "dense":
        return DenseRetriever(cache_path=tmp_path / "embeddings.sqlite", encoder=StubEncoder())
    return get_retriever(name)


def test_bm25_ranks_the_item_sharing_a_rare_word_first():
    bm25 = get_retriever("bm25")
    scores = bm25.scores(HISTORY, "a run then baking sourdough")  # "run" is in two items, "sourdough" in one
    assert max(range(len(HISTORY)), key=scores.__getitem__) == 3
    assert bm25.select(HISTORY, "a run then baking sourdough", 1) == [3]


def test_bm25_writes_no_debug_lines_to_a_configured_root_logger(caplog):
    """bm25s sets its logger to DEBUG; a run whose root logger has a handler printed a line per example."""
    # caplog's handler sits on the root logger and takes every level, as one logging.basicConfig leaves does
    get_retriever("bm25").scores(["the cat sat", "a dog barked"], "cat")
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]


def test_selection_comes_back_in_original_order():
    chosen = get_retriever("bm25").select(HISTORY, "sourdough run", 3)
    assert chosen == [0, 3, 4]  # 3 scores highest, but the kept history still reads oldest first


def test_ties_go_to_the_more_recent_item(dense):
    history = ("fig tree", "river walk", "fig tree", "game night")
    assert get_retriever("bm25").select(history, "fig", 1) == [2]
    assert dense.select(("cats", "stock market", "cats", "dogs"), "cats", 1) == [2]
    # A query that matches nothing keeps what `recent` keeps.
    assert get_retriever("bm25").select(HISTORY, "zebra", 2) == get_retriever("recent").select(HISTORY, "zebra", 2)
    assert get_retriever("bm25").select(HISTORY, "the of and", 2) == [3, 4]  # stop words only: no word to match


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
@pytest.mark.parametrize("k", [5, 6, 100])
def test_k_at_least_the_history_returns_it_whole(name, k, tmp_path):
    assert build(name, tmp_path).select(HISTORY, "sourdough", k) == [0, 1, 2, 3, 4]
    assert build(name, tmp_path).select((), "sourdough", k) == []


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3", None])
def test_k_must_be_a_whole_number_of_at_least_one(name, k, tmp_path):
    with pytest.raises(ConfigError, match="k, the number of history items to retrieve, must be a whole number"):
        build(name, tmp_path).select(HISTORY, "sourdough", k)


def test_recent_keeps_the_last_k_and_none_keeps_everything():
    assert get_retriever("recent").select(HISTORY, "sourdough", 2) == [3, 4]
    assert get_retriever("recent").select(HISTORY, "", 1) == [4]
    assert get_retriever("none").select(HISTORY, "sourdough", 1) == [0, 1, 2, 3, 4]


def test_registry_refuses_an_unknown_name_with_the_known_ones():
    known = "bm25, dense, none, recent"
    with pytest.raises(ConfigError, match=f"unknown retriever 'tfidf'; registered retrievers: {known}$"):
        get_retriever("tfidf")


@pytest.mark.parametrize(("name", "settings", "pattern"), [
    ("bm25", {"k": 3}, r"retriever 'bm25' takes no setting 'k'; its settings: k1, b"),
    ("recent", {"k1": 1.0}, r"retriever 'recent' takes no setting 'k1'; its settings: none"),
    ("bm25", {"k1": 0}, r"k1 must be a number above 0"),
    ("bm25", {"b": 1.5}, r"b must be a number from 0 to 1"),
    ("dense", {"model": "bert-large"}, r"unknown model 'bert-large'; installed: all-MiniLM-L6-v2"),
])
def test_registry_refuses_settings_a_retriever_does_not_take(name, settings, pattern):
    with pytest.raises(ConfigError, match=pattern):
        get_retriever(name, **settings)


@pytest.mark.parametrize(("name", "settings", "recorded"), [
    ("recent", {}, {"name": "recent"}),
    ("none", {}, {"name": "none"}),
    ("bm25", {"k1": 1.2}, {"name": "bm25", "k1": 1.2, "b": 0.75}),
    ("dense", {}, {"name": "dense", "model": "all-MiniLM-L6-v2"}),  # the model loads only when first used
])
def test_settings_round_trip_through_the_registry(name, settings, recorded):
    retriever = get_retriever(name, **settings)
    assert retriever.to_dict() == recorded
    assert get_retriever(**retriever.to_dict()).to_dict() == recorded


def test_dense_ranks_by_cosine_not_by_length(dense):
    history = ("cats cats cats cats dogs", "stock market", "cats", "dogs")
    scores = dense.scores(history, "cats")
    assert scores[2] == pytest.approx(1.0) and scores[1] == 0.0
    assert scores[0] == pytest.approx(4 / 17 ** 0.5)  # a dot product would have put it first
    assert dense.select(history, "cats", 1) == [2]
    assert dense.select(history, "cats", 2) == [0, 2]


def test_dense_embeds_each_text_once_and_keeps_it_across_processes(dense, stub, tmp_path):
    history = ("cats", "stock market", "cats", "dogs")
    dense.select(history, "cats", 1)
    assert stub.calls == [["cats", "stock market", "dogs"]]  # the query and each distinct item, one batch
    dense.select(history, "cats", 2)
    assert len(stub.calls) == 1  # nothing new to embed
    dense.select((*history, "cats dogs"), "market", 1)
    assert stub.calls[1:] == [["market", "cats dogs"]]  # only what is new
    dense.close()

    again = StubEncoder()
    reopened = DenseRetriever(cache_path=tmp_path / "embeddings.sqlite", encoder=again)
    assert reopened.select(history, "cats", 1) == [2]
    assert again.calls == []  # a new process reads the file instead of the model


def test_dense_cache_holds_raw_float32_vectors_keyed_by_model_and_text(dense, tmp_path):
    dense.select(("cats", "dogs", "stock market"), "cats", 1)
    rows = sqlite3.connect(tmp_path / "embeddings.sqlite").execute(
        "SELECT model, dim, typeof(vector), vector FROM embeddings").fetchall()
    assert len(rows) == 3 and {(model, dim, kind) for model, dim, kind, _ in rows} == {("stub", 4, "blob")}
    vectors = {tuple(np.frombuffer(blob, dtype="<f4")) for *_, blob in rows}
    assert vectors == {(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 1)}  # 16 bytes each: no pickle around them

    other = StubEncoder()
    other.name = "stub-2"  # another model never reads these vectors
    DenseRetriever(cache_path=tmp_path / "embeddings.sqlite", encoder=other).select(("cats", "dogs"), "cats", 1)
    assert other.calls == [["cats", "dogs"]]


def test_a_broken_embedding_cache_is_one_clear_error(tmp_path, stub):
    path = tmp_path / "embeddings.sqlite"
    path.write_bytes(b"not a database, " * 100)
    with pytest.raises(StoreError, match=r"embedding cache .*embeddings.sqlite cannot be used .*; delete it"):
        DenseRetriever(cache_path=path, encoder=stub)


def test_dense_with_the_real_minilm_prefers_the_related_item(tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # light on a shared machine
    try:
        history = ("I adopted a puppy from the shelter last weekend.", "Quarterly tax forms are due on Monday.",
                   "The train was late again this morning.")
        retriever = get_retriever("dense", cache_path=tmp_path / "embeddings.sqlite")
        scores = retriever.scores(history, "My dog loves long walks in the park.")
        assert scores[0] > max(scores[1:]) + 0.1
        assert retriever.select(history, "My dog loves long walks in the park.", 1) == [0]
    finally:
        torch.set_num_threads(threads)


# ---- each task's retrieval query

def _example(**fields) -> Example:
    return Example(**{"example_id": "e1", "user_id": "u1", "history": HISTORY, "gold": "A"} | fields)


QUERIES = {  # task -> (example, the query its retriever should match the history against)
    "preference": (_example(query="Which of the following products is the user most likely to buy?",
                            options=("Terracotta pot 6 inch", "Sourdough proofing basket", "Wall clock", "Drill")),
                   "Which of the following products is the user most likely to buy?\nTerracotta pot 6 inch\n"
                   "Sourdough proofing basket\nWall clock\nDrill"),
    "paraphrase": (_example(query="I went for a run in the rain."), "I went for a run in the rain."),
    "dialogue": (_example(query="do you have any pets?"), "do you have any pets?"),
}


def test_every_registered_task_has_its_query_rule_tested():
    assert sorted(QUERIES) == sorted(TASKS)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_retrieval_query_of_each_task(name):
    example, expected = QUERIES[name]
    task = get_task(name)
    assert task.retrieval_query(example) == expected
    if name == "paraphrase":  # the prompt wraps the tweet in LaMP's instruction; the query is the tweet alone
        assert PREFIX in task.question_text(example) and PREFIX not in task.retrieval_query(example)


def test_preference_query_finds_the_purchase_that_shares_an_option_s_words():
    example, _ = QUERIES["preference"]
    query = get_task("preference").retrieval_query(example)
    assert get_retriever("bm25").select(example.history, query, 1) == [3]  # sourdough starter ~ proofing basket
