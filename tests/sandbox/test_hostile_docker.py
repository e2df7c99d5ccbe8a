"""Attacks found by a hostile probe of the Docker backend (issue 10), each one a regression test.

Forged supervisor replies, a pool scrub defeated by ``chmod``, a supervisor stopped by the code
it runs, ``setsid`` + ``env -i`` escapes, FIFOs that block file operations, unbounded host memory
for big writes and ``io_uring``. None of them may raise an ``InfraError`` or leak into the next
episode. Every test only touches its own sandboxes.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from envkit.errors import InfraError
from envkit.sandbox import DockerSandbox, SandboxConfig, SandboxFileError
from envkit.sandbox.pool import SandboxPool

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


def test_forged_output_never_reaches_the_next_episode(docker_client: Any) -> None:
    with SandboxPool(size=1) as pool:
        with pool.acquire() as sb:
            first = sb
            with pytest.raises(SandboxFileError):
                sb.write_files({"/proc/self/fd/1": FORGERY * 4})
            sb.exec("sleep 1000 >/dev/null 2>&1 & echo secret > /work/s", timeout=10)
        with pool.acquire() as sb:
            assert sb is first or not first.alive()
            r = sb.exec("echo real; ls -A /work", timeout=10)
            assert r.stdout == "real\n", r
            assert "sleep 1000" not in _processes(sb)


# ---------------------------------------------------------------------------------- pool scrub
@pytest.mark.parametrize("mode", ["300", "000", "500"])
def test_chmod_of_the_work_dir_does_not_defeat_the_scrub(docker_client: Any, mode: str) -> None:
    with SandboxPool(size=1) as pool:
        with pool.acquire() as sb:
            sb.exec(
                f"mkdir -p /work/d && echo LEFT > /work/n && chmod 000 /work/d; chmod {mode} /work"
            )
        for _ in range(2):
            with pool.acquire() as sb:
                sb.write_files({"task.txt": "new"})  # what env.reset does: never SandboxFileError
                r = sb.exec("cat /work/n; ls -A /work; stat -c %a /work", timeout=10)
                assert "LEFT" not in r.stdout and r.stdout.split() == ["task.txt", "700"], r
                sb.exec(f"chmod {mode} /work")


# ---------------------------------------------------------------------------------- the supervisor
STOPPER = """
import os, signal
sup = os.getppid()
for _ in range(400):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        while True:
            try:
                os.kill(sup, signal.SIGSTOP)
            except OSError:
                pass
while True:
    pass
"""


def test_stopping_the_supervisor_is_the_models_failure(docker_client: Any) -> None:
    with DockerSandbox() as sb:
        try:
            r = sb.exec(["python3", "-c", STOPPER], timeout=3)
        except InfraError as e:  # pragma: no cover - the failure being tested
            pytest.fail(f"model code caused an infrastructure error: {e!r}")
        assert r.exit_code != 0 and r.timed_out, r
        assert sb.broken is None
        assert sb.exec("echo alive", timeout=20).stdout == "alive\n"
        assert "python3 -c" not in _processes(sb)


def test_commands_cannot_signal_or_inspect_their_supervisor(docker_client: Any) -> None:
    with DockerSandbox() as sb:
        r = sb.exec("stat -c %u /proc/$PPID; kill -STOP $PPID; echo rc=$?", timeout=10)
        owner = r.stdout.split()[0]
        assert owner != str(sb.config.uid) and "rc=1" in r.stdout, r
        assert sb.exec("echo ok", timeout=10).stdout == "ok\n"


def test_setsid_and_env_i_children_die_at_the_timeout(docker_client: Any) -> None:
    with DockerSandbox() as sb:
        r = sb.exec(
            "setsid env -i sh -c 'sleep 1231' & "
            "env -i setsid sh -c 'sleep 1232 & sleep 1233' & "
            'python3 -c "import os\nif os.fork() == 0:\n os.setsid()\n'
            " os.execve('/bin/sleep', ['sleep', '1234'], {})\"; sleep 100",
            timeout=1.5,
        )
        assert r.timed_out
        left = _processes(sb)
        assert not any(f"sleep 123{i}" in left for i in range(1, 5)), left


# ---------------------------------------------------------------------------------- file ops
def test_read_file_on_a_fifo_does_not_block(docker_client: Any) -> None:
    with DockerSandbox() as sb:
        sb.exec("mkfifo /work/p", timeout=10)
        with pytest.raises(SandboxFileError, match="not a regular file"):
            sb.read_file("p")
        with pytest.raises(SandboxFileError, match="not a regular file"):
            sb.write_files({"p": "x"})
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


# ---------------------------------------------------------------------------------- io_uring
IO_URING = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = (ctypes.c_char * 120)()
fd = libc.syscall(425, 8, params)
print(fd, ctypes.get_errno())
"""


def test_io_uring_is_denied(docker_client: Any) -> None:
    with DockerSandbox() as sb:
        r = sb.exec(["python3", "-c", IO_URING], timeout=10)
        fd, errno = map(int, r.stdout.split())
        assert fd == -1 and errno in (1, 38), r  # EPERM or ENOSYS
