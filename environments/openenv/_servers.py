"""Where an OpenEnv server runs: a URL, a local process envkit starts, or a local Docker image.

Servers that envkit starts are shared by the envs of one process with the same spec (reference
counted): ``collect`` with 8 envs starts one server and opens 8 sessions on it. The last env's
``close()`` stops the server; ``atexit`` stops any left; a watchdog process stops it (and removes
its container) when the owner process is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from envkit.environments.openenv._protocol import get_json
from envkit.errors import InfraError

__all__ = ["ServerHandle", "acquire", "free_port", "release", "stop_all"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerHandle:
    """A started (or external) OpenEnv server.

    Attributes:
        url: The server's ``http://host:port``.
        process: The watchdog process envkit started (``None`` for a URL).
        container: The Docker container's name (``None`` unless from an image).
    """

    def __init__(
        self,
        url: str,
        process: subprocess.Popen[bytes] | None = None,
        container: str | None = None,
        log: Path | None = None,
    ) -> None:
        self.url = url
        self.process = process
        self.container = container
        self.log = log

    def alive(self) -> bool:
        """Whether the process envkit started is still running (always True for a URL)."""
        return self.process is None or self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output (empty for a URL)."""
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Stops the process group (and removes the container); idempotent."""
        if self.container:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, timeout=60)
            self.container = None
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def _watched(cmd: Sequence[str], container: str | None = None) -> list[str]:
    extra = ["--docker-rm", container] if container else []
    return [
        sys.executable,
        "-m",
        "envkit.environments.openenv._watchdog",
        str(os.getpid()),
        *extra,
        "--",
        *cmd,
    ]


def _wait_healthy(handle: ServerHandle, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not handle.alive():
            tail = handle.log_tail()
            handle.stop()
            raise RuntimeError(f"the OpenEnv server ({what}) exited before it was ready:\n{tail}")
        try:
            get_json(handle.url, "/health", timeout=2)
            return
        except InfraError:
            pass
        if time.monotonic() > deadline:
            tail = handle.log_tail()
            handle.stop()
            raise InfraError(
                f"the OpenEnv server ({what}) did not answer GET /health within {timeout} s; "
                f"raise startup_timeout if it is slow to start. Its output:\n{tail}"
            )
        time.sleep(0.1)


def start_process(
    command: str | Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> ServerHandle:
    """Starts ``command`` (``{port}``/``{host}`` filled in) and waits for ``/health``."""
    port = free_port()
    args = shlex.split(command) if isinstance(command, str) else list(command)
    if not any("{port}" in a for a in args):
        raise ValueError(
            f"the server command {args} has no '{{port}}' placeholder; envkit picks a free port, "
            "e.g. 'python -m uvicorn my_env.server.app:app --host {host} --port {port}'"
        )
    args = [a.replace("{port}", str(port)).replace("{host}", "127.0.0.1") for a in args]
    fd, log_path = tempfile.mkstemp(prefix="envkit-openenv-", suffix=".log")
    full_env = {**os.environ, **(env or {})}
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            _watched(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    handle = ServerHandle(f"http://127.0.0.1:{port}", proc, log=Path(log_path))
    _wait_healthy(handle, " ".join(args), startup_timeout)
    return handle


def start_image(
    image: str,
    *,
    container_port: int = 8000,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 120.0,
) -> ServerHandle:
    """Runs a local Docker image (its server listens on ``container_port``), waits for /health.

    The container publishes its port on 127.0.0.1 only, carries envkit's sandbox owner labels
    (so ``envkit sandbox cleanup`` reaps it once its owner is gone) and is removed on stop.
    """
    from envkit.sandbox import reaper

    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    if found.returncode != 0:
        raise ValueError(
            f"Docker image {image!r} is not on this machine; build it first (docker build -t "
            f"{image} ...) -- envkit never pulls images."
        )
    port = free_port()
    name = f"envkit-openenv-{uuid.uuid4().hex[:12]}"
    cmd = ["docker", "run", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:{container_port}"]
    for k, v in reaper.owner_labels().items():
        cmd += ["--label", f"{k}={v}"]
    for k, v in (env or {}).items():
        cmd += ["-e", f"{k}={v}"]
    cmd.append(image)
    fd, log_path = tempfile.mkstemp(prefix="envkit-openenv-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            _watched(cmd, container=name),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    handle = ServerHandle(f"http://127.0.0.1:{port}", proc, container=name, log=Path(log_path))
    _wait_healthy(handle, f"image {image}", startup_timeout)
    return handle


_lock = threading.Lock()
_shared: dict[str, tuple[ServerHandle, int]] = {}
_starting: dict[str, threading.Lock] = {}


def acquire(key: str, start: Callable[[], ServerHandle]) -> ServerHandle:
    """The shared server of ``key``, started with ``start()`` if none runs; counts one user.

    Servers of different keys start concurrently; users of one key wait for its one start.
    """
    with _lock:
        key_lock = _starting.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            if key in _shared:
                handle, users = _shared[key]
                if handle.alive():
                    _shared[key] = (handle, users + 1)
                    return handle
                del _shared[key]
            else:
                handle = None
        if handle is not None:
            handle.stop()  # it died: start a new one
        handle = start()
        with _lock:
            _shared[key] = (handle, 1)
        return handle


def release(key: str) -> None:
    """One user fewer; the last one stops the server."""
    with _lock:
        if key not in _shared:
            return
        handle, users = _shared[key]
        if users > 1:
            _shared[key] = (handle, users - 1)
            return
        del _shared[key]
    handle.stop()


def stop_all() -> None:
    """Stops every server this process started (registered with ``atexit``)."""
    with _lock:
        handles = [h for h, _ in _shared.values()]
        _shared.clear()
    for h in handles:
        with contextlib.suppress(Exception):
            h.stop()


atexit.register(stop_all)
