"""Infrastructure faults: a killed container, a dropped daemon connection, no image, no daemon,
no permission. Each is an ``InfraError`` with a message that says what happened and the fix."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from envkit.errors import InfraError
from envkit.sandbox import (
    DockerPermissionError,
    DockerSandbox,
    DockerUnavailableError,
    ImageNotFoundError,
    SandboxConfig,
    SandboxDiedError,
)
from envkit.sandbox.docker_client import forget_clients

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("fast_exec", [True, False], ids=["fast_exec", "one_exec_per_command"])
def test_container_killed_mid_command(docker_client: Any, fast_exec: bool) -> None:
    sb = DockerSandbox(SandboxConfig(fast_exec=fast_exec))
    try:
        sb.exec("true")
        threading.Timer(0.7, sb.kill).start()
        t0 = time.monotonic()
        with pytest.raises(SandboxDiedError, match="stopped while running a command") as info:
            sb.exec("sleep 30", timeout=60)
        assert isinstance(info.value, InfraError)
        assert time.monotonic() - t0 < 10
        assert sb.broken is not None
        with pytest.raises(SandboxDiedError, match="unusable"):
            sb.exec("true")
    finally:
        sb.close()


def test_unknown_image_says_how_to_build(docker_client: Any) -> None:
    with pytest.raises(ImageNotFoundError, match="envkit sandbox build") as info:
        DockerSandbox(SandboxConfig(image="envkit-no-such-image:0"))
    assert isinstance(info.value, InfraError)


@pytest.fixture
def docker_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Sets DOCKER_HOST for one test; the cached clients are dropped before and after."""

    def set_host(url: str) -> None:
        monkeypatch.setenv("DOCKER_HOST", url)
        forget_clients()

    yield set_host
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    forget_clients()


def test_no_daemon_says_how_to_start_it(docker_host: Any, tmp_path: Any) -> None:
    docker_host(f"unix://{tmp_path}/nothing-here.sock")
    with pytest.raises(DockerUnavailableError, match="dockerd") as info:
        DockerSandbox()
    assert "install_docker.sh" in str(info.value) and "nothing-here.sock" in str(info.value)


def test_no_permission_says_how_to_get_it(docker_client: Any) -> None:
    """A process of an unprivileged user (uid 65534) may not use the root-owned socket."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            forget_clients()
            try:
                DockerSandbox()
                msg = "NO ERROR"
            except Exception as e:
                msg = f"{type(e).__name__}: {e}"
            os.write(write_end, msg.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the unprivileged child hung")
        time.sleep(0.05)
    msg = os.read(read_end, 10000).decode()
    os.close(read_end)
    assert msg.startswith(DockerPermissionError.__name__), msg
    assert "docker group" in msg and "usermod" in msg


class _SocketProxy:
    """A unix-socket proxy in front of the Docker socket whose connections can be cut."""

    def __init__(self, path: str, upstream: str = "/var/run/docker.sock") -> None:
        self.path, self.upstream = path, upstream
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen()
        self.sockets: list[socket.socket] = []
        self.cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.upstream)
            self.sockets += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cuts every connection and refuses new ones: the daemon is 'gone'."""
        self.cut = True
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.drop()
        self.server.close()


def test_daemon_connection_dropped_mid_command(docker_host: Any, tmp_path: Any) -> None:
    proxy = _SocketProxy(str(tmp_path / "docker.sock"))
    docker_host(f"unix://{proxy.path}")
    sb = DockerSandbox()
    container = sb.container_id
    try:
        assert sb.exec("echo via-proxy").stdout == "via-proxy\n"
        threading.Timer(0.5, proxy.drop).start()
        with pytest.raises(InfraError, match=r"Docker daemon|stopped") as info:
            sb.exec("sleep 20", timeout=60)
        assert isinstance(info.value, DockerUnavailableError), repr(info.value)
    finally:
        proxy.close()
        sb.close()  # cannot reach the daemon through the cut proxy...
        docker_host("unix:///var/run/docker.sock")
        import docker

        client = docker.from_env()
        with contextlib.suppress(docker.errors.NotFound):  # ...so the test removes it itself
            client.api.remove_container(container, force=True)
        client.close()
