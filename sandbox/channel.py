"""``SupervisorChannel``: one long-running in-sandbox supervisor, reached over a docker exec stream.

Starting a process with ``docker exec`` costs ~50 ms (the daemon, containerd and runc set up a
new process). A channel pays that once: it starts the supervisor in ``serve`` mode with its stdin
and stdout attached, then sends it one framed request at a time; each request costs a fork inside
the sandbox (a few ms). The supervisor runs as root inside the container (without capabilities
but the four it needs to run commands as the sandbox user), so sandboxed code can neither signal
nor inspect it. Only envkit holds the attached stream, and every reply must echo its request's
random id; bytes that arrive when no reply is due (forged into the stream) make the channel
*compromised*: it is closed and the sandbox tainted, so a pool replaces it.

Attaching to an exec while keeping its HTTP response needs three private members of docker-py's
``APIClient`` and the ``_sock`` of the socket wrapper it returns. They are listed in one place,
``DOCKER_PY_PRIVATE``, and checked once per client class at first use (``check_docker_py``): a
docker-py without them fails with ``IncompatibleDockerPyError`` naming the missing member, the
installed version and the tested ones, never with a bare ``AttributeError`` mid-episode.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import marshal
import select
import socket
import struct
import threading
import time
from typing import Any

from envkit.sandbox.errors import IncompatibleDockerPyError
from envkit.sandbox.supervised import DeadlineExceeded, Payload, RawReply, payload_chunks

__all__ = [
    "DOCKER_PY_PRIVATE",
    "DOCKER_PY_TESTED",
    "ChannelCompromised",
    "SupervisorChannel",
    "attach_exec",
    "check_docker_py",
]

DOCKER_PY_TESTED = "7.1.0 (pyproject.toml requires docker>=7)"
"""The docker-py versions ``make test`` runs the sandbox tests on."""

DOCKER_PY_PRIVATE: dict[str, str] = {
    "APIClient._post_json": "POST /exec/{id}/start with the connection upgraded, keeping the "
    "HTTP response (exec_start(socket=True) drops it on unix sockets)",
    "APIClient._url": "the URL of that request",
    "APIClient._get_raw_response_socket": "the response's hijacked socket",
    "<raw response socket>._sock": "the socket.socket inside the SocketIO wrapper it returns",
}
"""Every private docker-py member envkit uses, and what for. Nothing else in envkit uses one."""

_API_MEMBERS = ("_post_json", "_url", "_get_raw_response_socket")
_SOCKET_METHODS = ("sendall", "recv", "settimeout", "fileno", "shutdown", "close")
_VERIFIED: set[type] = set()


def _installed_docker_py() -> str:
    try:
        return importlib.metadata.version("docker")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _incompatible(missing: str) -> IncompatibleDockerPyError:
    return IncompatibleDockerPyError(
        f"envkit's Docker exec channel cannot work with the installed docker-py: {missing} is "
        f"missing. Installed: docker {_installed_docker_py()}. Tested: docker {DOCKER_PY_TESTED}. "
        "Install a tested version: pip install 'docker==7.1.0'."
    )


def check_docker_py(api: Any) -> None:
    """Verifies that ``api`` (docker-py's ``APIClient``) has the private members envkit uses
    (``DOCKER_PY_PRIVATE``); passes at once for a class already verified.

    Raises:
        IncompatibleDockerPyError: one is missing; the message names it, the installed
            docker-py version and the tested ones.
    """
    cls = type(api)
    if cls in _VERIFIED:
        return
    for member in _API_MEMBERS:
        if not callable(getattr(api, member, None)):
            raise _incompatible(f"{cls.__module__}.{cls.__qualname__}.{member}")
    _VERIFIED.add(cls)


def _raw_socket(wrapper: Any) -> socket.socket:
    """The socket inside what ``APIClient._get_raw_response_socket`` returned."""
    sock = wrapper if isinstance(wrapper, socket.socket) else getattr(wrapper, "_sock", None)
    if sock is None or not all(callable(getattr(sock, m, None)) for m in _SOCKET_METHODS):
        raise _incompatible(
            f"the '_sock' socket of the {type(wrapper).__qualname__} returned by "
            "APIClient._get_raw_response_socket"
        )
    return sock  # type: ignore[no-any-return]


class ChannelCompromised(Exception):
    """Bytes arrived on the channel when no reply was due: it is closed, the request not sent."""


_MAX_STDERR = 65536


class AttachedExec:
    """The hijacked socket of a started exec and the HTTP response that owns it."""

    def __init__(self, api: Any, exec_id: str) -> None:
        # docker-py's exec_start(socket=True) drops the HTTP response on unix sockets, which then
        # cannot be closed cleanly; this is the same request, keeping the response.
        check_docker_py(api)
        self.response = api._post_json(
            api._url("/exec/{0}/start", exec_id),
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            data={"Tty": False, "Detach": False},
            stream=True,
        )
        try:
            self.sock: socket.socket = _raw_socket(api._get_raw_response_socket(self.response))
        except BaseException:
            with contextlib.suppress(Exception):
                self.response.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.close()
        with contextlib.suppress(Exception):
            self.sock.close()


def attach_exec(api: Any, exec_id: str) -> AttachedExec:
    """Starts exec ``exec_id`` with stdin/stdout/stderr attached; returns its stream.

    Raises:
        IncompatibleDockerPyError: the installed docker-py lacks a member this relies on.
    """
    return AttachedExec(api, exec_id)


class SupervisorChannel:
    """A supervisor in ``serve`` mode inside a container.

    Args:
        api: docker-py's low-level ``APIClient``.
        container_id: The container.
        argv: The command that starts the supervisor.
        user: The uid:gid it runs as.
        seccomp: The seccomp filter the supervisor must install before it serves anything
            (``envkit.sandbox.seccomp.supervisor_filter``); it refuses every request without it.
    """

    def __init__(
        self, api: Any, container_id: str, argv: list[str], user: str, *, seccomp: bytes
    ) -> None:
        exec_id = api.exec_create(
            container_id, argv, stdin=True, stdout=True, stderr=True, tty=False, user=user
        )["Id"]
        self._attached = attach_exec(api, exec_id)
        self._sock = self._attached.sock
        self._frames = bytearray()  # multiplexed bytes not parsed yet
        self._stdout = bytearray()
        self._stderr = bytearray()
        self.dead = False
        self.lock = threading.Lock()
        hello = marshal.dumps({"op": "serve", "seccomp": seccomp}, 2)
        try:
            self._sock.settimeout(10.0)
            self._sock.sendall(len(hello).to_bytes(4, "big") + hello)
        except OSError:
            self.close()

    def usable(self) -> bool:
        """True if the supervisor is (as far as can be told without asking) still there."""
        if self.dead:
            return False
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            self.close()
            return False
        if readable:
            # An idle supervisor says nothing: this is EOF (it died) or a traceback on stderr.
            self._pump(time.monotonic() + 0.05)
            if self._stdout or self.dead:
                self.close()
                return False
        return True

    def _pump(self, t_end: float) -> bool:
        """Reads and demultiplexes what is available until ``t_end``; False at EOF."""
        left = t_end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(1 << 20)
        except TimeoutError:
            raise DeadlineExceeded from None
        except OSError:
            chunk = b""
        if not chunk:
            self.dead = True
            return False
        self._frames += chunk
        while len(self._frames) >= 8:
            kind, size = struct.unpack(">BxxxL", self._frames[:8])
            if len(self._frames) < 8 + size:
                break
            body = self._frames[8 : 8 + size]
            del self._frames[: 8 + size]
            if kind == 1:
                self._stdout += body
            elif kind == 2:
                self._stderr += body
                del self._stderr[:-_MAX_STDERR]
        return True

    def _check_quiet(self) -> None:
        """Raises ``ChannelCompromised`` if anything is buffered or waiting before a request."""
        if self._stdout or self._frames:
            self.close()
            raise ChannelCompromised("bytes were left on the supervisor's stream")
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            readable = []
        if readable:
            with contextlib.suppress(DeadlineExceeded):
                self._pump(time.monotonic() + 0.05)
            if self._stdout or self._frames:
                self.close()
                raise ChannelCompromised("bytes arrived on the supervisor's stream unasked")

    def request(
        self, spec: dict[str, Any], payload: Payload, t_end: float, max_reply: int
    ) -> RawReply | None:
        """Sends one request (the payload streamed chunk by chunk) and waits for its reply.

        Returns ``None`` when the channel turned out to be dead before the request was sent
        (the caller may use another way), or a ``RawReply`` (``exit_code=None`` and no stdout
        when the supervisor died after receiving the request; ``tainted`` when more bytes came
        than the reply).

        Raises:
            DeadlineExceeded: no reply by ``t_end`` (the channel is then closed).
            ChannelCompromised: unasked bytes were waiting; nothing was sent.
        """
        self._check_quiet()
        if self.dead:
            return None
        chunks = payload_chunks(payload)
        size = sum(len(c) for c in chunks)
        body = marshal.dumps(spec, 2)
        try:
            self._sock.settimeout(max(0.001, t_end - time.monotonic()))
            self._sock.sendall(len(body).to_bytes(4, "big") + size.to_bytes(4, "big") + body)
            for chunk in chunks:
                self._sock.settimeout(max(0.001, t_end - time.monotonic()))
                self._sock.sendall(chunk)
        except TimeoutError:
            self.close()
            raise DeadlineExceeded from None
        except OSError:
            self.close()
            return None
        try:
            while True:
                if len(self._stdout) >= 4:
                    size = int.from_bytes(self._stdout[:4], "big")
                    if size > max_reply:
                        self.close()
                        return RawReply(bytes(self._stdout[4:]), b"", None, overflow=True)
                    if len(self._stdout) >= 4 + size:
                        reply = bytes(self._stdout[4 : 4 + size])
                        del self._stdout[: 4 + size]
                        if self._stdout:  # more than one reply: someone forged one
                            self.close()
                            return RawReply(reply, b"", 0, tainted=True)
                        return RawReply(reply, b"", 0)
                if not self._pump(t_end):
                    err = bytes(self._stderr)
                    self.close()
                    return RawReply(b"", err, None)
        except DeadlineExceeded:
            self.close()
            raise

    def close(self) -> None:
        """Closes the stream; the supervisor sees end-of-input and exits."""
        self.dead = True
        self._attached.close()
