"""The supervisor fails closed: without its seccomp filter it runs nothing (issue 17).

The host builds the filter once (``envkit.sandbox.seccomp.supervisor_filter``) and hands its bytes
to every supervisor. A supervisor that gets no filter, or whose ``prctl`` fails, refuses every
request, and the host raises ``SandboxSeccompError``. The filter is made to fail for real: the
kernel rejects a program that does not end with a return (``EINVAL``), exactly as a kernel without
seccomp filters rejects any. The first tests run the real supervisor as a host process (no
sandbox); the last ones run real sandboxes of every backend.
"""

from __future__ import annotations

import marshal
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from envkit.sandbox import SandboxConfig
from envkit.sandbox.errors import SandboxSeccompError
from envkit.sandbox.registry import make_sandbox
from envkit.sandbox.seccomp import supervisor_filter
from envkit.sandbox.supervised import parse_reply, supervisor_source

BAD_FILTER = b"\0" * 8  # BPF_LD #0 and no return: every kernel rejects it with EINVAL
PYTHON = "/usr/bin/python3"
IO_URING = (
    "import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
    "fd = libc.syscall(425, 8, (ctypes.c_char * 120)()); print(fd, ctypes.get_errno())"
)


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory the sandbox user (nobody, when the tests run as root) may write in."""
    path = tempfile.mkdtemp(prefix="envkit-seccomp-test-")
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ids() -> dict[str, Any]:
    ids: dict[str, Any] = {"rid": secrets.token_hex(8)}
    if os.geteuid() == 0:  # as root the supervisor insists on a sandbox user
        ids.update(uid=65534, gid=65534)
    return ids


def _filters(status: str) -> int:
    """The number of seccomp filters in a /proc/PID/status text (Linux >= 5.9)."""
    for line in status.splitlines():
        if line.startswith("Seccomp_filters:"):
            return int(line.split()[1])
    pytest.skip("this kernel does not report Seccomp_filters (Linux < 5.9)")


def _run_spec(argv: list[str], cwd: str) -> dict[str, Any]:
    return {
        "op": "run",
        "argv": argv,
        "timeout": 20.0,
        "cap": 65536,
        "env": {"PATH": "/usr/bin:/bin"},
        "cwd": cwd,
        "id": secrets.token_hex(8),
        **_ids(),
    }


def _supervise(stdin: bytes) -> bytes:
    """Runs the real supervisor on this host with ``stdin``; returns its stdout."""
    proc = subprocess.run(
        [PYTHON, "-I", "-S", "-c", supervisor_source()],
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _oneshot(spec: dict[str, Any]) -> dict[str, Any]:
    body = marshal.dumps(spec, 2)
    reply = parse_reply(_supervise(len(body).to_bytes(4, "big") + body))
    assert reply is not None
    assert reply.get("rid") == spec["rid"]
    return reply


def test_the_filter_is_built_once_on_the_host() -> None:
    prog = supervisor_filter()
    assert len(prog) == 6 * 8 and prog == supervisor_filter()
    assert int.from_bytes(prog[-8:-6], "little") == 0x06  # the last instruction returns


def test_the_supervisor_installs_the_hosts_filter(shared_dir: str) -> None:
    spec = _run_spec(
        [PYTHON, "-c", f"{IO_URING}; print(open('/proc/self/status').read())"], shared_dir
    )
    reply = _oneshot({**spec, "seccomp": supervisor_filter()})
    assert reply["ok"] == 1 and reply["exit_code"] == 0, reply
    out = reply["stdout"].decode()
    fd, errno = map(int, out.split("\n", 1)[0].split())
    assert (fd, errno) == (-1, 1), out  # io_uring_setup: EPERM, from the filter
    with open("/proc/self/status") as f:
        ours = _filters(f.read())
    assert _filters(out) == ours + 1, out  # the supervisor stacked exactly its one
    assert "\nSeccomp:\t2\n" in out and "\nNoNewPrivs:\t1\n" in out, out


@pytest.mark.parametrize(
    ("seccomp", "refused", "errno"),
    [(None, "filter", 0), (b"\0" * 7, "filter", 0), (BAD_FILTER, "seccomp", 22)],
    ids=["no-filter", "truncated-filter", "filter-the-kernel-rejects"],
)
def test_without_its_filter_the_supervisor_runs_nothing(
    shared_dir: str, seccomp: bytes | None, refused: str, errno: int
) -> None:
    spec = _run_spec(["/bin/sh", "-c", "echo ran > ran"], shared_dir)
    if seccomp is not None:
        spec["seccomp"] = seccomp
    reply = _oneshot(spec)
    assert reply["ok"] == 0 and reply["refused"] == refused and reply["errno"] == errno, reply
    assert "exit_code" not in reply
    assert not os.path.exists(os.path.join(shared_dir, "ran"))


def test_a_serving_supervisor_without_its_filter_refuses_every_request(shared_dir: str) -> None:
    hello = marshal.dumps({"op": "serve", "seccomp": BAD_FILTER}, 2)
    stdin = len(hello).to_bytes(4, "big") + hello
    specs = [
        _run_spec(["/bin/sh", "-c", "echo ran > ran"], shared_dir),
        {"op": "killall", **_ids()},
    ]
    for spec in specs:
        body, payload = marshal.dumps(spec, 2), b"some stdin"
        stdin += len(body).to_bytes(4, "big") + len(payload).to_bytes(4, "big") + body + payload
    out = _supervise(stdin)
    for spec in specs:
        size = int.from_bytes(out[:4], "big")
        reply = parse_reply(out[4 : 4 + size])
        out = out[4 + size :]
        assert reply is not None and reply["rid"] == spec["rid"], reply
        assert reply["ok"] == 0 and reply["refused"] == "seccomp", reply
    assert out == b""
    assert not os.path.exists(os.path.join(shared_dir, "ran"))


# ---------------------------------------------------------------------------------- backends
def _exists(sb: Any, path: str) -> bool:
    """Whether ``path`` exists in the sandbox, looked up without its supervisor."""
    if sb.kind == "local":
        return os.path.exists(os.path.join(sb.host_dir, os.path.relpath(path, sb.config.workdir)))
    api = sb._client.api
    exec_id = api.exec_create(sb.container_id, ["test", "-e", path], user="0:0")["Id"]
    api.exec_start(exec_id)
    return api.exec_inspect(exec_id)["ExitCode"] == 0


@pytest.mark.parametrize("fast_exec", [True, False], ids=["fast-exec", "no-fast-exec"])
def test_a_sandbox_whose_filter_fails_refuses_to_run_commands(
    backend: str, fast_exec: bool
) -> None:
    if backend == "local" and not fast_exec:
        pytest.skip("LocalSandbox has one path: a supervisor per command")
    sb = make_sandbox(backend, SandboxConfig(fast_exec=fast_exec))
    try:
        sb._supervisor_filter = BAD_FILTER  # type: ignore[attr-defined]
        with pytest.raises(SandboxSeccompError) as info:
            sb.exec("echo ran > /work/ran", timeout=20)
        message = str(info.value)
        assert f"The {backend} sandbox refused to run anything" in message
        assert "prctl(PR_SET_SECCOMP) failed (errno 22" in message
        assert "CONFIG_SECCOMP_FILTER" in message  # how to fix it
        with pytest.raises(SandboxSeccompError):  # and it stays refused
            sb.write_files({"x.txt": "data"}, timeout=20)
        assert sb.broken and not _exists(sb, "/work/ran") and not _exists(sb, "/work/x.txt")
    finally:
        sb.close()


def _backend_filters(sb: Any) -> int:
    """How many seccomp filters the backend alone puts on a process of the sandbox."""
    if sb.kind == "local":  # this process's, plus bubblewrap's
        with open("/proc/self/status") as f:
            return _filters(f.read()) + 1
    api = sb._client.api  # a plain docker exec: Docker's default profile only
    exec_id = api.exec_create(sb.container_id, ["cat", "/proc/self/status"], user="0:0")["Id"]
    return _filters(api.exec_start(exec_id).decode())


def test_every_command_runs_under_the_supervisors_filter(backend: str) -> None:
    sb = make_sandbox(backend, SandboxConfig())
    try:
        r = sb.exec(["python3", "-c", f"{IO_URING}; print(open('/proc/self/status').read())"])
        assert r.stdout.split("\n", 1)[0].split() == ["-1", "1"], r  # io_uring_setup: EPERM
        assert _filters(r.stdout) == _backend_filters(sb) + 1, r.stdout
        assert "\nNoNewPrivs:\t1\n" in r.stdout, r.stdout
    finally:
        sb.close()
