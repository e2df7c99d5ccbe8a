"""``LocalSandbox``: bubblewrap (``bwrap``) namespaces, for machines without a Docker daemon.

Each command runs in fresh user, pid, network, IPC, UTS and cgroup namespaces with all
capabilities dropped, under a seccomp filter (``envkit.sandbox.seccomp``), with a read-only view
of the host's ``/usr``, a private ``/proc`` whose ``/proc/sys`` is read-only, private ``/dev``,
``/dev/shm`` and ``/tmp`` of bounded size, no network but loopback, no environment but the one
envkit gives, a new empty session keyring, and rlimits (address space, processes, file size, open
files). The root of the sandbox is read-only. The work dir is a tmpfs of ``workdir_size`` in a
mount namespace of its own (``_bwrap_host``); it keeps files between commands.

As root, bubblewrap runs as an unprivileged host uid of its own per sandbox, so the sandboxed
code owns nothing on the host and ``pids`` is enforced. Weaker than ``DockerSandbox``: memory is
limited per process (RLIMIT_AS) rather than in total, there is no CPU quota, and as a non-root
user ``pids`` counts all of that user's processes. Processes never outlive their command (each
command has its own pid namespace), so background servers do not persist between calls.
docs/sandbox.md lists what this backend guarantees as root and as a user.

Example:
    >>> from envkit.sandbox.local_sandbox import LocalSandbox
    >>> with LocalSandbox() as sb:
    ...     print(sb.exec("echo $((6 * 7))", timeout=5).stdout, end="")
    42
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any

from envkit.sandbox import reaper
from envkit.sandbox._bwrap_host import WorkdirNamespace, pick_uid, spawn_setup
from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.errors import BwrapUnavailableError
from envkit.sandbox.seccomp import deny_filter
from envkit.sandbox.supervised import (
    DeadlineExceeded,
    RawReply,
    SupervisedSandbox,
    supervisor_argv,
)

__all__ = ["LocalSandbox", "bwrap_problem"]

_INSTALL_HINT = (
    "Install bubblewrap (`sudo apt-get install bubblewrap`), or use the Docker backend. On "
    "Ubuntu 23.10+ unprivileged user namespaces may be restricted: "
    "`sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0`."
)
_BWRAP_ENV = {"PATH": "/usr/bin:/bin"}  # bubblewrap's own environment (pid 1 inside)


def _as_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot be used here, or ``None`` when it works (checked once).

    As root, the check runs bubblewrap as an unprivileged uid inside a work dir namespace, as
    every command will.
    """
    exe = shutil.which("bwrap")
    if exe is None:
        return f"`bwrap` is not installed. {_INSTALL_HINT}"
    if not os.path.exists("/usr/bin/python3"):
        return "LocalSandbox runs /usr/bin/python3 inside bubblewrap, and it is missing."
    try:
        deny_filter()
    except ValueError as e:
        return str(e)
    if shutil.which("unshare") is None:
        return "LocalSandbox needs `unshare` (util-linux) for its size-limited work dir."
    uid = pick_uid() if _as_root() else None
    host_dir = tempfile.mkdtemp(prefix="envkit-sandbox-check-")
    ns = None
    try:
        ns = WorkdirNamespace(host_dir, 1 << 20, (uid, uid) if uid is not None else None)
        proc = subprocess.run(
            [exe, "--unshare-all", "--ro-bind", "/usr", "/usr", *_usr_links(),
             "--bind", host_dir, "/work", "true"],
            capture_output=True,
            timeout=20,
            env=_BWRAP_ENV,
            preexec_fn=spawn_setup(ns, uid, []),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        return f"`bwrap` cannot run ({e}). {_INSTALL_HINT}"
    finally:
        if ns is not None:
            ns.close()
        shutil.rmtree(host_dir, ignore_errors=True)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        who = f" as the unprivileged uid {uid} (envkit runs as root)" if uid is not None else ""
        return f"`bwrap` cannot create namespaces here{who} ({err}). {_INSTALL_HINT}"
    return None


def _usr_links() -> list[str]:
    """Binds for /bin, /lib... : symlinks into /usr on merged-/usr systems, read-only binds else."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


class LocalSandbox(SupervisedSandbox):
    """A sandbox made of bubblewrap namespaces around a size-limited private work dir.

    Args:
        config: Limits (``image``, ``cpus``, ``runtime`` and ``network`` other than ``"none"`` do
            not apply: bubblewrap has no network but loopback). As root, ``mounts`` must be
            readable (and, if writable, writable) by any uid: commands run as an unprivileged one.

    Raises:
        BwrapUnavailableError: bubblewrap is missing or cannot create namespaces here.
    """

    kind = "local"

    def __init__(self, config: SandboxConfig | None = None) -> None:
        super().__init__(config)
        problem = bwrap_problem()
        if problem:
            raise BwrapUnavailableError(problem)
        if self.config.network_enabled:
            raise ValueError(
                "LocalSandbox has no network but loopback; network must be 'none' (use "
                "DockerSandbox to opt in to a network)"
            )
        self.host_uid: int | None = pick_uid() if _as_root() else None
        """The unprivileged host uid commands run as when envkit is root (else ``None``)."""
        self.host_dir = tempfile.mkdtemp(prefix="envkit-sandbox-")
        owner = (self.host_uid, self.host_uid) if self.host_uid is not None else None
        try:
            self._ns = WorkdirNamespace(self.host_dir, self.config.workdir_size, owner)
        except OSError as e:
            shutil.rmtree(self.host_dir, ignore_errors=True)
            raise BwrapUnavailableError(f"LocalSandbox cannot make its work dir: {e}") from e
        self._seccomp = deny_filter()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._procs_lock = threading.Lock()
        reaper.install()
        reaper.track(self)

    @property
    def name(self) -> str:
        return os.path.basename(getattr(self, "host_dir", "")) or super().name

    def _bwrap_argv(self, seccomp_fd: int) -> list[str]:
        cfg = self.config
        argv = [
            "bwrap",
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--uid", str(cfg.uid),
            "--gid", str(cfg.gid),
            "--cap-drop", "ALL",
            "--hostname", "sandbox",
            "--seccomp", str(seccomp_fd),
            "--ro-bind", "/usr", "/usr",
            *_usr_links(),
            "--proc", "/proc",
            "--ro-bind", "/proc/sys", "/proc/sys",
            "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
            "--dev", "/dev",
            "--size", str(cfg.shm_size), "--tmpfs", "/dev/shm",
            "--size", str(cfg.tmp_size), "--tmpfs", "/tmp",
            "--bind", self.host_dir, cfg.workdir,
        ]  # fmt: skip
        for m in cfg.mounts:
            argv += ["--ro-bind" if m.read_only else "--bind", m.source, m.target]
        argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", cfg.workdir]
        argv += ["--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"]
        return [*argv, *supervisor_argv(cfg.python)]

    def _limits(self) -> list[tuple[int, int]]:
        """The rlimits every process of a command inherits."""
        cfg = self.config
        return [
            (resource.RLIMIT_AS, cfg.memory),
            (resource.RLIMIT_NPROC, cfg.pids),
            (resource.RLIMIT_FSIZE, cfg.file_size),
            (resource.RLIMIT_NOFILE, cfg.nofile),
            (resource.RLIMIT_CORE, 0),
        ]

    # ------------------------------------------------------------------ backend hooks
    def alive(self) -> bool:
        return not self._closed and bool(self._ns.fds) and os.path.isdir(self.host_dir)

    def _transport(
        self, spec: dict[str, Any], payload: bytes, *, deadline: float, max_reply: int
    ) -> RawReply:
        request = self._request(spec, payload)
        if not self.alive():
            raise self._died("starting a command")
        t_end = time.monotonic() + deadline
        seccomp_fd = os.memfd_create("envkit-seccomp")
        try:
            os.write(seccomp_fd, self._seccomp)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            proc = subprocess.Popen(
                self._bwrap_argv(seccomp_fd),
                executable=shutil.which("bwrap"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_BWRAP_ENV,
                start_new_session=True,
                pass_fds=(seccomp_fd,),
                preexec_fn=spawn_setup(self._ns, self.host_uid, self._limits()),
            )
        finally:
            os.close(seccomp_fd)
        with self._procs_lock:
            self._procs.add(proc)
        try:
            return _communicate(proc, request, t_end, max_reply)
        finally:
            with self._procs_lock:
                self._procs.discard(proc)
            _kill_group(proc)

    def _hard_kill(self) -> None:
        with self._procs_lock:
            procs = list(self._procs)
        for p in procs:
            _kill_group(p)

    def _destroy(self) -> None:
        reaper.untrack(self)
        self._hard_kill()
        self._ns.close()
        shutil.rmtree(self.host_dir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        with contextlib.suppress(Exception):
            if f is not None:
                f.close()


def _communicate(
    proc: subprocess.Popen[bytes], request: bytes, t_end: float, max_reply: int
) -> RawReply:
    """Feeds ``request`` (from a thread, so a command that never reads cannot block us) and
    reads stdout/stderr up to ``max_reply`` bytes until EOF or the deadline."""
    assert proc.stdin and proc.stdout and proc.stderr

    def feed() -> None:
        with contextlib.suppress(OSError):
            proc.stdin.write(request)  # type: ignore[union-attr]
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    with selectors.DefaultSelector() as sel:
        for f in out:
            sel.register(f, selectors.EVENT_READ)
        while sel.get_map():
            left = t_end - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded
            for key, _ in sel.select(left):
                data = os.read(key.fd, 1 << 20)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                out[key.fileobj] += data  # type: ignore[index]
                if sum(len(b) for b in out.values()) > max_reply:
                    return RawReply(bytes(out[proc.stdout]), b"", None, overflow=True)
    try:
        code = proc.wait(timeout=max(0.1, t_end - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise DeadlineExceeded from None
    return RawReply(bytes(out[proc.stdout]), bytes(out[proc.stderr]), code)
