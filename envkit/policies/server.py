"""``ServerPolicy``: sample from an OpenAI-compatible inference server (vLLM, ``envkit serve``).

It returns what training needs, like ``HFPolicy``: ``prompt_token_ids``, the sampled
``token_ids``, their ``logprobs`` and ``finish_reason``, with tool calls parsed. Two ways:

* With a ``tokenizer`` (recommended for training) the policy renders the chat template locally,
  exactly as ``HFPolicy`` does (``envkit.policies.hf.render_prompt``), and calls
  ``POST /v1/completions`` with the prompt as token ids, ``logprobs=0``,
  ``return_tokens_as_token_ids`` and ``return_token_ids``; it decodes the sampled ids and parses
  tool calls locally (``envkit.toolcalls``, with the offered tools' schemas). The trained token
  ids are then exactly the rendered prompt and the sampled tokens, with no re-tokenization.
* Without one it calls ``POST /v1/chat/completions`` (``logprobs: true``,
  ``return_tokens_as_token_ids``, ``return_token_ids``: vLLM >= 0.10.2) and takes the server's
  rendering, token ids and tool calls (vLLM needs ``--enable-auto-tool-choice
  --tool-call-parser ...`` for those).

Adapters: ``load_adapter(path, name)`` asks the server to load a peft LoRA adapter
(``POST /v1/load_lora_adapter``; vLLM needs ``--enable-lora`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), ``use_adapter(name)`` sends the next requests with
``"model": name``. A trainer saves its adapter after each optimizer step, loads it under a new
name, switches to it and unloads the previous one.

Sampling is exactly the policy's: every request carries the policy's ``temperature``, ``top_p``
and ``top_k`` and the neutral values of the fields it does not use (``min_p: 0``,
``repetition_penalty: 1``, ``presence_penalty: 0``, ``frequency_penalty: 0``). vLLM fills a field
left out from the model's ``generation_config.json`` (``--generation-config auto``, its default),
so a checkpoint that sets ``repetition_penalty`` would otherwise sample from another policy
than the one being trained.

Log-probabilities: ``envkit serve`` returns ``HFPolicy``'s, ``log softmax(logits / T)`` before
top-k/top-p. vLLM returns the model's raw ones by default (temperature 1); start it with
``--logprobs-mode processed_logprobs`` (and sample with ``top_p=1``, ``top_k`` off) to get the
same values. The client cannot see the flag: ``check_logprobs(model)`` compares one sampled
answer with a local forward pass and raises on raw log-probabilities (the trainer calls it once).
See docs/serving.md.

Requests that fail to connect or get a 5xx answer are retried with backoff; then
``ServerError`` names the URL. ``load_adapter`` is not idempotent, so it is never retried
blindly: before a retry it asks ``GET /v1/models`` whether the earlier attempt loaded the adapter
after all, and an "already loaded" refusal of a retry counts as success. A name that an earlier
process left registered (``envkit train --resume`` against a server that kept running) is
unloaded and loaded again from the new path. A server without runtime LoRA, or one whose API
processes each keep their own adapters (vLLM's ``--data-parallel-size``/``--api-server-count``
> 1), fails with an error naming the flags to fix.

``seed`` makes sampling reproducible: request ``i`` of the policy is sent with seed
``seed * 1_000_003 + i`` (one shared seed would give a GRPO group identical samples). Copies of
one policy that sample at the same time (the Ray backend's actors each unpickle one) must not
send the same seeds: ``set_seed_stream(...)`` gives a copy its own stream, derived from ``seed``
and the stream's parts (the Ray backend passes the actor index and the collect number).

Example:
    >>> policy = ServerPolicy("http://127.0.0.1:8000", "tiny-random", max_new_tokens=32)
    >>> policy.base_url, policy.model
    ('http://127.0.0.1:8000', 'tiny-random')
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envkit.policies.base import BasePolicy
from envkit.types import Completion, GenerationRequest, Message, ToolCall, Usage

__all__ = ["NEUTRAL_SAMPLING", "ServerError", "ServerPolicy"]

NEUTRAL_SAMPLING: dict[str, Any] = {
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
"""Fields every request sends with their "off" value, so the server's defaults (vLLM's come from
the model's ``generation_config.json``) cannot change the sampling distribution."""

