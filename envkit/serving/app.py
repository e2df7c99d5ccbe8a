"""``InferenceServer``: vLLM's OpenAI-compatible endpoints over one ``HFPolicy`` (``envkit serve``).

Endpoints (the shapes of vLLM's server, https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html):

* ``GET /health``: 200 once the model is loaded.
* ``GET /v1/models``: the served model and every loaded LoRA adapter (``parent``: the model).
* ``POST /v1/completions``: ``prompt`` as text or token ids; ``logprobs=0`` gives the sampled
  tokens' log-probabilities; ``return_token_ids`` adds ``prompt_token_ids`` and ``token_ids``.
* ``POST /v1/chat/completions``: the chat template renders ``messages`` (and ``tools``);
  ``logprobs: true``; tool calls in the model's format are parsed into ``message.tool_calls``.
* ``POST /v1/load_lora_adapter`` / ``POST /v1/unload_lora_adapter``: vLLM's runtime LoRA
  endpoints (``{"lora_name", "lora_path"}``); a request then picks an adapter with
  ``"model": "<lora_name>"``.
* ``GET /envkit/stats``: batches run so far (not in vLLM; for tests and benchmarks).

It is a stand-in for vLLM on machines without a GPU and for tests, not a replacement: one model,
padded batches, no paged attention, no streaming, ``n=1``. Errors are ``{"error": {...}}`` JSON
with status 400 (bad request), 404 (unknown model/adapter or path) or 500. A vLLM field it does
not implement is accepted only with its neutral value (``protocol.NEUTRAL``; ``null`` is always
"unset") and refused with 400 otherwise. Adapters vLLM would refuse are refused at load too
(``check_adapter``: rank above ``max_lora_rank``, bias, DoRA, ``modules_to_save``, modules other
than linear layers and embeddings).

The standard library's ``ThreadingHTTPServer`` serves each connection in a thread; the threads
hand prompts to one ``Engine``, which batches them (see ``envkit.serving.engine``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from envkit.policies.hf import HFPolicy, IdsRequest, SamplingParams, render_prompt
from envkit.serving import protocol as p
from envkit.serving.engine import Engine
from envkit.types import Completion, GenerationRequest, Message

__all__ = ["MAX_LORA_RANKS", "InferenceServer", "RequestError", "check_adapter"]

_DEFAULT_MAX_TOKENS = 1024  # chat requests without max_tokens (vLLM: the rest of the context)

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's ``--max-lora-rank`` accepts (its default: 16)."""


