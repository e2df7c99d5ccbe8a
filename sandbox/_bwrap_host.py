"""The host side of ``LocalSandbox``: who bubblewrap runs as, and the size-limited work dir.

Each ``LocalSandbox`` owns a *work dir namespace*: a private mount namespace in which a tmpfs of
``workdir_size`` is mounted on the sandbox's host directory. A short-lived helper (``unshare``)
creates it; envkit keeps only a file descriptor of it, so the kernel frees the tmpfs as soon as
envkit closes the sandbox or dies, and nothing is ever mounted in the host's own namespace.
Every ``bwrap`` starts inside that namespace (``setns``), so ``/work`` keeps its files between
commands and never holds more than ``workdir_size``.

As root, bubblewrap itself runs as an unprivileged host uid of its own (one per sandbox, taken at
random from ``UID_RANGE``): sandboxed code then owns nothing on the host, ``/proc/sys`` is not
writable, and ``RLIMIT_NPROC`` counts exactly this sandbox's processes. As another user,
bubblewrap runs as that user, inside a user namespace that owns the work dir namespace.

Each ``bwrap`` also gets a new, empty session keyring and no environment (``env -i``): neither
envkit's keys nor its environment (API keys) are reachable from inside.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import secrets
import subprocess
from collections.abc import Callable

__all__ = ["UID_RANGE", "WorkdirNamespace", "pick_uid", "spawn_setup"]

UID_RANGE = range(2_000_000_000, 2_000_000_000 + (1 << 26))
"""Host uids a root-run ``LocalSandbox`` picks from (below 2**31: bubblewrap prints uids as int)."""

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_KEYCTL_JOIN_SESSION_KEYRING = 1
_NR_KEYCTL = {"x86_64": 250, "aarch64": 219}
_LIBC = ctypes.CDLL(None, use_errno=True)
_MOUNT_SCRIPT = 'mount -t tmpfs -o "$2" envkit-work "$1" && echo ready && read _ ; exit 0'


def pick_uid() -> int:
    """A random host uid from ``UID_RANGE`` for one sandbox (its gid is the same number)."""
    return UID_RANGE.start + secrets.randbelow(len(UID_RANGE))


class WorkdirNamespace:
    """A private mount namespace with a ``size``-byte tmpfs on ``path``, held by file descriptors.

    Args:
        path: The (empty) host directory the tmpfs covers inside the namespace.
        size: Bytes the tmpfs may hold.
        owner: ``(uid, gid)`` that owns the tmpfs root, or ``None`` when not root (a user
            namespace is made too, in which the caller is root).

    Raises:
        OSError: the namespace could not be made (the message says why).
    """

    def __init__(self, path: str, size: int, owner: tuple[int, int] | None) -> None:
        self.fds: list[tuple[int, int]] = []  # (fd, CLONE_NEW* type), in setns order
        flags = ["--mount", "--propagation", "private"]
        if owner is None:
            flags = ["--user", "--map-root-user", *flags]
            uid, gid = 0, 0
        else:
            uid, gid = owner
        opts = f"size={size},mode=0700,uid={uid},gid={gid},nosuid,nodev"
        try:
            helper = subprocess.Popen(
                ["unshare", *flags, "--", "/bin/sh", "-c", _MOUNT_SCRIPT, "envkit", path, opts],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                start_new_session=True,
            )
        except OSError as e:
            raise OSError(f"cannot run `unshare` (util-linux) to make the work dir: {e}") from e
        try:
            assert helper.stdout and helper.stdin
            if helper.stdout.readline() != b"ready\n":
                helper.wait(timeout=10)
                err = (
                    helper.stderr.read().decode("utf-8", "replace").strip() if helper.stderr else ""
                )
                raise OSError(
                    f"cannot mount the size-limited work dir ({err or 'no reason given'})"
                )
            if owner is None:
                self.fds.append(
                    (os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY), _CLONE_NEWUSER)
                )
            self.fds.append((os.open(f"/proc/{helper.pid}/ns/mnt", os.O_RDONLY), _CLONE_NEWNS))
        except BaseException:
            self.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                helper.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.wait(timeout=10)
            for f in (helper.stdout, helper.stderr):
                if f is not None:
                    f.close()

    def close(self) -> None:
        """Drops the namespace (the kernel frees the tmpfs once no command runs in it)."""
        fds, self.fds = self.fds, []
        for fd, _ in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def spawn_setup(
    ns: WorkdirNamespace | None,
    uid: int | None,
    limits: list[tuple[int, int]],
) -> Callable[[], None]:
    """The ``preexec_fn`` that prepares a forked child to exec ``bwrap``.

    In order: enter the work dir namespace, drop to ``uid`` (its own gid, no groups) when given,
    join a new empty session keyring, set the rlimits. Runs between fork and exec, so it only
    calls the kernel.
    """
    fds = list(ns.fds) if ns is not None else []
    setns = _LIBC.setns
    keyctl_nr = _NR_KEYCTL.get(os.uname().machine)
    syscall = _LIBC.syscall

    def setup() -> None:
        for fd, kind in fds:
            if setns(fd, kind) != 0:
                raise OSError(ctypes.get_errno(), "setns into the sandbox's work dir namespace")
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        if keyctl_nr is not None and syscall(keyctl_nr, _KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            raise OSError(ctypes.get_errno(), "cannot join a new session keyring")
        for res, value in limits:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(res, (value, value))

    return setup
