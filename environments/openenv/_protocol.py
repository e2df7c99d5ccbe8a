"""The client side of OpenEnv's WebSocket session protocol (``/ws``), synchronous.

One ``Session`` is one OpenEnv session: the server builds a fresh environment for the WebSocket
connection and destroys it when the connection closes. Messages are JSON objects
``{"type": "reset"|"step"|"state"|"mcp"|"close", "data": {...}}``; answers are
``{"type": "observation"|"state"|"mcp"|"error", "data": {...}}``.

Every transport failure (refused connection, a server that dies or stops answering, a full
server) raises ``envkit.errors.InfraError``, so rollouts record the episode as ``infra_error``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import urllib.error
import urllib.request
from typing import Any

from websockets.exceptions import ConnectionClosed

from envkit.errors import InfraError

__all__ = ["ActionRejected", "OpenEnvServerError", "Session", "get_json", "ws_url"]


class OpenEnvServerError(RuntimeError):
    """The environment on the server raised while handling a message (an ``env_error``)."""


class ActionRejected(ValueError):
    """The server refused an action that does not fit its action schema."""


def ws_url(base_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port/ws``."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/ws"


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(base_url: str, path: str, *, timeout: float = 10.0) -> Any:
    """GETs ``base_url + path`` (no proxy) and returns the decoded JSON.

    Raises:
        InfraError: the server cannot be reached or does not answer 200 with JSON.
    """
    url = base_url.rstrip("/") + path
    try:
        with _NO_PROXY.open(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (OSError, urllib.error.URLError, ValueError) as e:
        raise InfraError(f"OpenEnv server at {base_url} did not answer GET {path}: {e}") from e


class Session:
    """One OpenEnv WebSocket session (its own environment instance on the server).

    Args:
        base_url: The server's ``http://host:port``.
        timeout: Seconds to wait for the connection and for each answer; past it the session
            raises ``InfraError`` (a hung server never hangs the episode).
    """

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        self.base_url = base_url
        self.timeout = timeout
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        try:
            self._ws = connect(
                ws_url(base_url),
                proxy=None,
                open_timeout=timeout,
                close_timeout=0.5,
                max_size=None,
                ping_interval=None,
            )
        except Exception as e:  # refused, DNS, handshake timeout
            raise InfraError(
                f"cannot open an OpenEnv session at {ws_url(base_url)}: {type(e).__name__}: {e}. "
                "Is the server running?"
            ) from e
        self.closed = False

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Sends one message and returns the ``data`` of the answer.

        Raises:
            InfraError: the connection broke, the server did not answer within ``timeout``, or
                it is at capacity.
            ActionRejected: the server's validation refused the message (a bad action).
            OpenEnvServerError: the environment raised on the server.
        """
        if self.closed:
            raise InfraError("the OpenEnv session is closed; reset the env to open a new one")
        with self._lock:
            try:
                # a server that closed may have said why first: read that before failing
                with contextlib.suppress(ConnectionClosed):
                    self._ws.send(json.dumps(message))
                raw = self._ws.recv(timeout=self.timeout)
            except TimeoutError as e:
                self.closed = True  # a hung server answers no close handshake either
                with contextlib.suppress(Exception):
                    self._ws.close()
                raise InfraError(
                    f"the OpenEnv server at {self.base_url} did not answer a {message['type']!r} "
                    f"message within {self.timeout} s"
                ) from e
            except Exception as e:  # ConnectionClosed, OSError
                self.closed = True
                raise InfraError(
                    f"the OpenEnv session at {self.base_url} broke during a {message['type']!r} "
                    f"message: {type(e).__name__}: {e}"
                ) from e
        answer = json.loads(raw)
        data = answer.get("data") or {}
        if answer.get("type") == "error":
            code = data.get("code")
            text = data.get("message", "")
            if code in ("CAPACITY_REACHED", "FACTORY_ERROR", "SESSION_ERROR"):
                self.close()
                raise InfraError(f"OpenEnv server at {self.base_url} refused the session: {text}")
            if code == "VALIDATION_ERROR":
                errors = data.get("errors") or []
                details = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg')}"
                    for e in errors
                )
                raise ActionRejected(details or text)
            raise OpenEnvServerError(f"OpenEnv environment error ({code}): {text}")
        return data

    def reset(self, **kwargs: Any) -> dict[str, Any]:
        """Resets the session's environment; returns ``{"observation", "reward", "done"}``."""
        return self.request({"type": "reset", "data": kwargs})

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        """Sends one action; returns ``{"observation", "reward", "done"}``."""
        return self.request({"type": "step", "data": action})

    def state(self) -> dict[str, Any]:
        """The environment's ``State`` as a dict."""
        return self.request({"type": "state"})

    def mcp(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One MCP JSON-RPC call (``tools/list``, ``tools/call``) inside this session.

        Raises:
            OpenEnvServerError: the JSON-RPC answer is an error.
        """
        rpc = {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": next(self._ids)}
        data = self.request({"type": "mcp", "data": rpc})
        if data.get("error"):
            err = data["error"]
            raise OpenEnvServerError(f"MCP {method} failed: {err.get('message', err)}")
        return data.get("result")

    def close(self) -> None:
        """Ends the session (the server destroys its environment); idempotent."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._ws.send(json.dumps({"type": "close"}))
            # the server closes the connection once it destroyed the session's environment
            self._ws.recv(timeout=min(self.timeout, 5.0))
        with contextlib.suppress(Exception):
            self._ws.close()
