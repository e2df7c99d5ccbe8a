"""Attacks on what only the Docker backend has (issue 10): the supervisor channel (forged replies
with and without ``fast_exec``), the uid separation between supervisor and command, and streamed
big writes. The attacks every backend must survive are in ``test_hostile_backends.py``.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from envkit.sandbox import DockerSandbox, SandboxConfig, SandboxFileError

pytestmark = pytest.mark.docker


def _frame(reply: bytes) -> bytes:
    return len(reply).to_bytes(4, "big") + reply


PUT_OK = b"ENVKIT1\ncount=1\nok=1\nout_len=0\nerr_len=0\n\n"
RUN_FORGED = b"ENVKIT1\nexit_code=0\nok=1\nout_len=7\nerr_len=0\n\nFORGED\n"
FORGERY = _frame(PUT_OK) + _frame(RUN_FORGED)


def _processes(sb: DockerSandbox) -> str:
    return sb.exec("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '", timeout=10).stdout


# ---------------------------------------------------------------------------------- forged replies
@pytest.mark.parametrize("fast_exec", [True, False], ids=["fast_exec", "one_exec_per_command"])
def test_file_ops_cannot_write_into_the_reply_stream(docker_client: Any, fast_exec: bool) -> None:
    with DockerSandbox(SandboxConfig(fast_exec=fast_exec)) as sb:
        sb.exec("ln -s /proc/self/fd/1 /work/out && mkfifo /work/fifo", timeout=10)
        for path in ("/proc/self/fd/1", "/dev/stdout", "out", "/proc/1/fd/1"):
            with pytest.raises(SandboxFileError):
                sb.write_files({path: FORGERY})
            r = sb.exec("echo real", timeout=10)
            assert r.stdout == "real\n" and r.exit_code == 0, (path, r)
        for path in ("/proc/self/environ", "/proc/1/environ", "out", "fifo", "/dev/zero"):
            with pytest.raises(SandboxFileError):
                sb.read_file(path)
        assert sb.exec("echo again", timeout=10).stdout == "again\n"


# ---------------------------------------------------------------------------------- uid separation
def test_commands_cannot_signal_or_inspect_their_supervisor(docker_client: Any) -> None:
    with DockerSandbox() as sb:
        r = sb.exec("stat -c %u /proc/$PPID; kill -STOP $PPID; echo rc=$?", timeout=10)
        owner = r.stdout.split()[0]
        assert owner != str(sb.config.uid) and "rc=1" in r.stdout, r
        assert sb.exec("echo ok", timeout=10).stdout == "ok\n"


def test_big_write_is_streamed(docker_client: Any) -> None:
    size = 120 << 20
    data = b"z" * size
    with DockerSandbox(SandboxConfig(memory="1g", workdir_size="200m")) as sb:
        sb.exec("true")
        tracemalloc.start()
        try:
            sb.write_files({"big.bin": data})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < size // 4, f"writing {size} bytes allocated {peak} bytes on the host"
        assert sb.exec("stat -c %s big.bin", timeout=10).stdout.strip() == str(size)
