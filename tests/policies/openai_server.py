"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1, for testing API policies.

It speaks just enough of ``POST /v1/chat/completions`` for litellm's OpenAI client: by default
it answers ``"echo: <last user message>"``; tests queue other replies (tool calls, HTTP errors)
with ``server.queue(...)`` and read what the client sent in ``server.requests``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: an HTTP status and either a message or a raw JSON body."""

    status: int = 200
    message: dict[str, Any] | None = None
    finish_reason: str = "stop"
    body: dict[str, Any] | None = None
    delay_s: float = 0.0


@dataclass
class OpenAIServer:
    host: str = "127.0.0.1"
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: deque[Reply] = field(default_factory=deque)
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def api_base(self) -> str:
        assert self._httpd is not None
        return f"http://{self.host}:{self._httpd.server_address[1]}/v1"

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def start(self) -> OpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "json": payload})
                    reply = server.replies.popleft() if server.replies else Reply()
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    if not self.path.endswith("/chat/completions"):
                        self._send(404, {"error": {"message": f"no route {self.path}"}})
                    elif reply.status != 200:
                        body = reply.body or {
                            "error": {"message": "scripted failure", "type": "server_error"}
                        }
                        self._send(reply.status, body)
                    else:
                        self._send(200, reply.body or server._completion(payload, reply))
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # fails when the client gave up (timeout tests)

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _completion(self, payload: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message = reply.message
        if message is None:
            last_user = next(
                (m["content"] for m in reversed(payload["messages"]) if m["role"] == "user"), ""
            )
            message = {"role": "assistant", "content": f"echo: {last_user}"}
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in payload["messages"])
        completion_tokens = len(str(message.get("content") or "").split()) + 1
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model", "test-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
