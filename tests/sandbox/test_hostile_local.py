"""Hostile code in the bubblewrap backend (``LocalSandbox``), run as CI runs it: often as root.

Never writes a host setting: a host file is proven out of reach with ``os.access(..., W_OK)`` and
an ``open(O_WRONLY)`` attempt that writes nothing, and secrets are values this test plants itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import uuid
from collections.abc import Iterator

import pytest

from envkit.sandbox import SandboxConfig, SandboxFileError
from envkit.sandbox.local_sandbox import LocalSandbox

root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="the finding is about envkit running as root"
)

_LIBC = ctypes.CDLL(None, use_errno=True)
_KEY_SPEC_SESSION_KEYRING = -3
_KEYCTL_INVALIDATE = 21


@pytest.fixture(scope="module")
def sb() -> Iterator[LocalSandbox]:
    with LocalSandbox(SandboxConfig(pids=64, workdir_size="32m", tmp_size="8m")) as box:
        yield box


def _py(sb: LocalSandbox, code: str, timeout: float = 20) -> str:
    r = sb.exec(["python3", "-c", code], timeout=timeout)
    assert r.exit_code == 0, r.describe()
    return r.stdout


# ------------------------------------------------------------------------------- host settings
_HOST_SETTINGS = [
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/panic",
    "/proc/sys/vm/drop_caches",
    "/proc/sys/kernel/modprobe",
    "/proc/sysrq-trigger",
]

# Opens each path for writing and closes it at once, writing nothing (no setting changes).
_PROBE_WRITABLE = """
import os
for p in {paths!r}:
    if not os.path.exists(p):
        continue
    ok = os.access(p, os.W_OK)
    try:
        os.close(os.open(p, os.O_WRONLY))
        opened = True
    except OSError:
        opened = False
    print(p, ok, opened)
"""


def test_host_kernel_settings_are_read_only(sb: LocalSandbox) -> None:
    out = _py(sb, _PROBE_WRITABLE.format(paths=_HOST_SETTINGS))
    lines = out.splitlines()
    assert len(lines) >= 3, out  # the probe saw the files (a missing /proc proves nothing)
    assert all(line.endswith(" False False") for line in lines), out


def test_mounts_outside_the_work_dir_are_read_only_and_sized(sb: LocalSandbox) -> None:
    r = sb.exec("touch /evil; touch /dev/evil; touch /proc/sys/kernel/panic", timeout=10)
    assert r.stderr.count("Read-only file system") + r.stderr.count("Permission denied") == 3, r
    # /dev/shm and /tmp are tmpfs of bounded size, not the unbounded tmpfs bubblewrap makes
    r = sb.exec("df -k --output=size,target /dev/shm /tmp", timeout=10)
    sizes = {t: int(s) for s, t in (line.split() for line in r.stdout.splitlines()[1:])}
    assert sizes["/tmp"] <= 8 * 1024 and sizes["/dev/shm"] <= 16 * 1024, r.stdout


# ------------------------------------------------------------------------------- secrets
def test_envkit_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"planted-{uuid.uuid4().hex}"
    monkeypatch.setenv("ENVKIT_TEST_PLANTED_SECRET", secret)
    with LocalSandbox() as box:  # made and run while this process has the secret
        r = box.exec("env; cat /proc/1/environ /proc/self/environ /proc/[0-9]*/environ", timeout=10)
        assert secret not in r.stdout + r.stderr
        for path in ("/proc/1/environ", "/proc/self/environ"):
            with contextlib.suppress(SandboxFileError, FileNotFoundError):  # unreadable: fine
                assert secret.encode() not in box.read_file(path)


def test_host_keyring_is_out_of_reach(sb: LocalSandbox) -> None:
    name = f"envkit-test-{uuid.uuid4().hex[:12]}"
    key = _LIBC.syscall(248, b"user", name.encode(), b"planted", 7, _KEY_SPEC_SESSION_KEYRING)
    if key < 0:
        pytest.skip(f"add_key is not allowed here (errno {ctypes.get_errno()})")
    try:
        with open("/proc/keys") as keys:
            assert name in keys.read()  # the host sees it: the probe can fail
        out = _py(
            sb,
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "buf = ctypes.create_string_buffer(64)\n"
            f"n = libc.syscall(250, 11, {key}, buf, 64)\n"  # KEYCTL_READ
            "print('read', n, buf.value)\n"
            "print(open('/proc/keys').read())\n",
        )
        assert name not in out and "planted" not in out, out
        assert out.startswith("read -1 "), out
    finally:
        _LIBC.syscall(250, _KEYCTL_INVALIDATE, key)


# ------------------------------------------------------------------------------- syscalls
# (name, code run inside, errno expected): each must fail with EPERM (ENOSYS for clone3, so libc
# falls back to clone, whose flags the filter can see).
_SYSCALL_PROBE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
NR = {nr!r}
def call(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(NR[name], *[ctypes.c_long(a) for a in args])
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())) if r < 0 else "ok"
print("unshare_user", call("unshare", 0x10000000))
print("unshare_net", call("unshare", 0x40000000))
print("clone_newuser", call("clone", 0x10000000 | 17, 0, 0, 0, 0))
print("clone3", call("clone3", 0, 0))
print("setns", call("setns", 0, 0))
print("perf_event_open", call("perf_event_open", 0, 0, -1, -1, 0))
print("userfaultfd", call("userfaultfd", 0))
print("io_uring_setup", call("io_uring_setup", 1, 0))
print("keyctl", call("keyctl", 0, -3, 0))
print("add_key", call("add_key", 0, 0, 0, 0, -3))
print("bpf", call("bpf", 0, 0, 0))
print("mount", call("mount", 0, 0, 0, 0, 0))
print("ptrace", call("ptrace", 16, 1, 0, 0))
print("kexec_load", call("kexec_load", 0, 0, 0, 0))
print("process_vm_readv", call("process_vm_readv", 1, 0, 0, 0, 0, 0))
pid = os.fork()
if pid == 0:
    os._exit(0)
print("fork", "ok" if os.waitpid(pid, 0)[1] == 0 else "failed")
"""

