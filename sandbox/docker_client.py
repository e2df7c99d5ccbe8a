"""A shared docker-py client, and translation of Docker failures into errors that teach the fix."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from envkit.sandbox.errors import (
    DockerPermissionError,
    DockerUnavailableError,
    ImageNotFoundError,
    SandboxDiedError,
    SandboxError,
)

__all__ = ["daemon_url", "docker_client", "translate_docker_error"]

_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()

START_HINT = (
    "Start it with `sudo dockerd > /var/log/dockerd.log 2>&1 &` (or `sudo systemctl start "
    "docker`); on Debian/Ubuntu `sudo bash scripts/install_docker.sh` installs docker.io, starts "
    "the daemon and builds the sandbox image. `envkit sandbox doctor` checks the setup. Without "
    "Docker, use the bubblewrap backend (sandbox='local')."
)
PERMISSION_HINT = (
    "Add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again) or "
    "run as root; `envkit sandbox doctor` checks the setup. Without Docker access, use the "
    "bubblewrap backend (sandbox='local')."
)
BUILD_HINT = "Build it with `envkit sandbox build` (it is built locally, never pulled)."


def daemon_url() -> str:
    """The Docker daemon address docker-py will use (``DOCKER_HOST`` or the default socket)."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        todo.extend([e.__cause__, e.__context__])
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return out


def translate_docker_error(exc: BaseException, doing: str) -> SandboxError:
    """Maps an exception from docker-py/requests to an envkit ``SandboxError`` with the fix.

    Args:
        exc: The original exception.
        doing: What envkit was doing, e.g. ``"starting a sandbox"``.
    """
    import docker.errors

    if isinstance(exc, SandboxError):
        return exc
    text = " ".join(str(e) for e in _chain(exc))
    if isinstance(exc, docker.errors.ImageNotFound) or (
        isinstance(exc, docker.errors.NotFound) and "image" in text.lower()
    ):
        return ImageNotFoundError(f"The sandbox image is not present ({exc}). {BUILD_HINT}")
    if isinstance(exc, docker.errors.NotFound):
        return SandboxDiedError(f"The sandbox container is gone while {doing}: {exc}")
    if any(isinstance(e, PermissionError) for e in _chain(exc)) or "Permission denied" in text:
        return DockerPermissionError(
            f"No permission to use the Docker daemon at {daemon_url()} while {doing}. "
            f"{PERMISSION_HINT}"
        )
    if isinstance(exc, docker.errors.APIError):
        return SandboxError(f"The Docker daemon refused {doing}: {exc}")
    reason = "not running or not installed"
    if any(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in _chain(exc)):
        reason = "the connection dropped"
    return DockerUnavailableError(
        f"Cannot reach the Docker daemon at {daemon_url()} while {doing} ({reason}: "
        f"{type(exc).__name__}: {str(exc)[:300]}). {START_HINT}"
    )


def docker_client() -> Any:
    """A ``docker.DockerClient`` for ``DOCKER_HOST``, shared by the process, after a ping.

    Raises:
        DockerUnavailableError: no daemon answers (the message says how to start one).
        DockerPermissionError: the socket is there but this user may not use it.
    """
    url = daemon_url()
    with _LOCK:
        client = _CLIENTS.get(url)
        if client is not None:
            return client
        import docker

        try:
            client = docker.from_env(timeout=120, max_pool_size=64)
            client.ping()
        except Exception as e:
            raise translate_docker_error(e, "connecting") from e
        _CLIENTS[url] = client
        return client


def forget_clients() -> None:
    """Drops cached clients (after the daemon restarted or ``DOCKER_HOST`` changed)."""
    with _LOCK:
        for client in _CLIENTS.values():
            with contextlib.suppress(Exception):
                client.close()
        _CLIENTS.clear()