_RUNTIME_LORA_HINT = (
    "the server has no runtime LoRA endpoints. Start vLLM with --enable-lora (and "
    "--max-lora-rank >= the adapter's r) and the environment variable "
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; envkit serve always has them"
)
_DATA_PARALLEL_HINT = (
    "with --data-parallel-size > 1 (or --api-server-count > 1) each of vLLM's API server "
    "processes keeps its own adapter registry, so a load reaches only one of them. Start vLLM "
    "with --data-parallel-size 1 --api-server-count 1 (run one server per GPU group instead)"
)


class ServerError(RuntimeError):
    """The inference server could not be reached, refused a request or answered unusably.

    Attributes:
        url: The URL that was called.
        status: The HTTP status (``None``: no answer).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ServerPolicy(BasePolicy):
    """Samples from an OpenAI-compatible server with vLLM's extensions (see the module doc).

    Args:
        base_url: The server, e.g. ``"http://127.0.0.1:8000"`` (a trailing ``/v1`` is accepted).
        model: The served base model's name (vLLM's ``--served-model-name``, or the model path).
        tokenizer: The model's tokenizer (or a model spec/directory to load it from): render
            prompts locally and call ``/v1/completions``. ``None``: ``/v1/chat/completions``.
        max_new_tokens: Most tokens per turn (``max_tokens``).
        temperature: Sampling temperature (``0``: greedy).
        top_p: Nucleus mass (``1``: off).
        top_k: Top-k (``0``: off; sent as ``-1``, which every vLLM version accepts).
        api_key: Sent as ``Authorization: Bearer`` (vLLM's ``--api-key``).
        timeout_s: Seconds per HTTP request.
        max_concurrency: Most requests in flight at once.
        seed: Makes sampling reproducible (see the module doc).
        max_retries: Retries of a request that could not connect or got a 5xx answer.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: Any = None,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_concurrency: int = 64,
        seed: int | None = None,
        max_retries: int = 3,
    ) -> None:
        from envkit.policies.hf import _check_args

        _check_args(max_new_tokens, temperature, top_p, top_k, 1, 0.0)
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ValueError(
                "max_concurrency must be >= 1, max_retries >= 0 and timeout_s > 0; got "
                f"{max_concurrency}, {max_retries}, {timeout_s}"
            )
        url = base_url.rstrip("/")
        self.base_url = url[: -len("/v1")] if url.endswith("/v1") else url
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.seed = seed
        self.max_retries = max_retries
        self.tokenizer = _load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.tool_format: Any = None
        self.stop_token_ids: list[int] = []
        if self.tokenizer is not None:
            from envkit._tokens import stop_token_ids
            from envkit.toolcalls import detect_format

            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError(
                    "the tokenizer has no chat template; ServerPolicy renders conversations with "
                    "it. Set tokenizer.chat_template or pass tokenizer=None to let the server "
                    "render them (/v1/chat/completions)"
                )
            self.tool_format = detect_format(self.tokenizer)
            self.stop_token_ids = stop_token_ids(None, self.tokenizer)
        self._active: str | None = None
        self._adapters: list[str] = []
        self._stream: tuple[int, ...] = ()
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="envkit-server-policy"
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without the lock and the thread pool (``collect(..., backend="ray")`` sends
        the policy to every node); ``__setstate__`` makes new ones."""
        state = dict(self.__dict__)
        del state["_lock"], state["_pool"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="envkit-server-policy"
        )

    # ------------------------------------------------------------------ adapters

    @property
    def adapters(self) -> list[str]:
        """The adapters this policy loaded on the server (and has not unloaded)."""
        return list(self._adapters)

    @property
    def active_adapter(self) -> str | None:
        """The adapter requests are sent to (``None``: the base ``model``)."""
        return self._active

    def load_adapter(self, path: str | Path, name: str, *, replace_stale: bool = True) -> None:
        """Has the server load the peft adapter at ``path`` under ``name`` (not activated).

        ``path`` must be readable by the server (same machine or shared storage); it is sent
        resolved to an absolute path. Loading is not idempotent: an attempt whose answer was lost
        (timeout, dropped connection, 5xx) may have loaded the adapter, so before a retry the
        server's ``GET /v1/models`` is checked for ``name``, and an "already loaded" refusal of a
        retry counts as success.

        Args:
            path: The adapter directory (``save_pretrained`` of a peft model).
            name: The server-side name (``"model"`` of later requests).
            replace_stale: When the server already has ``name`` but this policy did not load it
                (an earlier process registered it: a run resumed against a server that kept
                running), unload it and load ``path`` in its place. False: raise.

        Raises:
            ServerError: the server refused (bad path, name taken by this policy, rank above the
                server's ``--max-lora-rank``, runtime LoRA not enabled...).
        """
        body = {"lora_name": name, "lora_path": str(Path(path).expanduser().resolve())}

        def loaded_by_earlier_attempt(error: ServerError | None) -> bool:
            if error is not None:  # a retry's refusal: did the lost attempt load it?
                return _already_loaded(error)
            return name in self._served_models()

        try:
            self._call("/v1/load_lora_adapter", body, done_before_retry=loaded_by_earlier_attempt)
        except ServerError as error:
            with self._lock:
                ours = name in self._adapters
            if not (replace_stale and _already_loaded(error) and not ours):
                raise
            # Registered by an earlier process: its weights are not those at ``path``.
            self._call("/v1/unload_lora_adapter", {"lora_name": name})
            self._call("/v1/load_lora_adapter", body, done_before_retry=loaded_by_earlier_attempt)
        with self._lock:
            if name not in self._adapters:
                self._adapters.append(name)

    def unload_adapter(self, name: str) -> None:
        """Has the server unload adapter ``name``; requests go to the base model if it was active.

        Raises:
            ServerError: the server does not know ``name`` (404) or failed.
        """
        self._call("/v1/unload_lora_adapter", {"lora_name": name})
        with self._lock:
            if name in self._adapters:
                self._adapters.remove(name)
            if self._active == name:
                self._active = None

    def use_adapter(self, name: str | None) -> None:
        """Sends later requests with ``"model": name`` (``None``: the base ``model``).

        The name is not checked here (the server may have loaded it at start, e.g.
        ``envkit serve --adapter``); an unknown one fails the next request with HTTP 404.
        """
        self._active = name

    # ------------------------------------------------------------------ generation

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Answers each request with one server call (up to ``max_concurrency`` at once)."""
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        model = self._active or self.model
        calls = [
            loop.run_in_executor(self._pool, self._complete, request, model, self._next_seed())
            for request in requests
        ]
        return list(await asyncio.gather(*calls))

    def set_seed_stream(self, *parts: int) -> None:
        """Gives this copy its own seeds: request ``i`` gets a seed derived from ``seed``,
        ``parts`` and ``i`` (no parts: the default ``seed * 1_000_003 + i``).

        The Ray backend calls it on each actor's copy with ``(actor index, collect number)``, so
        copies sampling at once never send the same seed and the seeds stay deterministic in
        ``seed``.

        >>> a, b = ServerPolicy("http://h:1", "m", seed=7), ServerPolicy("http://h:1", "m", seed=7)
        >>> a.set_seed_stream(0, 0); b.set_seed_stream(1, 0)
        >>> a._next_seed() != b._next_seed()
        True
        """
        if not all(isinstance(p, int) and p >= 0 for p in parts):
            raise ValueError(f"seed stream parts must be ints >= 0, got {parts!r}")
        with self._lock:
            self._stream = tuple(parts)
            self._counter = itertools.count()

    def _next_seed(self) -> int | None:
        if self.seed is None:
            return None
        with self._lock:
            i = next(self._counter)
        if not self._stream:
            return (self.seed * 1_000_003 + i) % (2**31)
        key = "/".join(str(p) for p in (self.seed, *self._stream, i)).encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % (2**31)

    def _sampling(self, model: str, seed: int | None) -> dict[str, Any]:
        """The sampling fields of a request: the policy's, and neutral values for the rest.

        vLLM fills every field left out from the model's ``generation_config.json``
        (``--generation-config auto``), e.g. a ``repetition_penalty`` of 1.1, so the fields the
        policy does not use are sent with their neutral values.
        """
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k if self.top_k > 0 else -1,  # -1: off in every vLLM version
            **NEUTRAL_SAMPLING,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    def _complete(self, request: GenerationRequest, model: str, seed: int | None) -> Completion:
        if self.tokenizer is not None:
            return self._complete_tokens(request, model, seed)
        return self._complete_chat(request, model, seed)

    def _complete_tokens(
        self, request: GenerationRequest, model: str, seed: int | None
    ) -> Completion:
        from envkit.policies.hf import completion_from_tokens, render_prompt

        prompt_ids = render_prompt(self.tokenizer, self.tool_format, request)
        body = {
            **self._sampling(model, seed),
            "prompt": prompt_ids,
            "logprobs": 0,
            "stop_token_ids": self.stop_token_ids,
        }
        url = self.base_url + "/v1/completions"
        answer = self._call("/v1/completions", body)
        choice = _one_choice(answer, url)
        tokens = _token_ids(choice, (choice.get("logprobs") or {}).get("tokens"), url)
        logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
        _check_logprobs(logprobs, tokens, url)
        stops = list(self.stop_token_ids)
        if choice.get("finish_reason") == "stop" and tokens and tokens[-1] not in stops:
            stops.append(tokens[-1])  # a stop token the server knows (generation_config)
        return completion_from_tokens(
            self.tokenizer,
            self.tool_format,
            stops,
            prompt_ids,
            tokens,
            logprobs,
            tools=request.tools,
        )

    def _complete_chat(
        self, request: GenerationRequest, model: str, seed: int | None
    ) -> Completion:
        body = {
            **self._sampling(model, seed),
            "messages": [m.to_dict() for m in request.messages],
            "logprobs": True,
            "skip_special_tokens": False,  # the content HFPolicy and the tokenizer path give
        }
        if request.tools:
            body["tools"] = request.tools
        url = self.base_url + "/v1/chat/completions"
        answer = self._call("/v1/chat/completions", body)
        choice = _one_choice(answer, url)
        content = (choice.get("logprobs") or {}).get("content") or []
        tokens = _token_ids(choice, [c.get("token") for c in content], url)
        logprobs = [c.get("logprob") for c in content]
        _check_logprobs(logprobs, tokens, url)
        prompt_ids = answer.get("prompt_token_ids")
        if not isinstance(prompt_ids, list):
            raise ServerError(
                f"{url} answered without prompt_token_ids: the server must support "
                "return_token_ids (vLLM >= 0.10.2, envkit serve), or pass tokenizer= so the "
                "prompt is rendered locally and sent as token ids",
                url=url,
            )
        raw = choice.get("message") or {}
        calls = [
            ToolCall.create(
                c["function"]["name"], c["function"].get("arguments") or "{}", id=c["id"]
            )
            for c in raw.get("tool_calls") or []
        ]
        finish = choice.get("finish_reason")
        return Completion(
            message=Message(role="assistant", content=raw.get("content"), tool_calls=calls or None),
            prompt_token_ids=[int(t) for t in prompt_ids],
            token_ids=tokens,
            logprobs=[float(x) for x in logprobs],
            finish_reason="stop" if finish == "tool_calls" else finish,
            usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=len(tokens)),
        )

    # ------------------------------------------------------------------ checks

    def check_logprobs(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        max_new_tokens: int = 8,
        tolerance: float = 0.05,
    ) -> str:
        """Checks that the server returns the log-probabilities training assumes.

        Training needs ``log softmax(logits / T)`` of the sampled tokens (``HFPolicy``'s values,
        ``envkit serve``'s, vLLM's with ``--logprobs-mode processed_logprobs``). vLLM's default,
        ``raw_logprobs``, gives ``log softmax(logits)`` whatever the temperature, and a client
        cannot see the flag. So this samples one answer from the base model at the policy's
        temperature (top-p 1, top-k off) and compares its log-probabilities with a forward pass
        of ``model``, the same weights held locally. At temperature 0 or 1 both modes agree and
        nothing is sent. Call it before loading adapters (the server must serve the same
        weights as ``model``).

        Args:
            model: The base model as a local transformers model (any device).
            tokenizer: Renders the probe prompt (default: the policy's; ``None``: fixed ids).
            max_new_tokens: Tokens sampled for the comparison.
            tolerance: Largest mean absolute difference counted as a match.

        Returns:
            ``"processed"`` (the values match), or ``"not needed"`` (temperature 0 or 1).

        Raises:
            ServerError: the server returned raw log-probabilities (with the flag to fix it), or
                values that match neither (different weights?), or failed.
        """
        import torch

        temperature = self.temperature
        if temperature in (0, 1):
            return "not needed"
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        prompt: list[int] = []
        if tokenizer is not None:
            prompt = list(tokenizer("The numbers: 1, 2, 3,", add_special_tokens=False)["input_ids"])
        vocab = int(model.get_input_embeddings().weight.shape[0])
        prompt = prompt or [(7 * i + 11) % vocab for i in range(8)]
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": 1.0,
            "top_k": -1,
            **NEUTRAL_SAMPLING,
            "seed": 0,
            "logprobs": 0,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
        }
        url = self.base_url + "/v1/completions"
        choice = _one_choice(self._call("/v1/completions", body), url)
        tokens = _token_ids(choice, (choice.get("logprobs") or {}).get("tokens"), url)
        logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
        _check_logprobs(logprobs, tokens, url)
        if not tokens:
            raise ServerError(f"{url} sampled no tokens to check log-probabilities on", url=url)
        device = next(model.parameters()).device
        with torch.no_grad():
            ids = torch.tensor([prompt + tokens], device=device)
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float().cpu()
        picked = torch.tensor(tokens)[:, None]
        got = torch.tensor([float(x) for x in logprobs])
        processed = torch.log_softmax(logits / temperature, -1).gather(1, picked)[:, 0]
        raw = torch.log_softmax(logits, -1).gather(1, picked)[:, 0]
        off_processed = float((got - processed).abs().mean())
        off_raw = float((got - raw).abs().mean())
        if off_processed <= tolerance:
            return "processed"
        numbers = (
            f"mean |difference| to log softmax(logits / {temperature:g}): {off_processed:.4f}, "
            f"to log softmax(logits): {off_raw:.4f}"
        )
        if off_raw <= tolerance:
            raise ServerError(
                f"{url} returns raw log-probabilities (log softmax(logits), temperature 1) for "
                f"tokens sampled at temperature {temperature:g} ({numbers}): the importance "
                "ratios of training would be biased. Start vLLM with --logprobs-mode "
                "processed_logprobs (docs/serving.md), or train at temperature 1",
                url=url,
            )
        raise ServerError(
            f"{url} returned log-probabilities that match neither a local forward pass at "
            f"temperature {temperature:g} nor the raw ones ({numbers}). Does the server serve "
            f"the same weights as the local model under {self.model!r} (same checkpoint, no "
            "adapter, a similar dtype)?",
            url=url,
        )

    # ------------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _served_models(self) -> set[str]:
        """The model and adapter names ``GET /v1/models`` lists (empty when it cannot tell)."""
        req = urllib.request.Request(self.base_url + "/v1/models", headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=min(self.timeout_s, 30.0)) as response:
                answer = _decode(response.read())
        except (urllib.error.URLError, OSError):
            return set()
        data = answer.get("data") if isinstance(answer, dict) else None
        return {str(m.get("id")) for m in data or [] if isinstance(m, dict)}

    def _call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        done_before_retry: Any = None,
    ) -> Any:
        """POSTs ``body``; returns the JSON (or text) answer. Retries connection errors and 5xx.

        ``done_before_retry(error)`` (a non-idempotent call): called with ``None`` before each
        retry, and with a retry's 4xx ``ServerError``; when it returns True an earlier attempt's
        effect is in place, and the call returns ``None`` instead of repeating or failing.
        """
        url = self.base_url + path
        headers = self._headers()
        data = json.dumps(body).encode()
        problem, status = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)))
                if done_before_retry is not None and done_before_retry(None):
                    return None
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                    return _decode(response.read())
            except urllib.error.HTTPError as e:
                message = self._explain(path, body, e.code, _error_message(e.read()))
                if e.code < 500:
                    error = ServerError(
                        f"{url} answered HTTP {e.code}: {message}", url=url, status=e.code
                    )
                    if attempt and done_before_retry is not None and done_before_retry(error):
                        return None
                    raise error from None
                problem, status = f"HTTP {e.code}: {message}", e.code
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                problem, status = f"{type(reason).__name__}: {reason}", None
        if status is not None:
            raise ServerError(
                f"{url} failed {self.max_retries + 1} times; last answer {problem}",
                url=url,
                status=status,
            )
        raise ServerError(
            f"cannot reach the inference server at {url} ({problem}; {self.max_retries + 1} "
            "attempts). Is it running? Start one with `envkit serve MODEL --port N` or "
            "`vllm serve` (docs/serving.md), or fix base_url",
            url=url,
        )

    def _explain(self, path: str, body: dict[str, Any], status: int, message: str) -> str:
        """``message`` with the likely cause and fix of a 404 that vLLM's setup explains."""
        if status != 404:
            return message
        if path.endswith("_lora_adapter") and str(body.get("lora_name")) not in message:
            return f"{message} ({_RUNTIME_LORA_HINT})"  # not vLLM's unknown-adapter answer
        model = body.get("model")
        with self._lock:
            ours = model is not None and model in self._adapters
        if path in ("/v1/completions", "/v1/chat/completions") and ours:
            return (
                f"{message} (the server accepted loading adapter {model!r} and has not "
                f"unloaded it through this policy: {_DATA_PARALLEL_HINT})"
            )
        return message

    def close(self) -> None:
        """Stops the policy's HTTP threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self.close()


def _load_tokenizer(spec: str) -> Any:
    from envkit.model_spec import parse_model_spec

    parsed = parse_model_spec(spec, api=False)
    if parsed.kind == "bundled":
        from envkit.models import load_model

        return load_model(parsed.name)[1]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(parsed.name)


def _already_loaded(error: ServerError) -> bool:
    """Whether ``error`` is a load refused because the name is registered (vLLM's 400)."""
    return error.status == 400 and "already" in str(error).lower()


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _error_message(raw: bytes) -> str:
    answer = _decode(raw)
    if isinstance(answer, dict):
        error = answer.get("error", answer)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if "message" in answer:
            return str(answer["message"])
    return str(answer)[:500]


def _one_choice(answer: Any, url: str) -> dict[str, Any]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices:
        raise ServerError(f"{url} answered without choices: {str(answer)[:300]}", url=url)
    return choices[0]


def _token_ids(choice: dict[str, Any], names: Sequence[Any] | None, url: str) -> list[int]:
    """The sampled ids: vLLM's ``token_ids``, else the ``token_id:N`` strings of ``logprobs``."""
    ids = choice.get("token_ids")
    if isinstance(ids, list):
        return [int(t) for t in ids]
    if names and all(isinstance(n, str) and n.startswith("token_id:") for n in names):
        return [int(n.split(":", 1)[1]) for n in names]
    raise ServerError(
        f"{url} answered without token ids: the server must support return_token_ids or "
        "return_tokens_as_token_ids with logprobs (vLLM, envkit serve)",
        url=url,
    )


def _check_logprobs(logprobs: Any, tokens: list[int], url: str) -> None:
    if not isinstance(logprobs, list) or len(logprobs) != len(tokens):
        got = "none" if not isinstance(logprobs, list) else f"{len(logprobs)}"
        raise ServerError(
            f"{url} answered {len(tokens)} tokens with {got} log-probabilities: the server must "
            "return logprobs (vLLM, envkit serve)",
            url=url,
        )
    if any(x is None for x in logprobs):
        raise ServerError(f"{url} answered a null log-probability", url=url)
