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


class RunFolderError(GuidedProfileError):
    """A run folder's file cannot be used as a run keeps it (cut short, edited, of another kind, unwritable)."""


class FolderInUse(RunFolderError):
    """Another process is writing to this run folder (two writers would duplicate records)."""


class EndpointDown(GuidedProfileError):
    """The model's server cannot be reached: the first examples all failed to connect."""


class RunFolderWarning(DataWarning):
    """A line of records.jsonl is skipped (cut short or not a record); it stays in the file, its example is redone."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every layer stops the same way; `exit_code` is what the command returns."""

    def __init__(self, signal_name: str = "SIGINT", exit_code: int = 130):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = exit_code
