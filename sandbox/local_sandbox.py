"""``LocalSandbox``: bubblewrap (``bwrap``) namespaces, for machines without a Docker daemon.

Each command runs in fresh user, pid, network, IPC, UTS and cgroup namespaces with all
capabilities dropped, a read-only view of the host's ``/usr``, private ``/proc``, ``/dev`` and
``/tmp``, no network but loopback, and rlimits (address space, processes, file size, open files).
The work dir is a private host directory bound at ``/work``; it keeps files between commands.

Weaker than ``DockerSandbox`` in three ways, by construction: memory is limited per process
(RLIMIT_AS) rather than in total, the work dir is limited per file (RLIMIT_FSIZE) rather than in
total, and there is no CPU quota. Processes never outlive their command (each command has its own
pid namespace), so background servers do not persist between calls.

Example:
    >>> from envkit.sandbox.local_sandbox import LocalSandbox
    >>> with LocalSandbox() as sb:  # doctest: +SKIP
    ...     print(sb.exec("echo $((6 * 7))", timeout=5).stdout)
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
from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.errors import BwrapUnavailableError
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


@functools.cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot be used here, or ``None`` when it works (checked once)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return f"`bwrap` is not installed. {_INSTALL_HINT}"
    if not os.path.exists("/usr/bin/python3"):
        return "LocalSandbox runs /usr/bin/python3 inside bubblewrap, and it is missing."
    try:
        proc = subprocess.run(
            [exe, "--unshare-all", "--ro-bind", "/usr", "/usr", *_usr_links(), "true"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`bwrap` cannot run ({e}). {_INSTALL_HINT}"
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        return f"`bwrap` cannot create namespaces here ({err}). {_INSTALL_HINT}"
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
    """A sandbox made of bubblewrap namespaces around a private host directory.

    Args:
        config: Limits (``image``, ``cpus``, ``runtime`` and ``network`` other than ``"none"`` do
            not apply: bubblewrap has no network but loopback).

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
        self.host_dir = tempfile.mkdtemp(prefix="envkit-sandbox-")
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._procs_lock = threading.Lock()
        reaper.install()
        reaper.track(self)

    @property
    def name(self) -> str:
        return os.path.basename(getattr(self, "host_dir", "")) or super().name

    def _bwrap_argv(self) -> list[str]:
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
            "--ro-bind", "/usr", "/usr",
            *_usr_links(),
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(cfg.tmp_size), "--tmpfs", "/tmp",
            "--bind", self.host_dir, cfg.workdir,
            "--chdir", cfg.workdir,
        ]  # fmt: skip
        for m in cfg.mounts:
            argv += ["--ro-bind" if m.read_only else "--bind", m.source, m.target]
        argv += ["--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"]
        return [*argv, *supervisor_argv(cfg.python)]

    def _limits(self) -> None:
        """Runs in the forked child before ``bwrap``: the rlimits every process inherits."""
        cfg = self.config
        for res, value in (
            (resource.RLIMIT_AS, cfg.memory),
            (resource.RLIMIT_NPROC, cfg.pids),
            (resource.RLIMIT_FSIZE, cfg.file_size),
            (resource.RLIMIT_NOFILE, cfg.nofile),
            (resource.RLIMIT_CORE, 0),
        ):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(res, (value, value))

    # ------------------------------------------------------------------ backend hooks
    def alive(self) -> bool:
        return not self._closed and os.path.isdir(self.host_dir)

    def _transport(
        self, spec: dict[str, Any], payload: bytes, *, deadline: float, max_reply: int
    ) -> RawReply:
        request = self._request(spec, payload)
        if not self.alive():
            raise self._died("starting a command")
        t_end = time.monotonic() + deadline
        proc = subprocess.Popen(
            self._bwrap_argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=self._limits,
        )
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
