"""Reading data files: what is not a regular file is refused at once instead of blocking."""

import os
import threading

import pytest

from guided_profile.datasets.io import read_json, text_lines
from guided_profile.errors import DataError


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "questions.json"
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            read_json(fifo)
        except DataError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the reader so the test run can end, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("reading a named pipe blocked")
    assert "questions.json" in outcome["error"] and "not a regular file" in outcome["error"]


def test_a_folder_where_a_file_is_expected_is_named(tmp_path):
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    with pytest.raises(DataError, match=r"data\.jsonl: is a folder"):
        list(text_lines(folder))


def test_json_nested_deeper_than_the_stack_is_a_data_error_naming_the_file(tmp_path):
    """json.loads raises RecursionError there, which no reader expects (guided_profile/json_text.py)."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"deep\.json.*nested too deeply to read"):
        read_json(deep)
