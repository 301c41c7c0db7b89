"""The run folder's answers.jsonl: what a DSPy optimizer's search is answered on another machine."""

import warnings

from dspy.clients.cache import Cache

from guided_profile.optimizers._answer_journal import FILENAME, AnswerJournal

REQUEST = {"model": "fake/journal", "messages": [{"role": "user", "content": "Which kind of product?"}]}
ANSWER = {"outputs": ["Lab supplies."], "usage": {"prompt_tokens": 9}}


def _cache(folder):
    return Cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(folder))


def _fresh_machine(tmp_path, name="fresh"):
    """A journal over the same run folder, but an empty DSPy cache (another machine's)."""
    return AnswerJournal(tmp_path / "run" / FILENAME, _cache(tmp_path / name))


def test_an_answer_paid_in_the_search_is_read_back_on_another_machine(tmp_path):
    journal = AnswerJournal(tmp_path / "run" / FILENAME, _cache(tmp_path / "here"))
    assert journal.get(REQUEST) is None
    journal.put(REQUEST, ANSWER)
    assert _fresh_machine(tmp_path).get(REQUEST) == ANSWER
    assert _fresh_machine(tmp_path).get({**REQUEST, "model": "fake/other"}) is None


def test_an_answer_this_machine_had_cached_before_the_search_is_kept_too(tmp_path):
    """An earlier run (another optimizer, a compare) filled the cache: the search never pays, yet must keep it."""
    here = _cache(tmp_path / "here")
    here.put(REQUEST, ANSWER)
    assert AnswerJournal(tmp_path / "run" / FILENAME, here).get(REQUEST) == ANSWER
    assert _fresh_machine(tmp_path).get(REQUEST) == ANSWER


def test_an_answer_the_file_would_hold_redacted_is_not_kept(tmp_path):
    """Read back redacted, it would be another answer than the search was given: it is paid again instead."""
    journal = AnswerJournal(tmp_path / "run" / FILENAME, _cache(tmp_path / "here"))
    quoting = {"outputs": ["Try sk-abcdefghijklmnop as the key."]}
    journal.put(REQUEST, quoting)
    assert journal.get(REQUEST) == quoting  # this machine's cache still answers it
    assert _fresh_machine(tmp_path).get(REQUEST) is None


def test_a_request_dspy_cannot_key_goes_uncached_as_in_dspy(tmp_path):
    journal = AnswerJournal(tmp_path / "run" / FILENAME, _cache(tmp_path / "here"))
    unkeyable = {**REQUEST, "extra": object()}
    journal.put(unkeyable, ANSWER)  # DSPy's own cache logs and goes on: so does the journal
    assert journal.get(unkeyable) is None
    assert not (tmp_path / "run" / FILENAME).exists()


def test_a_kill_cut_line_is_skipped_and_the_rest_read(tmp_path):
    journal = AnswerJournal(tmp_path / "run" / FILENAME, _cache(tmp_path / "here"))
    journal.put(REQUEST, ANSWER)
    with open(tmp_path / "run" / FILENAME, "a") as f:
        f.write('{"key": "abc", "answ')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _fresh_machine(tmp_path).get(REQUEST) == ANSWER
    assert any("line 2" in str(w.message) for w in caught)


def test_a_second_answer_to_one_request_leaves_the_first_in_the_cache_and_the_file(tmp_path):
    """Two threads asked at once and got different answers: every later read, here or elsewhere, sees the first."""
    journal = AnswerJournal(tmp_path / "run" / FILENAME, _cache(tmp_path / "here"))
    journal.put(REQUEST, ANSWER)
    journal.put(REQUEST, {"outputs": ["Garden tools."]})
    assert journal.get(REQUEST) == ANSWER
    assert _fresh_machine(tmp_path).get(REQUEST) == ANSWER
