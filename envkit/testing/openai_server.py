"""``ScriptedOpenAIServer``: a real OpenAI-compatible chat-completions server on 127.0.0.1.

Each ``POST /v1/chat/completions`` is answered by the next scripted item (a ``Reply``, a string,
or a callable that gets the ``RecordedRequest``), and once the script is used up by
``responder`` (default ``echo``: ``"echo: <last user message>"``; ``None``: HTTP 500, so that an
unscripted request fails loudly). Every request is recorded with its headers and JSON body.
Only the standard library is used; the server runs in a thread and stops on ``close()`` or at
the end of the ``with`` block, cutting slow replies and open connections short.

Usage in the answers is counted in whitespace-separated words (the prompt's message texts; the
answer's text and tool-call arguments, plus 1 for the end-of-turn token) unless the server's
``usage`` or the reply's ``prompt_tokens`` / ``completion_tokens`` fix it.

Example:
    >>> import json, urllib.request
    >>> with ScriptedOpenAIServer() as server:
    ...     server.script(Reply.json({"score": 1}), Reply.fail(429, retry_after=0))
    ...     req = urllib.request.Request(
    ...         server.url + "/chat/completions",
    ...         data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    ...                         ).encode(),
    ...         headers={"Content-Type": "application/json"})
    ...     answer = json.load(urllib.request.urlopen(req))
    >>> answer["choices"][0]["message"]["content"]
    '{"score": 1}'
    >>> answer["usage"]
    {'prompt_tokens': 1, 'completion_tokens': 3, 'total_tokens': 4}
    >>> len(server.requests), server.requests[0].body["messages"][0]["content"], server.pending
    (1, 'hi', 1)
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from envkit.testing.replies import RecordedRequest, Reply, Responder, echo, text_of, word_count

__all__ = ["ScriptedOpenAIServer"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many concurrent clients must not hit a full listen backlog
    owner: ScriptedOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with contextlib.suppress(OSError):  # the client gave up (timeouts) or the server closed
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)


class ScriptedOpenAIServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (a free port), scripted per test.

    Args:
        *replies: The first answers, in order (same as ``script(*replies)``).
        responder: Answers requests once the script is used up; ``None`` answers them with
            HTTP 500 "unscripted request". Can be changed at any time (``server.responder = f``).
        usage: ``(prompt_tokens, completion_tokens)`` reported by every completion; ``None``
            counts words (see the module docs).

    Attributes:
        requests: A snapshot of the requests received so far, in order.
        max_in_flight: The most requests that were being answered at once.
        errors: Exceptions raised by responders (each answered with HTTP 500), as text.

    Example:
        >>> from envkit.policies import LiteLLMPolicy
        >>> with ScriptedOpenAIServer(Reply.calling(("add", {"a": 1, "b": 2}))) as server:
        ...     policy = LiteLLMPolicy("openai/any", api_base=server.url, api_key="sk-test")
        ...     first = policy([{"role": "user", "content": "1+2?"}])
        ...     second = policy([{"role": "user", "content": "hi"}])
        >>> first.message.tool_calls[0].function.name, second.message.content
        ('add', 'echo: hi')
    """

    def __init__(
        self,
        *replies: Reply | str | Responder,
        responder: Responder | None = echo,
        usage: tuple[int, int] | None = None,
    ) -> None:
        self.responder = responder
        self.usage = usage
        self.errors: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._script: deque[Reply | str | Responder] = deque(replies)
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._closing = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------- lifecycle
    def start(self) -> ScriptedOpenAIServer:
        """Starts serving on a free port of 127.0.0.1; returns the server."""
        if self._httpd is not None:
            raise RuntimeError("this ScriptedOpenAIServer is already running")
        if self._closing.is_set():
            raise RuntimeError("a closed ScriptedOpenAIServer cannot be restarted; make a new one")
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ScriptedOpenAIServer:{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops the server: pending delays end, open connections are cut. Idempotent."""
        self._closing.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "stopped"
        return f"ScriptedOpenAIServer({where}, requests={len(self._requests)})"

    # -------------------------------------------------------------------------- scripting
    @property
    def url(self) -> str:
        """The base URL to give clients as ``api_base``: ``http://127.0.0.1:<port>/v1``."""
        if self._httpd is None:
            raise RuntimeError(
                "the server is not running: use `with ScriptedOpenAIServer() as server:` "
                "or call server.start()"
            )
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *replies: Reply | str | Responder) -> None:
        """Answers the next chat requests with ``replies``, in order (after those queued)."""
        for reply in replies:
            if not (isinstance(reply, (Reply, str)) or callable(reply)):
                raise TypeError(
                    f"script() takes Reply objects, strings or callables, got {reply!r}"
                )
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are not used yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forgets the recorded requests, the errors, the script and ``max_in_flight``."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self.errors.clear()
            self.max_in_flight = self.in_flight

    # -------------------------------------------------------------------------- serving
    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _handle(self, handler: _Handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        request = RecordedRequest(
            method=method,
            path=urlsplit(handler.path).path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            raw=raw,
            body=parsed if isinstance(parsed, dict) else {},
        )
        with self._lock:
            self._requests.append(request)
        route = request.path.rstrip("/")
        if method == "GET" and route.endswith("/models"):
            model = {"id": "scripted", "object": "model", "created": 0, "owned_by": "envkit"}
            handler.send_json(200, {"object": "list", "data": [model]}, {})
        elif method != "POST" or not route.endswith("/chat/completions"):
            message = f"no route {method} {request.path}; POST /v1/chat/completions is served"
            handler.send_json(404, _error_body(404, message), {})
        elif not isinstance(parsed, dict):
            handler.send_json(400, _error_body(400, "the request body is not a JSON object"), {})
        elif parsed.get("stream"):
            message = "ScriptedOpenAIServer does not stream: send the request with stream=False"
            handler.send_json(400, _error_body(400, message), {})
        else:
            self._answer(handler, request, self._next_reply(request))

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            item = self._script.popleft() if self._script else self.responder
        if item is None:
            return Reply.fail(
                500,
                "unscripted request: script a reply with server.script(...) or set "
                "server.responder",
            )
        if callable(item) and not isinstance(item, (Reply, str)):
            try:
                item = item(request)
            except Exception as e:
                with self._lock:
                    self.errors.append(f"{type(e).__name__}: {e}")
                return Reply.fail(500, f"the responder raised {type(e).__name__}: {e}")
        if isinstance(item, str):
            return Reply(content=item)
        if not isinstance(item, Reply):
            message = f"a responder returned {item!r}; it must return a Reply or a string"
            with self._lock:
                self.errors.append(message)
            return Reply.fail(500, message)
        return item

    def _answer(self, handler: _Handler, request: RecordedRequest, reply: Reply) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            number = len(self._requests)
        try:  # out of flight before the answer is sent: a client that has it sees the count
            closed = bool(reply.delay_s) and self._closing.wait(reply.delay_s)
        finally:
            with self._lock:
                self.in_flight -= 1
        if closed:
            return  # closed while waiting: the connection is being cut
        if reply.body is not None:
            payload = reply.body
        elif reply.status != 200:
            payload = _error_body(reply.status, reply.error)
        else:
            payload = self._completion(request, reply, number)
        handler.send_json(reply.status, payload, reply.headers)

    def _completion(self, request: RecordedRequest, reply: Reply, number: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [dict(c) for c in reply.tool_calls]
        prompt, completion = self.usage or (None, None)
        if reply.prompt_tokens is not None:
            prompt = reply.prompt_tokens
        if reply.completion_tokens is not None:
            completion = reply.completion_tokens
        if prompt is None:
            prompt = sum(word_count(text_of(m.get("content"))) for m in request.messages)
        if completion is None:
            arguments = [c.get("function", {}).get("arguments") for c in reply.tool_calls or []]
            completion = word_count(reply.content) + sum(word_count(a) for a in arguments) + 1
        return {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": reply.finish_reason
                    or ("tool_calls" if reply.tool_calls else "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status) or (
        "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "api_error"
    )
    text = message or f"scripted failure (HTTP {status})"
    return {"error": {"message": text, "type": kind, "param": None, "code": status}}