_NR = {
    "x86_64": {
        "unshare": 272, "clone": 56, "clone3": 435, "setns": 308, "perf_event_open": 298,
        "userfaultfd": 323, "io_uring_setup": 425, "keyctl": 250, "add_key": 248, "bpf": 321,
        "mount": 165, "ptrace": 101, "kexec_load": 246, "process_vm_readv": 310,
    },
    "aarch64": {
        "unshare": 97, "clone": 220, "clone3": 435, "setns": 268, "perf_event_open": 241,
        "userfaultfd": 282, "io_uring_setup": 425, "keyctl": 219, "add_key": 217, "bpf": 280,
        "mount": 40, "ptrace": 117, "kexec_load": 104, "process_vm_readv": 270,
    },
}  # fmt: skip


def test_dangerous_syscalls_are_denied(sb: LocalSandbox) -> None:
    arch = os.uname().machine
    if arch not in _NR:
        pytest.skip(f"no syscall table for {arch} in this test")
    out = _py(sb, _SYSCALL_PROBE.format(nr=_NR[arch]))
    got = dict(line.split() for line in out.splitlines())
    expected = {name: "EPERM" for name in got}
    expected.update(clone3="ENOSYS", fork="ok")
    assert got == expected
    status = sb.exec("grep Seccomp: /proc/self/status").stdout
    assert status.split() == ["Seccomp:", "2"]
    # the usual tools still work under the filter: threads, subprocesses, a shell pipeline
    code = (
        "import subprocess, threading\nt = threading.Thread(target=print, args=('thread',))\n"
        "t.start(); t.join()\nprint(subprocess.run(['echo', 'sub'], capture_output=True, "
        "text=True).stdout, end='')"
    )
    assert _py(sb, code) == "thread\nsub\n"
    assert sb.exec("unshare -U true; echo rc=$?").stdout == "rc=1\n"


# ------------------------------------------------------------------------------- limits
def test_work_dir_has_a_total_size_limit(sb: LocalSandbox) -> None:
    """workdir_size=32m: many files below the per-file limit still stop at 32 MiB in all."""
    r = sb.exec(
        "for i in 1 2 3 4; do head -c 12M /dev/zero > /work/f$i || echo failed; done; du -sm /work",
        timeout=60,
    )
    assert "failed" in r.stdout and "No space left" in r.stderr, r.describe()
    assert int(r.stdout.split()[-2]) <= 32
    with pytest.raises(SandboxFileError):
        sb.write_files({"big.bin": b"\0" * (40 << 20)})
    sb.exec("rm -f /work/f* /work/big.bin")
    assert sb.exec("echo ok > /work/ok && cat /work/ok").stdout == "ok\n"


@root_only
def test_process_limit_applies_as_root(sb: LocalSandbox) -> None:
    """pids=64: the 100 sleepers a hostile command asks for are not all started."""
    code = (
        "import os, time\nstarted = 0\nfor _ in range(100):\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
        "    started += 1\nprint(started)"
    )
    r = sb.exec(["python3", "-c", code], timeout=20)
    assert r.exit_code == 0, r.describe()
    assert int(r.stdout) < 64, r.stdout
    assert sb.exec("echo alive", timeout=10).stdout == "alive\n"  # the sleepers are gone


def test_user_mode_keeps_the_work_dir_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: bubblewrap runs as the calling user, and the work dir is still a sized tmpfs
    (in a user namespace the user owns). Exercised here by taking the non-root code path."""
    monkeypatch.setattr("envkit.sandbox.local_sandbox._as_root", lambda: False)
    with LocalSandbox(SandboxConfig(workdir_size="16m")) as box:
        assert box.host_uid is None
        r = box.exec(
            "for i in 1 2 3; do head -c 7M /dev/zero > f$i || echo failed; done", timeout=30
        )
        assert "failed" in r.stdout and "No space left" in r.stderr, r.describe()
        assert box.exec("ls; grep Seccomp: /proc/self/status").stdout == "f1\nf2\nf3\nSeccomp:\t2\n"
