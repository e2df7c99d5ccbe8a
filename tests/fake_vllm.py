"""A small vLLM-like HTTP server on 127.0.0.1 for ``ServerPolicy`` tests (and Ray workers).

It answers ``/v1/chat/completions`` and ``/v1/completions`` with one token per request (the token
id, log-probability and ``prompt_token_ids`` vLLM returns with ``return_token_ids``), or, given a
local model (``lm``), samples ``/v1/completions`` from it and returns the log-probabilities of
vLLM's ``--logprobs-mode``: ``raw_logprobs`` (vLLM's default, ``log softmax(logits)``) or
``processed_logprobs`` (``log softmax(logits / T)``).

Runtime LoRA as in vLLM 0.19: ``/v1/load_lora_adapter`` registers a name (listed by
``GET /v1/models``); a second load of one name gets vLLM's 400 "already been loaded" unless
``load_inplace`` is true; ``/v1/unload_lora_adapter`` removes one (404 when unknown); a request
whose ``"model"`` is neither the base nor a registered adapter gets 404 "does not exist".
``runtime_lora=False`` answers the LoRA endpoints with FastAPI's bare 404, as vLLM does without
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``. ``api_servers=N`` keeps N adapter registries and
serves successive requests from them in turn, as vLLM's API server processes do with
``--data-parallel-size``/``--api-server-count`` > 1.

Every request is recorded; ``load_delay_s`` makes the first load answer late (after loading), as
a server under load whose answer the client times out on.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many clients at once (the default backlog of 5 resets some)


class FakeVLLM:
    """Run with ``with FakeVLLM() as server: ... server.url``.

    Args:
        model: The served base model's name.
        load_delay_s: Seconds the first adapter load takes to answer (after loading).
        runtime_lora: False: no LoRA endpoints (bare 404), as vLLM without the env variable.
        api_servers: Adapter registries, used in turn by successive requests.
        lm: A local transformers model that ``/v1/completions`` samples from.
        logprobs_mode: The log-probabilities ``lm``'s answers carry (vLLM's flag).
    """

    def __init__(
        self,
        model: str = "base",
        load_delay_s: float = 0.0,
        *,
        runtime_lora: bool = True,
        api_servers: int = 1,
        lm: Any = None,
        logprobs_mode: Literal["raw_logprobs", "processed_logprobs"] = "raw_logprobs",
    ) -> None:
        self.model = model
        self.load_delay_s = load_delay_s
        self.runtime_lora = runtime_lora
        self.lm = lm
        self.logprobs_mode = logprobs_mode
        self.registries: list[dict[str, str]] = [{} for _ in range(api_servers)]
        """Per API server process: adapter name -> path."""
        self.loads: list[str] = []  # every load POST received, in order
        self.unloads: list[str] = []  # every unload POST received, in order
        self.requests: list[dict[str, Any]] = []  # every generation request body
        self.lock = threading.Lock()
        self._turn = itertools.count()
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
                registry = fake._registry()
                with fake.lock:
                    ids = [fake.model, *registry]
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

    @property
    def adapters(self) -> list[str]:
        """The adapter names registered (in any API server process), in load order."""
        with self.lock:
            return list(dict.fromkeys(n for r in self.registries for n in r))

    def _registry(self) -> dict[str, str]:
        with self.lock:
            return self.registries[next(self._turn) % len(self.registries)]

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """The status and JSON answer to a POST."""
        registry = self._registry()
        if path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter") and not self.runtime_lora:
            return 404, {"detail": "Not Found"}
        if path == "/v1/load_lora_adapter":
            name = body["lora_name"]
            with self.lock:
                self.loads.append(name)
                first = len(self.loads) == 1
                if name in registry and not body.get("load_inplace"):
                    message = (
                        f"The lora adapter '{name}' has already been loaded. If you want to load "
                        "the adapter in place, set 'load_inplace' to True."
                    )
                    return 400, {"error": {"message": message, "code": 400}}
                registry[name] = body["lora_path"]
            if first and self.load_delay_s:
                time.sleep(self.load_delay_s)  # loaded; the answer comes late
            return 200, f"Success: LoRA adapter '{name}' added successfully."
        if path == "/v1/unload_lora_adapter":
            name = body["lora_name"]
            with self.lock:
                self.unloads.append(name)
                if name not in registry:
                    message = f"The lora adapter '{name}' cannot be found."
                    return 404, {"error": {"message": message, "code": 404}}
                del registry[name]
            return 200, f"Success: LoRA adapter '{name}' removed successfully."
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return 404, {"detail": "Not Found"}
        with self.lock:
            self.requests.append(body)
            model = body.get("model")
            if model not in (None, self.model) and model not in registry:
                message = f"The model `{model}` does not exist."
                return 404, {"error": {"message": message, "type": "NotFoundError", "code": 404}}
        if path == "/v1/completions" and self.lm is not None:
            return 200, self._sample(body)
        token = int(body.get("seed") or 0) % 1000
        if path == "/v1/completions":
            return 200, {
                "choices": [
                    {
                        "text": str(token),
                        "prompt_token_ids": body["prompt"],
                        "token_ids": [token],
                        "logprobs": {"tokens": [f"token_id:{token}"], "token_logprobs": [-0.5]},
                        "finish_reason": "length",
                    }
                ]
            }
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

    def _sample(self, body: dict[str, Any]) -> dict[str, Any]:
        """Samples ``max_tokens`` tokens from ``lm`` at the request's temperature (seeded)."""
        import torch

        prompt = [int(t) for t in body["prompt"]]
        temperature = float(body.get("temperature", 1.0))
        generator = torch.Generator().manual_seed(int(body.get("seed") or 0))
        ids, logprobs = list(prompt), []
        with self.lock, torch.no_grad():
            for _ in range(int(body.get("max_tokens") or 16)):
                logits = self.lm(input_ids=torch.tensor([ids])).logits[0, -1].float()
                scaled = logits / temperature if temperature > 0 else logits
                token = int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator))
                shown = scaled if self.logprobs_mode == "processed_logprobs" else logits
                logprobs.append(float(torch.log_softmax(shown, -1)[token]))
                ids.append(token)
        tokens = ids[len(prompt) :]
        return {
            "choices": [
                {
                    "text": "",
                    "prompt_token_ids": prompt,
                    "token_ids": tokens,
                    "logprobs": {
                        "tokens": [f"token_id:{t}" for t in tokens],
                        "token_logprobs": logprobs,
                    },
                    "finish_reason": "length",
                }
            ]
        }

    def __enter__(self) -> FakeVLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
