"""Reference-based text metrics of the tweet-paraphrasing task: BLEU, ROUGE and METEOR, all offline.

Each is the standard library implementation, so numbers can be compared with other work:
BLEU is sacrebleu's (0-100, its default 13a tokenization and exp smoothing; sentence BLEU per
example, corpus BLEU from the summed n-gram statistics), ROUGE is Google's rouge-score (F1, no
stemming, as LaMP's `evaluate` setup), METEOR is nltk's `meteor_score` over WordNet 3.0 (see
`wordnet.py`) on tokens from nltk's `wordpunct_tokenize` (the regex `\\w+|[^\\w\\s]+`, which needs
no punkt download), lowercased by nltk.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

BLEU_STATS = "bleu_stats"  # the per-example key holding sacrebleu's sufficient statistics
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)


@lru_cache(maxsize=1)
def _wordnet():
    """nltk's WordNet reader over this project's copy (never another copy on nltk's path)."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from guided_profile.metrics.wordnet import ensure_wordnet

    root = ensure_wordnet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": METEOR is English-only
        return WordNetCorpusReader(str(root / "corpora" / "wordnet"), None)


def tokenize(text: str) -> list[str]:
    from nltk.tokenize import wordpunct_tokenize

    return wordpunct_tokenize(text)


def meteor(hypothesis: str, reference: str) -> float:
    """nltk's METEOR of one hypothesis against one reference (0 when either has no tokens)."""
    from nltk.translate.meteor_score import meteor_score

    hyp, ref = tokenize(hypothesis), tokenize(reference)
    if not hyp or not ref:
        return 0.0
    wordnet = _wordnet()
    with _lock:  # nltk's lazy WordNet caches are not thread-safe
        return float(meteor_score([ref], hyp, wordnet=wordnet))


def rouge(hypothesis: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1."""
    scores = _rouge().score(reference, hypothesis)
    return {name: float(scores[name].fmeasure) for name in ("rouge1", "rouge2", "rougeL")}


def sentence_bleu(hypothesis: str, reference: str) -> tuple[float, list[int]]:
    """sacrebleu's sentence BLEU, and the statistics `corpus_bleu_from_stats` sums."""
    import sacrebleu

    score = sacrebleu.sentence_bleu(hypothesis, [reference])
    return float(score.score), [*score.counts, *score.totals, score.sys_len, score.ref_len]


def corpus_bleu_from_stats(stats: Sequence[Sequence[int]]) -> float:
    """Corpus BLEU from per-sentence statistics: equal to sacrebleu.corpus_bleu over the same pairs."""
    from sacrebleu.metrics import BLEU

    if not stats:
        return 0.0
    totals = [sum(column) for column in zip(*stats, strict=True)]
    order = (len(totals) - 2) // 2
    return float(BLEU.compute_bleu(totals[:order], totals[order:2 * order], totals[-2], totals[-1],
                                   smooth_method="exp", max_ngram_order=order).score)


def text_scores(hypothesis: str, reference: str) -> dict[str, Any]:
    """Every metric of one reply, in the order of the paper's Figure 3, plus BLEU's statistics."""
    bleu, stats = sentence_bleu(hypothesis, reference)
    r = rouge(hypothesis, reference)
    return {"rouge1": r["rouge1"], "rouge2": r["rouge2"], "meteor": meteor(hypothesis, reference),
            "rougeL": r["rougeL"], "bleu": bleu, BLEU_STATS: stats}
