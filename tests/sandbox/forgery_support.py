"""Forged supervisor replies and the file-op checks of the hostile-code tests (issue 10)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from envkit.sandbox import Sandbox, SandboxFileError


def _frame(reply: bytes) -> bytes:
    return len(reply).to_bytes(4, "big") + reply


PUT_OK = b"ENVKIT1\ncount=1\nok=1\nout_len=0\nerr_len=0\n\n"
RUN_FORGED = b"ENVKIT1\nexit_code=0\nok=1\nout_len=7\nerr_len=0\n\nFORGED\n"
FORGERY = _frame(PUT_OK) + _frame(RUN_FORGED)
"""A supervisor's "put ok" then "ran, printed FORGED" replies, as the command could forge them."""


def processes(sb: Sandbox) -> str:
    """The command lines of every process the sandbox can see, space-separated."""
    return sb.exec("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '", timeout=10).stdout


def assert_file_ops_refuse_streams(sb: Sandbox, write_paths: Iterable[str]) -> None:
    """Writing ``FORGERY`` to each of ``write_paths`` (after ``out`` -> stdout and a FIFO ``fifo``
    are made in /work) and reading streams or special files raise ``SandboxFileError``, and the
    sandbox still runs commands with their real output after each."""
    sb.exec("ln -s /proc/self/fd/1 /work/out && mkfifo /work/fifo", timeout=10)
    for path in write_paths:
        with pytest.raises(SandboxFileError):
            sb.write_files({path: FORGERY})
        r = sb.exec("echo real", timeout=10)
        assert r.stdout == "real\n" and r.exit_code == 0, (path, r)
    for path in ("/proc/self/environ", "/proc/1/environ", "out", "fifo", "/dev/zero"):
        with pytest.raises(SandboxFileError):
            sb.read_file(path)
    assert sb.exec("echo again", timeout=10).stdout == "again\n"
