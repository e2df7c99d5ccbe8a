"""Attacks on what only the Docker backend has (issue 10): the supervisor channel (forged replies
with and without ``fast_exec``), the uid separation between supervisor and command, and streamed
big writes. The attacks every backend must survive are in ``test_hostile_backends.py``.
"""

from __future__ import annotations

import ctypes
import platform
import sys
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest

from envkit.sandbox import DockerSandbox, SandboxConfig, SandboxFileError
from envkit.sandbox.pool import SandboxPool

sys.path.insert(0, str(Path(__file__).parent))
from forgery_support import FORGERY, assert_file_ops_refuse_streams

pytestmark = pytest.mark.docker


# ---------------------------------------------------------------------------------- forged replies
@pytest.mark.parametrize("fast_exec", [True, False], ids=["fast_exec", "one_exec_per_command"])
def test_file_ops_cannot_write_into_the_reply_stream(docker_client: Any, fast_exec: bool) -> None:
    with DockerSandbox(SandboxConfig(fast_exec=fast_exec)) as sb:
        assert_file_ops_refuse_streams(
            sb, ("/proc/self/fd/1", "/dev/stdout", "out", "/proc/1/fd/1")
        )


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


# ---------------------------------------------------------------------------------- host state
_LIBC = ctypes.CDLL(None, use_errno=True)

HOST_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("sys-writable", any(os.access(p, os.W_OK) for p in (
    "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger")))
try:
    keys = open("/proc/keys").read()
except OSError:
    keys = ""
print("keys", keys.replace("\\n", " "))
print("keyctl", libc.syscall(250, 0, -3, 0, 0, 0), ctypes.get_errno())  # KEYCTL_GET_KEYRING_ID
print("uid", os.getuid(), os.geteuid())
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="uses x86_64 syscall numbers")
def test_host_settings_keys_and_environment_are_out_of_reach(
    docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"envkit-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ENVKIT_TEST_SECRET", name)
    key = _LIBC.syscall(248, b"user", name.encode(), b"payload", 7, -3)  # add_key -> session
    try:
        with DockerSandbox() as sb:
            r = sb.exec(["python3", "-c", HOST_PROBE], timeout=20)
            assert "sys-writable False" in r.stdout and "uid 1000 1000" in r.stdout, r
            assert name not in r.stdout and "keyctl -1 1" in r.stdout, r  # EPERM (seccomp)
            for path in ("/proc/1/environ", "/proc/self/environ"):
                with pytest.raises(SandboxFileError):
                    sb.read_file(path)
            env = sb.exec("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
            assert name not in env
    finally:
        if key > 0:
            _LIBC.syscall(250, 21, key)  # KEYCTL_INVALIDATE: only the key this test planted


def test_unasked_bytes_on_a_channel_taint_the_sandbox(docker_client: Any) -> None:
    with SandboxPool(size=1) as pool:
        with pool.acquire() as sb:
            first = sb
            assert sb.exec("echo warm", timeout=10).stdout == "warm\n"
            assert sb._channels  # a live supervisor channel answered
            for ch in sb._channels:  # bytes that arrived when no reply was due
                ch._stdout += FORGERY
            r = sb.exec("echo real", timeout=10)
            assert r.stdout == "real\n", r  # sent another way, answered for real
            assert sb.tainted and "stream" in sb.tainted
        with pool.acquire() as sb:
            assert sb is not first and first.closed  # replaced, never reused
            assert sb.exec("echo fresh", timeout=10).stdout == "fresh\n"
