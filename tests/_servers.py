"""Helpers for tests that start a real server process on a loopback port."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds: a test never leaves a server
    behind, nor waits on one forever."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
