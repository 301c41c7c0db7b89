"""Errors a person can act on: each names the file and the record that caused it."""


class GuidedProfileError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class DataError(GuidedProfileError):
    """A data file is missing, malformed, or a record lacks what the task needs."""

    def __init__(self, path: object, message: str, record: object | None = None):
        where = f"{path}" if record is None else f"{path}, record {record!r}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.record = record


class ConfigError(GuidedProfileError):
    """An option, a model name or a saved program does not fit what was asked."""


class OutputError(GuidedProfileError):
    """A result file or folder cannot be written (full disk, read-only file, a file where a folder should be)."""


class DataWarning(UserWarning):
    """The data loaded, but something in it probably is not what its author meant (the CLI prints one line)."""
