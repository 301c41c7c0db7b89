"""Retrieval: which of a person's history items the programs see, chosen per example before digestion.

The LaMP baselines, OPPU and HYDRA all pick the part of a history that matters for the query and keep
the top k; until now this project kept the most recent items that fit a character budget.  A
`Retriever` answers one question, `select(items, query, k)`: the indices of the k items to keep, in
their original (oldest-first) order, so the programs' numbered history still reads as a timeline.

Retrievers are chosen by name, like Optuna's samplers: `get_retriever("bm25", k1=1.2)`.

| name     | keeps                                                                    |
|----------|--------------------------------------------------------------------------|
| `recent` | the last k items in the data's order (without k: as before retrieval)    |
| `none`   | the whole history, whatever k                                            |
| `bm25`   | the k items BM25 (the `bm25s` library) scores highest against the query  |
| `dense`  | the k items closest to the query by MiniLM cosine; embeddings cached     |

Ties go to the later item, so a query that matches nothing keeps what `recent` keeps.  "Later" is the
data's order: the purchase date for Amazon histories; LaMP-7's tweets carry no date, so there it is
the order of the profile file, which need not be time.

Where it sits in the layers: beside `tasks`, below `programs`
(programs -> tasks / retrieval -> metrics -> lm / datasets / store -> errors).  It uses the metrics'
MiniLM loader and the cache folder; it never imports a task or a program.  The per-task query is the
tasks' business (`Task.retrieval_query(example)`), so programs join the two and nothing points up.

Programs apply a retriever as their first step (`programs/retrieved.py`); `--retriever` and `--k` choose it.
"""

from guided_profile.retrieval import bm25, dense, simple  # noqa: F401  (registers the built-in retrievers)
from guided_profile.retrieval.base import RETRIEVERS, Retriever, get_retriever, register_retriever, retriever_class
from guided_profile.retrieval.bm25 import BM25Retriever
from guided_profile.retrieval.dense import DenseRetriever, Encoder, MiniLMEncoder
from guided_profile.retrieval.simple import NoRetrieval, RecentRetriever

__all__ = ["RETRIEVERS", "BM25Retriever", "DenseRetriever", "Encoder", "MiniLMEncoder", "NoRetrieval",
           "RecentRetriever", "Retriever", "get_retriever", "register_retriever", "retriever_class"]