class RequestError(Exception):
    """An error answered with ``status`` and an OpenAI-style JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    owner: InferenceServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.log_requests:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            body: Any = None
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError as e:
                    raise RequestError(400, f"the request body is not JSON: {e}") from None
            status, payload = self.server.owner.handle(method, path, body)
        except RequestError as e:
            status, payload = e.status, p.error_body(e.status, e.message)
        except Exception as e:  # a bug must answer 500, never hang the client
            status, payload = 500, p.error_body(500, f"{type(e).__name__}: {e}")
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        if isinstance(payload, str):
            data, kind = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, kind = json.dumps(payload).encode(), "application/json"
        with contextlib.suppress(OSError):  # the client went away
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


class InferenceServer:
    """Serves one ``HFPolicy`` over HTTP with vLLM's endpoints (see the module doc).

    Args:
        policy: The policy (``engine="padded"``); its temperature, top-p and top-k are the
            defaults of requests that leave them out (``max_tokens`` defaults as in vLLM: 16 for
            completions; for chat, the rest of the context, at most 1024 here).
        served_model_name: The ``model`` name requests use for the base model.
        host: Interface to listen on.
        port: Port (0: a free one).
        max_batch_size: Most requests per batch.
        log_requests: Print one line per request to stderr.
        max_lora_rank: Largest LoRA rank an adapter may have (vLLM's ``--max-lora-rank``: one of
            ``MAX_LORA_RANKS``, default 16 as in vLLM).
    """

    def __init__(
        self,
        policy: HFPolicy,
        *,
        served_model_name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_batch_size: int = 32,
        log_requests: bool = False,
        max_lora_rank: int = 16,
    ) -> None:
        if max_lora_rank not in MAX_LORA_RANKS:
            raise ValueError(
                f"max_lora_rank must be one of vLLM's {MAX_LORA_RANKS}, got {max_lora_rank}"
            )
        self.max_lora_rank = max_lora_rank
        self._adapter_lock = threading.Lock()  # an in-place reload is not seen half-done
        self.policy = policy
        self.model_name = served_model_name
        self.log_requests = log_requests
        self.engine = Engine(policy, max_batch_size=max_batch_size)
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None
        self._routes: dict[tuple[str, str], Callable[[Any], tuple[int, Any]]] = {
            ("GET", "/health"): lambda _: (200, ""),
            ("GET", "/v1/models"): lambda _: (200, self.models()),
            ("GET", "/envkit/stats"): lambda _: (200, self.engine.stats.to_dict()),
            ("POST", "/v1/completions"): self.completions,
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/load_lora_adapter"): self.load_lora_adapter,
            ("POST", "/v1/unload_lora_adapter"): self.unload_lora_adapter,
        }

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def serve_forever(self) -> None:
        """Serves until ``close()`` (from another thread) or KeyboardInterrupt."""
        self._httpd.serve_forever(poll_interval=0.1)

    def start(self) -> InferenceServer:
        """Serves in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Makes ``serve_forever`` return soon; safe from signal handlers and any thread."""
        threading.Thread(target=self._httpd.shutdown, daemon=True).start()

    def close(self) -> None:
        """Stops serving and the engine. Idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()
        self.engine.close()

    def __enter__(self) -> InferenceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ routing

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Answers one request: ``(status, JSON payload or text)``; raises ``RequestError``."""
        route = self._routes.get((method, path))
        if route is None:
            if any(path == known for _, known in self._routes):
                raise RequestError(405, f"{method} is not allowed on {path}")
            raise RequestError(404, f"no endpoint {method} {path}")
        return route(body)

    def models(self) -> dict[str, Any]:
        cards = [{"id": self.model_name, "object": "model", "owned_by": "envkit", "root": None}]
        cards += [
            {"id": name, "object": "model", "owned_by": "envkit", "parent": self.model_name}
            for name in self.engine.adapters
        ]
        return {"object": "list", "data": cards}

    # ------------------------------------------------------------------ adapters

    def load_lora_adapter(self, body: Any) -> tuple[int, Any]:
        req = _parse(p.LoadLoRAAdapterRequest, body)
        if not req.lora_name or not req.lora_path:
            raise RequestError(400, "Both 'lora_name' and 'lora_path' must be provided.")
        if req.lora_name == self.model_name:
            raise RequestError(400, f"'{req.lora_name}' is the served model's name")
        replace = req.lora_name in self.engine.adapters
        if replace and not req.load_inplace:
            raise RequestError(
                400,
                f"The lora adapter '{req.lora_name}' has already been loaded. If you want to load "
                "the adapter in place, set 'load_inplace' to True.",
            )
        path = Path(req.lora_path).expanduser()
        if not path.exists():
            raise RequestError(
                404, f"Loading lora {req.lora_name} failed: No adapter found for {req.lora_path}"
            )
        try:
            check_adapter(path, self.policy.model, self.max_lora_rank)
            with self._adapter_lock:
                if replace:  # requests for the name wait in _adapter_for meanwhile
                    self.engine.unload_adapter(req.lora_name)
                self.engine.load_adapter(path, req.lora_name)
        except (ValueError, OSError) as e:
            raise RequestError(400, f"Loading lora {req.lora_name} failed: {e}") from None
        return 200, f"Success: LoRA adapter '{req.lora_name}' added successfully."

    def unload_lora_adapter(self, body: Any) -> tuple[int, Any]:
        req = _parse(p.UnloadLoRAAdapterRequest, body)
        if not req.lora_name:
            raise RequestError(400, "'lora_name' needs to be provided to unload a LoRA adapter.")
        try:
            self.engine.unload_adapter(req.lora_name)
        except ValueError:
            raise RequestError(
                404, f"The lora adapter '{req.lora_name}' cannot be found."
            ) from None
        return 200, f"Success: LoRA adapter '{req.lora_name}' removed successfully."

    # ------------------------------------------------------------------ generation

    def completions(self, body: Any) -> tuple[int, Any]:
        req = _parse(p.CompletionRequest, body)
        if req.echo:
            raise RequestError(400, "echo=true is not supported by envkit serve")
        if req.logprobs is not None and req.logprobs > 0:
            raise RequestError(400, _TOP_LOGPROBS)
        prompt = req.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise RequestError(400, "envkit serve takes one prompt per request")
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = list(self.policy.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        else:
            ids = [int(t) for t in prompt]  # type: ignore[union-attr]
        if not ids:
            raise RequestError(400, "the prompt is empty")
        self._check_ids(ids)
        request = self._request(req, ids, req.max_tokens, None)
        completion = self._run(request)
        tokens = completion.token_ids or []
        text = self._text(
            tokens,
            completion.finish_reason,
            skip_special=req.skip_special_tokens is not False,
            keep_stop=bool(req.include_stop_str_in_output),
        )
        logprobs = None
        if req.logprobs is not None:
            names = self._token_strings(tokens, bool(req.return_tokens_as_token_ids))
            offsets, at = [], 0
            for name in names:
                offsets.append(at)
                at += 0 if name.startswith("token_id:") else len(name)
            logprobs = p.CompletionLogprobs(
                text_offset=offsets,
                token_logprobs=list(completion.logprobs or []),
                tokens=names,
                top_logprobs=[
                    {n: lp} for n, lp in zip(names, completion.logprobs or [], strict=True)
                ],
            )
        choice = p.CompletionChoice(
            text=text,
            logprobs=logprobs,
            finish_reason=completion.finish_reason,  # type: ignore[arg-type]
            stop_reason=self._stop_reason(completion, request),
            prompt_token_ids=ids if req.return_token_ids else None,
            token_ids=tokens if req.return_token_ids else None,
        )
        usage = p.Usage(
            prompt_tokens=len(ids),
            completion_tokens=len(tokens),
            total_tokens=len(ids) + len(tokens),
        )
        answer = p.CompletionResponse(
            model=request.adapter or self.model_name, choices=[choice], usage=usage
        )
        return 200, answer.model_dump(exclude_none=False)

    def chat_completions(self, body: Any) -> tuple[int, Any]:
        req = _parse(p.ChatCompletionRequest, body)
        if req.top_logprobs:
            raise RequestError(400, _TOP_LOGPROBS)
        if req.include_stop_str_in_output:
            raise RequestError(
                400,
                "include_stop_str_in_output=true is not supported by envkit serve's chat "
                "completions (the message never ends with the stop token's text); use "
                "/v1/completions, or leave it out",
            )
        if req.tool_choice not in (None, "auto", "none"):
            raise RequestError(
                400, "envkit serve supports tool_choice 'auto' and 'none' only (no forced calls)"
            )
        try:
            request = GenerationRequest(
                messages=[Message.coerce(m) for m in req.messages], tools=req.tools or None
            )
        except (ValidationError, ValueError, TypeError) as e:
            raise RequestError(400, f"invalid messages: {e}") from None
        ids = render_prompt(self.policy.tokenizer, self.policy.tool_format, request)
        self._check_ids(ids)
        max_tokens = req.max_completion_tokens or req.max_tokens
        tools = request.tools if req.tool_choice != "none" else None
        ids_request = self._request(req, ids, max_tokens, tools)
        completion = self._run(ids_request)
        tokens = completion.token_ids or []
        message = completion.message
        content = message.content
        if content is not None and req.skip_special_tokens is not False:
            content = self._strip_special(content)
        calls = [c.model_dump() for c in message.tool_calls or []]
        finish = "tool_calls" if calls else completion.finish_reason
        logprobs = None
        if req.logprobs:
            names = self._token_strings(tokens, bool(req.return_tokens_as_token_ids))
            logprobs = p.ChatLogprobs(
                content=[
                    p.ChatTokenLogprob(
                        token=name, logprob=lp, bytes=list(name.encode("utf-8")), top_logprobs=[]
                    )
                    for name, lp in zip(names, completion.logprobs or [], strict=True)
                ]
            )
        choice = p.ChatChoice(
            message=p.ChatMessage(content=content, tool_calls=calls),
            logprobs=logprobs,
            finish_reason=finish,  # type: ignore[arg-type]
            stop_reason=self._stop_reason(completion, ids_request),
            token_ids=tokens if req.return_token_ids else None,
        )
        usage = p.Usage(
            prompt_tokens=len(ids),
            completion_tokens=len(tokens),
            total_tokens=len(ids) + len(tokens),
        )
        answer = p.ChatCompletionResponse(
            model=ids_request.adapter or self.model_name,
            choices=[choice],
            usage=usage,
            prompt_token_ids=ids if req.return_token_ids else None,
        )
        return 200, answer.model_dump()

    # ------------------------------------------------------------------ helpers

    def _request(
        self,
        req: p._Sampling,
        ids: list[int],
        max_tokens: int | None,
        tools: list[dict[str, Any]] | None,
    ) -> IdsRequest:
        """The ``IdsRequest`` an HTTP request asks for (checked: 400/404 ``RequestError``)."""
        prompt_len = len(ids)
        if req.n not in (None, 1):
            raise RequestError(
                400, f"envkit serve samples n=1 completion per request, got n={req.n}"
            )
        unsupported = req.unsupported()
        if unsupported:
            raise RequestError(
                400,
                "envkit serve does not implement "
                + "; ".join(unsupported)
                + ": leave these fields out (or null) or send the values it supports",
            )
        if req.stream:
            raise RequestError(400, "stream=true is not supported by envkit serve")
        if req.stop:
            raise RequestError(
                400, "stop strings are not supported by envkit serve; use stop_token_ids"
            )
        adapter = self._adapter_for(req.model)
        limit = self.engine.context_length
        if max_tokens is None:
            max_tokens = _DEFAULT_MAX_TOKENS
            if limit is not None:
                max_tokens = max(1, min(max_tokens, limit - prompt_len))
        if max_tokens < 1:
            raise RequestError(400, f"max_tokens must be at least 1, got {max_tokens}")
        if limit is not None and prompt_len + max_tokens > limit:
            raise RequestError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_len + max_tokens} tokens ({prompt_len} in the messages, {max_tokens} in "
                "the completion). Please reduce the length of the messages or completion.",
            )
        policy = self.policy
        temperature = policy.temperature if req.temperature is None else req.temperature
        top_p = policy.top_p if req.top_p is None else req.top_p
        top_k = policy.top_k if req.top_k is None else req.top_k
        problems = []
        if temperature < 0:
            problems.append(f"temperature must be non-negative, got {temperature}")
        if not 0 < top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {top_p}")
        if top_k < -1:
            problems.append(f"top_k must be -1 (disable), or at least 1, got {top_k}")
        if problems:
            raise RequestError(400, "; ".join(problems))
        try:
            params = SamplingParams(
                max_tokens=max_tokens,
                temperature=float(temperature),
                top_p=float(top_p),
                top_k=max(0, top_k),
                stop_token_ids=tuple(req.stop_token_ids or ()),
                seed=req.seed,
            )
            return IdsRequest(ids, params, adapter=adapter, tools=tools)
        except ValueError as e:
            raise RequestError(400, str(e)) from None

    def _adapter_for(self, model: str | None) -> str | None:
        if model is None or model == self.model_name:
            return None
        with self._adapter_lock:
            known = model in self.engine.adapters
        if known:
            return model
        raise RequestError(404, f"The model `{model}` does not exist.")

    def _check_ids(self, ids: Sequence[int]) -> None:
        vocab = len(self.policy.tokenizer)
        size = getattr(self.policy.model.config, "vocab_size", vocab)
        bad = [t for t in ids if not 0 <= t < max(vocab, size)]
        if bad:
            raise RequestError(400, f"token ids out of vocabulary: {bad[:5]}")

    def _run(self, request: IdsRequest) -> Completion:
        return self.engine.submit(request).result()

    def _text(
        self, tokens: list[int], finish: str | None, *, skip_special: bool, keep_stop: bool
    ) -> str:
        """A completion's ``text``: without the stop token's (vLLM's default), and without
        special tokens when ``skip_special`` (vLLM's ``skip_special_tokens``, default true)."""
        shown = tokens[:-1] if finish == "stop" and tokens and not keep_stop else tokens
        return self.policy.tokenizer.decode(shown, skip_special_tokens=skip_special)

    def _strip_special(self, text: str) -> str:
        """``text`` without the tokenizer's special tokens (``skip_special_tokens``)."""
        for token in getattr(self.policy.tokenizer, "all_special_tokens", []):
            text = text.replace(token, "")
        return text

    def _token_strings(self, tokens: list[int], as_ids: bool) -> list[str]:
        if as_ids:
            return [f"token_id:{t}" for t in tokens]
        return [self.policy.tokenizer.decode([t], skip_special_tokens=False) for t in tokens]

    def _stop_reason(self, completion: Completion, request: IdsRequest) -> int | None:
        """vLLM's ``stop_reason``: the request's stop token that ended the turn; None for EOS."""
        if completion.finish_reason != "stop" or not completion.token_ids:
            return None
        last = completion.token_ids[-1]
        assert request.params is not None
        if last in request.params.stop_token_ids and last not in self.engine.default_stops:
            return last
        return None


def check_adapter(path: str | Path, model: Any, max_lora_rank: int) -> None:
    """Refuses a peft adapter that vLLM would refuse to load (``ValueError`` says why).

    vLLM's checks (``PEFTHelper.validate_legal`` and the LoRA layers it can build): the rank
    (``r`` and every ``rank_pattern`` value) at most ``max_lora_rank``; no ``bias``, DoRA,
    ``modules_to_save`` or ``target_parameters``; and only linear layers and embeddings
    adapted. A directory without ``adapter_config.json`` is left to the loader's error.

    Args:
        path: The adapter directory.
        model: The served model (a plain transformers model or a ``PeftModel``).
        max_lora_rank: The server's largest rank.
    """
    import torch

    config_path = Path(path) / "adapter_config.json"
    if not config_path.is_file():
        return
    try:
        config = json.loads(config_path.read_text())
    except ValueError as e:
        raise ValueError(f"{config_path} is not JSON: {e}") from None
    problems = []
    ranks = [int(config.get("r") or 0), *(config.get("rank_pattern") or {}).values()]
    if max(ranks) > max_lora_rank:
        problems.append(
            f"LoRA rank {max(ranks)} is greater than max_lora_rank {max_lora_rank} (start the "
            f"server with a --max-lora-rank of at least {max(ranks)}: one of {MAX_LORA_RANKS})"
        )
    if config.get("bias", "none") != "none":
        problems.append(f"Adapter bias is not supported (bias={config['bias']!r}; use 'none')")
    if config.get("use_dora"):
        problems.append("DoRA is not supported (use_dora=true)")
    if config.get("modules_to_save"):
        problems.append(
            f"vLLM only supports modules_to_save being None (got {config['modules_to_save']})"
        )
    if config.get("target_parameters"):
        problems.append(f"target_parameters are not supported ({config['target_parameters']})")
    if problems:
        raise ValueError("; ".join(problems))
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    lora = LoraConfig(
        r=1,
        target_modules=config.get("target_modules"),
        layers_to_transform=config.get("layers_to_transform"),
        layers_pattern=config.get("layers_pattern"),
    )
    if lora.target_modules in (None, "all-linear"):
        return  # peft adapts linear layers only
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    wrong = []
    for name, module in base.named_modules():
        if ".lora_" in name or name.endswith(".base_layer") or not name:
            continue
        if not check_target_module_exists(lora, name):
            continue
        layer = getattr(module, "base_layer", module)
        if not isinstance(layer, (torch.nn.Linear, torch.nn.Embedding)):
            wrong.append(f"{name} ({type(layer).__name__})")
    if wrong:
        raise ValueError(
            f"the adapter targets modules vLLM cannot adapt: {', '.join(wrong[:5])}"
            f"{' ...' if len(wrong) > 5 else ''}; LoRA applies to linear layers and embeddings "
            "(e.g. target_modules='all-linear')"
        )


_TOP_LOGPROBS = (
    "envkit serve returns the sampled tokens' log-probabilities only: use logprobs=0 "
    "(completions) or logprobs=true without top_logprobs (chat)"
)


def _parse(model: type[BaseModel], body: Any) -> Any:
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
        )
        raise RequestError(400, f"invalid request: {problems}") from None
