"""Files a run keeps are written whole or not at all, and never hold a secret."""

import json
import os
import stat

import pytest

from guided_profile import files
from guided_profile.errors import OutputError
from guided_profile.files import append_line, write_json, write_text
from guided_profile.redaction import redact


@pytest.mark.parametrize(("text", "secret"), [
    ("error: cannot reach http://me:s3cret-pw@gpu-box:8000/v1/chat", "s3cret-pw"),
    ("postgresql+psycopg2://worker:pg-pass-9@127.0.0.1:5432/optuna", "pg-pass-9"),
    ("GET https://ghp_tok3n1234@host/v1", "ghp_tok3n1234"),
    ("https://host/v1?api_key=abc123xyz&model=m", "abc123xyz"),
    ("headers: Authorization: Bearer eyJhbGciOi.J9x", "eyJhbGciOi.J9x"),
    ("AuthenticationError: Incorrect API key provided: sk-proj-a1b2c3d4e5f6", "a1b2c3d4e5f6"),
    ("--api-base http://:only-pw-77@127.0.0.1:9/v1", "only-pw-77"),  # no user, a password
    ("--api-base http://me:pa@ss-tail-9@127.0.0.1:9/v1", "ss-tail-9"),  # a raw '@' inside the password
    ("--api-base http://me:pa#ss-hash-8@127.0.0.1:9/v1", "ss-hash-8"),  # a raw '#' or '?' too
    ("--api-base http://tok?en-q-7@127.0.0.1:9/v1", "en-q-7"),
])
def test_secrets_are_masked_by_shape(text, secret):
    assert secret not in redact(text) and "***" in redact(text)


def test_secret_environment_values_are_masked_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "plain-value-42")
    monkeypatch.setenv("DEBUG", "1")
    assert redact("the server said: key plain-value-42 is unknown (1 attempt)") == \
        "the server said: key *** is unknown (1 attempt)"


def test_a_url_keeps_its_user_and_loses_only_the_password():
    assert redact("a http://me:pw1@h1/x and http://:pw2@h2 b") == "a http://me:***@h1/x and http://:***@h2 b"
    assert redact("https://host/v1?email=me@example.org") == "https://host/v1?email=me@example.org"
    assert redact("ssh me@host; git@github.com:x/y; http://[::1]:8000/v1") == \
        "ssh me@host; git@github.com:x/y; http://[::1]:8000/v1"


def test_ordinary_text_is_left_alone():
    text = "--api-base http://gpu-box:8000/v1 --out me@home; Answer: B. mailto:me@example.org; ask-me-2"
    assert redact(text) == text


def test_whole_files_are_replaced_atomically_and_redacted(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    write_json(path, {"api_base": "http://u:topsecret@h/v1", "n": 1})
    assert json.loads(path.read_text()) == {"api_base": "http://u:***@h/v1", "n": 1}

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match=r"config\.json: cannot write: No space left on device"):
        write_text(path, "{}")
    assert json.loads(path.read_text())["n"] == 1  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # and no partial file is left behind


def test_whole_files_get_the_mode_an_ordinary_write_gives(tmp_path, monkeypatch):
    """The temporary file is private to its owner; the result must not stay so (a shared results folder),
    and a file rewritten keeps the mode someone gave it."""
    monkeypatch.setattr(files, "_NEW_FILE_MODE", 0o644)  # what umask 022 gives, whatever this machine's is
    new = tmp_path / "summary.json"
    write_json(new, {"n": 1})
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    new.chmod(0o640)
    write_json(new, {"n": 2})
    assert stat.S_IMODE(new.stat().st_mode) == 0o640


def test_appended_lines_are_one_line_each_and_redacted(tmp_path):
    path = tmp_path / "records.jsonl"
    append_line(path, json.dumps({"error": "ConnectionError: http://u:pw123456@h:1/v1"}))
    append_line(path, "two\nlines")
    assert path.read_text().splitlines() == ['{"error": "ConnectionError: http://u:***@h:1/v1"}', "two lines"]


def test_a_folder_where_a_file_should_be_is_one_clear_error(tmp_path):
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(OutputError, match=r"summary\.json: cannot write"):
        write_text(tmp_path / "summary.json", "{}")
    with pytest.raises(OutputError, match=r"summary\.json: cannot append"):
        append_line(tmp_path / "summary.json", "{}")
