"""Hostile code against every backend (Docker and bubblewrap), from a probe of issue 10.

Forged supervisor replies through file operations, FIFOs that would block them, a pool scrub
defeated by ``chmod``, a supervisor stopped by the code it runs, ``setsid`` + ``env -i`` escapes
and ``io_uring``. None of them may raise an ``InfraError`` or leak into the next episode. Every
test only touches sandboxes it made.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from envkit.errors import InfraError
from envkit.sandbox import Sandbox, SandboxFileError
from envkit.sandbox.pool import SandboxPool

sys.path.insert(0, str(Path(__file__).parent))
from forgery_support import FORGERY, assert_file_ops_refuse_streams
from forgery_support import processes as _processes


# ---------------------------------------------------------------------------------- file ops
def test_file_ops_refuse_streams_links_and_special_files(any_sandbox: Sandbox) -> None:
    sb = any_sandbox
    assert_file_ops_refuse_streams(
        sb, ("/proc/self/fd/1", "/dev/stdout", "out", "/proc/1/fd/1", "fifo")
    )
    sb.write_files({"sub/ok.txt": "fine"})  # ordinary files still work
    assert sb.read_file("sub/ok.txt") == b"fine"


def test_read_file_on_a_fifo_does_not_block(any_sandbox: Sandbox) -> None:
    any_sandbox.exec("mkfifo /work/p", timeout=10)
    with pytest.raises(SandboxFileError, match="not a regular file"):
        any_sandbox.read_file("p", timeout=30)
    with pytest.raises(SandboxFileError, match="not a regular file"):
        any_sandbox.write_files({"p": "x"}, timeout=30)
    assert any_sandbox.exec("echo ok", timeout=10).stdout == "ok\n"


# ---------------------------------------------------------------------------------- pool scrub
def test_forged_output_never_reaches_the_next_episode(backend: str) -> None:
    with SandboxPool(size=1, backend=backend) as pool:
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


@pytest.mark.parametrize("mode", ["300", "000", "500"])
def test_chmod_of_the_work_dir_does_not_defeat_the_scrub(backend: str, mode: str) -> None:
    with SandboxPool(size=1, backend=backend) as pool:
        with pool.acquire() as sb:
            sb.exec(f"mkdir -p /work/d && echo LEFT > /work/n && chmod 000 /work/d; chmod {mode} .")
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


def test_stopping_the_supervisor_is_the_models_failure(any_sandbox: Sandbox) -> None:
    sb = any_sandbox
    try:
        r = sb.exec(["python3", "-c", STOPPER], timeout=3)
    except InfraError as e:  # pragma: no cover - the failure being tested
        pytest.fail(f"model code caused an infrastructure error: {e!r}")
    assert r.exit_code != 0 and r.timed_out, r
    try:
        follow_up = sb.exec("echo alive", timeout=20)
    except InfraError as e:  # pragma: no cover - the failure being tested
        pytest.fail(f"the next command raised an infrastructure error: {e!r}")
    assert follow_up.stdout == "alive\n" or "sandbox is gone" in follow_up.stderr, follow_up
    if follow_up.ok:
        assert "python3 -c" not in _processes(sb)


@pytest.mark.parametrize(
    "attack",
    [
        "kill -9 -1",
        "kill -9 $PPID",
        "kill -STOP $PPID; sleep 0.2",
        "exec 1>&-; exec 2>&-; sleep 0.1",
        "python3 -c 'import os; os.closerange(0, 1000)'",
        "printf 'ENVKIT1\\nok=1\\n\\n'",
    ],
)
def test_hostile_commands_never_raise_infra_errors(any_sandbox: Sandbox, attack: str) -> None:
    try:
        any_sandbox.exec(attack, timeout=3)
        r = any_sandbox.exec("echo alive", timeout=20)
    except InfraError as e:  # pragma: no cover - the failure being tested
        pytest.fail(f"{attack!r} raised {e!r}")
    assert r.stdout == "alive\n", r


def test_setsid_and_env_i_children_die_at_the_timeout(any_sandbox: Sandbox) -> None:
    r = any_sandbox.exec(
        "setsid env -i sh -c 'sleep 1231' & "
        "env -i setsid sh -c 'sleep 1232 & sleep 1233' & "
        'python3 -c "import os\nif os.fork() == 0:\n os.setsid()\n'
        " os.execve('/bin/sleep', ['sleep', '1234'], {})\"; sleep 100",
        timeout=1.5,
    )
    assert r.timed_out
    left = _processes(any_sandbox)
    assert not any(f"sleep 123{i}" in left for i in range(1, 5)), left


# ---------------------------------------------------------------------------------- io_uring
IO_URING = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = (ctypes.c_char * 120)()
fd = libc.syscall(425, 8, params)
print(fd, ctypes.get_errno())
"""


def test_io_uring_is_denied(any_sandbox: Sandbox) -> None:
    r = any_sandbox.exec(["python3", "-c", IO_URING], timeout=10)
    fd, errno = map(int, r.stdout.split())
    assert fd == -1 and errno in (1, 38), r  # EPERM or ENOSYS
