"""A real OpenAI-compatible chat-completions server on 127.0.0.1, scripted per test.

Each request is answered by the next scripted ``Reply`` (or, when the script is empty, by the
``responder`` callable); every request body is recorded. litellm talks to it through
``api_base`` exactly as it would to any OpenAI-compatible server.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRAJECTORY_RE = re.compile(r'<trajectory id="(T\d+)">\n(.*?)\n</trajectory>', re.S)


@dataclass
class Reply:
    """One scripted answer: a chat completion with ``content``, or an error status."""

    content: str | None = None
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    prompt_tokens: int = 100
    completion_tokens: int = 20


@dataclass
class Request:
    """A recorded request."""

    path: str
    raw: str
    json: dict[str, Any]

    @property
    def user_text(self) -> str:
        return next(m["content"] for m in self.json["messages"] if m["role"] == "user")

    @property
    def trajectories(self) -> dict[str, str]:
        """The judge prompt's trajectory blocks: id -> text."""
        return dict(TRAJECTORY_RE.findall(self.user_text))


def scores_json(scores: dict[str, float], hacking: set[str] = frozenset()) -> str:
    """A judge answer giving ``scores`` (id -> score)."""
    return json.dumps(
        {
            "scores": [
                {"id": k, "explanation": f"because {k}", "reward_hacking": k in hacking, "score": v}
                for k, v in scores.items()
            ]
        }
    )


def rank_by(score_of: Callable[[str], float]) -> Callable[[Request], Reply]:
    """A responder that scores each trajectory block of the prompt with ``score_of(text)``."""

    def respond(request: Request) -> Reply:
        blocks = request.trajectories
        return Reply(scores_json({tid: score_of(text) for tid, text in blocks.items()}))

    return respond


class OpenAIServer:
    """The server; ``base_url`` is what litellm gets as ``api_base``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply | Callable[[Request], Reply]] = deque()
        self.responder: Callable[[Request], Reply] | None = None
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode()
                request = Request(self.path, raw, json.loads(raw or "{}"))
                reply = server._next(request)
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    self._send(reply, request)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, reply: Reply, request: Request) -> None:
                if reply.body is not None:
                    body = (
                        reply.body
                        if isinstance(reply.body, bytes)
                        else json.dumps(reply.body).encode()
                    )
                elif reply.status != 200:
                    body = json.dumps(
                        {"error": {"message": f"scripted {reply.status}", "type": "x"}}
                    ).encode()
                else:
                    body = json.dumps(
                        {
                            "id": "chatcmpl-test",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": request.json.get("model", "judge-test"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": reply.content},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": reply.prompt_tokens,
                                "completion_tokens": reply.completion_tokens,
                                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                            },
                        }
                    ).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *replies: Reply | Callable[[Request], Reply]) -> None:
        """Answers the next requests with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def _next(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            item = self._script.popleft() if self._script else self.responder
        if item is None:
            return Reply(status=500, body={"error": {"message": "unscripted request"}})
        return item(request) if callable(item) else item

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
