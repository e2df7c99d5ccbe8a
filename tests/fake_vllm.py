"""A small vLLM-like HTTP server on 127.0.0.1 for ``ServerPolicy`` tests (and Ray workers).

It answers ``/v1/chat/completions`` with one token per request (the token id, log-probability
and ``prompt_token_ids`` vLLM returns with ``return_token_ids``), keeps the adapters that
``/v1/load_lora_adapter`` loaded (listed by ``GET /v1/models``; a second load of one name gets
vLLM's 400 "already been loaded"; ``/v1/unload_lora_adapter`` removes one) and records every
request. ``load_delay_s`` makes the first load answer late (after loading), as a server under
load whose answer the client times out on.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many clients at once (the default backlog of 5 resets some)


class FakeVLLM:
    """Run with ``with FakeVLLM() as server: ... server.url``."""

    def __init__(self, model: str = "base", load_delay_s: float = 0.0) -> None:
        self.model = model
        self.load_delay_s = load_delay_s
        self.adapters: list[str] = []
        self.loads: list[str] = []  # every load POST received, in order
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # the client may have timed out

            def do_GET(self) -> None:
                with fake.lock:
                    ids = [fake.model, *fake.adapters]
                self.answer(200, {"object": "list", "data": [{"id": i} for i in ids]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = fake.handle(self.path, body)
                self.answer(status, payload)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """The status and JSON answer to a POST."""
        if path == "/v1/load_lora_adapter":
            name = body["lora_name"]
            with self.lock:
                self.loads.append(name)
                first = len(self.loads) == 1
                if name in self.adapters:
                    return 400, {
                        "error": {"message": f"The lora adapter '{name}' has already been loaded."}
                    }
                self.adapters.append(name)
            if first and self.load_delay_s:
                time.sleep(self.load_delay_s)  # loaded; the answer comes late
            return 200, f"Success: LoRA adapter '{name}' added successfully."
        if path == "/v1/unload_lora_adapter":
            with self.lock:
                if body["lora_name"] not in self.adapters:
                    return 404, {"error": {"message": f"no adapter {body['lora_name']}"}}
                self.adapters.remove(body["lora_name"])
            return 200, "Success"
        if path == "/v1/chat/completions":
            with self.lock:
                self.requests.append(body)
            token = int(body.get("seed") or 0) % 1000
            return 200, {
                "prompt_token_ids": [1, 2, 3],
                "choices": [
                    {
                        "message": {"role": "assistant", "content": str(token)},
                        "token_ids": [token],
                        "logprobs": {"content": [{"token": f"token_id:{token}", "logprob": -0.5}]},
                        "finish_reason": "stop",
                    }
                ],
            }
        return 404, {"error": {"message": f"no route {path}"}}

    def __enter__(self) -> FakeVLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
