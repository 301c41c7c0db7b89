"""The `guided-profile` command: one module per subcommand, each with `add_parser` and `main`.

Each subcommand parses its options, calls one library function (`guided_profile.runs` for run,
compare and optimize; `bench`, the store and the task registry for the others) and prints what it
returns; it holds no logic of its own.  Options shared by several subcommands live in `common`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings

from guided_profile.cli import bench, compare, optimize, profiles, run, tasks
from guided_profile.errors import DataWarning, GuidedProfileError, Interrupted
from guided_profile.redaction import redact

SUBCOMMANDS = [run, optimize, compare, bench, profiles, tasks]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guided-profile",
        description="Guided Profile Generation (GPG) for LLM personalization, as DSPy programs.",
        epilog="Run `guided-profile COMMAND --help` for the options of each command.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub).set_defaults(handler=module.main)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our data warnings as one line a person reads; any other warning as Python prints it."""
    if issubclass(category, DataWarning):
        print(f"warning: {redact(str(message))}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def _terminate(signum, frame) -> None:
    """SIGTERM stops a run the way Ctrl-C does (see `errors.Interrupted`)."""
    raise Interrupted("SIGTERM", 128 + signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what results record as their command, also when called from Python
    previous = signal.signal(signal.SIGTERM, _terminate) if _in_main_thread() else None
    try:
        return args.handler(args)
    except GuidedProfileError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)  # a message may quote a URL with its password
        return 2
    except KeyboardInterrupt as exc:
        name, code = getattr(exc, "signal_name", "SIGINT"), getattr(exc, "exit_code", 128 + signal.SIGINT)
        print(f"interrupted ({name}): every finished example is saved; rerun the same command to resume",
              file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def entry() -> None:
    """The `guided-profile` command.  After an interrupt the process exits at once: requests still in flight
    run on threads that cannot be stopped, and a normal exit would wait for every one of them."""
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # nothing is left to write: records are synced line by line, other files renamed whole
    sys.exit(code)


if __name__ == "__main__":
    entry()
