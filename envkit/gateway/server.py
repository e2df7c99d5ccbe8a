"""``Gateway``: the OpenAI-compatible HTTP server that records every model call of every session.

Each rollout gets a session and a base URL with the session id in its path,
``http://127.0.0.1:PORT/s/<session>/v1``, so any OpenAI-compatible client (the ``openai`` SDK,
litellm, agent frameworks) works unchanged. Endpoints under that base URL:

* ``POST /chat/completions``: messages (with assistant ``tool_calls`` and ``tool`` results),
  ``tools``, ``tool_choice`` (``auto``/``none``), ``logprobs``, ``max_tokens``, ``stream``
  (with ``stream_options.include_usage``); see ``envkit.gateway.chat`` for what is refused.
* ``POST /responses``: the OpenAI Responses API (``envkit.gateway.responses``), answered through
  the same chat path.
* ``GET /models``: the session's model.

Every call leaves exactly one ``CallRecord`` (failed ones too), appended to the session's
``SessionLog`` (``<log_dir>/<session>.jsonl``) and to ``session.records`` before the answer is
sent. The server runs on its own event loop in a background thread; calls of all sessions are
sampled together (an ``HFPolicy`` upstream batches the calls in flight).

Example:
    >>> from envkit.policies import ScriptedPolicy
    >>> import json, urllib.request
    >>> with Gateway(ScriptedPolicy(["4"]), served_model_name="m") as gateway:
    ...     session = gateway.open_session("demo")
    ...     body = {"model": "m", "messages": [{"role": "user", "content": "2+2?"}]}
    ...     req = urllib.request.Request(session.base_url + "/chat/completions",
    ...                                  data=json.dumps(body).encode(), method="POST")
    ...     answer = json.load(urllib.request.urlopen(req))
    ...     answer["choices"][0]["message"]["content"], session.records[0].message.content
    ('4', '4')
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from envkit.gateway.chat import (
    ChatCompletionBody,
    chat_answer,
    parse_chat_body,
    parse_messages,
    stream_chunks,
)
from envkit.gateway.errors import GatewayError
from envkit.gateway.records import Api, CallRecord, SessionLog
from envkit.gateway.upstream import (
    PolicyUpstream,
    Sampling,
    Upstream,
    UpstreamRequest,
    UpstreamRequestError,
)

__all__ = ["Gateway", "Session"]

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Session:
    """One rollout's view of the gateway: its base URL and the calls made through it.

    Made by ``Gateway.open_session``. Point a client at ``session.base_url``; every call made
    through it appears in ``session.records`` (in the order the calls completed, which is the
    order of the session's file) and in ``session.path``.

    Attributes:
        id: The session id (the ``/s/<id>/v1`` part of the URL).
        model: The model name clients must send (another name is answered 404).
        base_url: ``http://127.0.0.1:PORT/s/<id>/v1``: the client's ``base_url``.
        path: The session's JSONL file of ``CallRecord`` lines.
    """

    def __init__(self, gateway: Gateway, session_id: str, model: str, log: SessionLog) -> None:
        self.id = session_id
        self.model = model
        self.base_url = f"{gateway.url}/s/{session_id}/v1"
        self.path = log.path
        self._gateway = gateway
        self._log = log
        self._records: list[CallRecord] = []
        self._lock = threading.Lock()
        self._calls = 0

    @property
    def records(self) -> list[CallRecord]:
        """The ``CallRecord`` of every call so far, in the order they completed."""
        with self._lock:
            return list(self._records)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (later calls are answered 404)."""
        return self._gateway._sessions.get(self.id) is not self

    def close(self) -> None:
        """Ends the session: later calls are answered 404. Calls in flight still finish and are
        recorded. Idempotent."""
        self._gateway._close_session(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session({self.id!r}, base_url={self.base_url!r}, calls={len(self._records)})"

    def _next_index(self) -> int:
        with self._lock:
            index = self._calls
            self._calls += 1
            return index

    def _add(self, record: CallRecord) -> None:
        """Persists ``record`` (flushed) and keeps it in memory, in the same order."""
        with self._lock:
            self._log.append(record)
            self._records.append(record)


class Gateway:
    """An OpenAI-compatible server in front of an upstream, recording every call per session.

    Args:
        upstream: What samples: an ``Upstream`` or any envkit policy (wrapped in a
            ``PolicyUpstream``; an ``HFPolicy`` gives token ids and batches concurrent calls).
        served_model_name: The model name clients send (``GET /models`` lists it); a session
            may be given another with ``open_session(model=...)``.
        host: Interface to listen on (the default serves this machine only).
        port: Port (``0``: a free one; read ``gateway.port``).
        log_dir: Where each session's ``<session>.jsonl`` goes (default: a fresh temp dir).
        sampling: ``"policy"`` (default) or ``"client"``: whose temperature/top-p/max_tokens
            apply, when ``upstream`` is a policy (see ``envkit.gateway.upstream``).
        auto_sessions: Open a session on the first call to an unknown session id (for the
            standalone ``envkit gateway``); ``False``: only ``open_session`` opens them and an
            unknown id is answered 404.
        max_body_bytes: Largest request body accepted (larger: 413).
        stream_chunk_chars: Characters per content chunk of a streamed answer.

    Example:
        >>> from envkit.policies import ScriptedPolicy
        >>> gateway = Gateway(ScriptedPolicy(["hi"]), served_model_name="m").start()
        >>> s = gateway.open_session("s1")
        >>> s.base_url == f"{gateway.url}/s/s1/v1", s.path.name
        (True, 's1.jsonl')
        >>> gateway.close()
    """

    def __init__(
        self,
        upstream: Upstream | Any,
        *,
        served_model_name: str = "policy",
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: str | Path | None = None,
        sampling: Sampling | None = None,
        auto_sessions: bool = False,
        max_body_bytes: int = 32 * 2**20,
        stream_chunk_chars: int = 32,
    ) -> None:
        if isinstance(upstream, Upstream):
            if sampling is not None and sampling != upstream.sampling:
                raise ValueError(
                    f"sampling={sampling!r} conflicts with the upstream's {upstream.sampling!r}; "
                    "set it on the upstream (PolicyUpstream(policy, sampling=...))"
                )
            self.upstream: Upstream = upstream
        else:
            self.upstream = PolicyUpstream(upstream, sampling=sampling or "policy")
        if not served_model_name:
            raise ValueError("served_model_name must be a non-empty model name")
        if max_body_bytes < 1024 or stream_chunk_chars < 1:
            raise ValueError(
                f"max_body_bytes must be >= 1024 and stream_chunk_chars >= 1, got "
                f"{max_body_bytes} and {stream_chunk_chars}"
            )
        self.served_model_name = served_model_name
        self.host = host
        self.auto_sessions = auto_sessions
        self.max_body_bytes = max_body_bytes
        self.stream_chunk_chars = stream_chunk_chars
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if log_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="envkit-gateway-")
            log_dir = self._tempdir.name
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sessions: dict[str, Session] = {}
        self._closed_ids: set[str] = set()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.client_disconnects = 0
        """Streams the client stopped reading before their end (each call still recorded)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The port the gateway listens on."""
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (session URLs add ``/s/<session>/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def in_flight(self) -> int:
        """Calls being answered right now."""
        return self._in_flight

    @property
    def sessions(self) -> dict[str, Session]:
        """The open sessions by id."""
        with self._lock:
            return dict(self._sessions)

    def start(self) -> Gateway:
        """Starts serving in a background thread with its own event loop; returns ``self``."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # reported to start()
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                _cancel_all(loop)
                loop.close()

        self._thread = threading.Thread(target=run, name="envkit-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise RuntimeError(f"the gateway could not start: {failure[0]}") from failure[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[_json_errors(self)])
        app.router.add_post("/s/{session}/v1/chat/completions", self._chat_completions)
        app.router.add_post("/s/{session}/v1/responses", self._responses)
        app.router.add_get("/s/{session}/v1/models", self._models)
        app.router.add_get("/s/{session}/v1/models/{model}", self._model)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, backlog=1024).start()

    def close(self) -> None:
        """Stops serving (calls in flight get up to 5 s to finish). Idempotent.

        The session files stay where they are, except in the temp dir the gateway made when
        given no ``log_dir``, which is removed.
        """
        thread, loop = self._thread, self._loop
        if thread is not None and loop is not None and self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
        self._thread = self._loop = self._runner = None
        with contextlib.suppress(OSError):
            self._sock.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gateway({self.url!r}, sessions={len(self._sessions)})"

    # ------------------------------------------------------------------ sessions

    def open_session(self, session_id: str | None = None, *, model: str | None = None) -> Session:
        """Opens a session; its ``base_url`` is what the client's ``base_url`` should be.

        Args:
            session_id: The id in the URL (letters, digits, ``.``, ``_``, ``-``; at most 128);
                ``None``: a fresh random one.
            model: The model name this session's calls must send (default:
                ``served_model_name``).

        Raises:
            ValueError: the id is malformed, or already used by this gateway.
        """
        session_id = session_id if session_id is not None else uuid.uuid4().hex
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            raise ValueError(
                f"session id {session_id!r} is not usable: use 1-128 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit (or pass None for a random one)"
            )
        with self._lock:
            if session_id in self._sessions or session_id in self._closed_ids:
                raise ValueError(
                    f"session {session_id!r} was already opened on this gateway; each rollout "
                    "needs its own id (pass None for a random one)"
                )
            session = Session(
                self,
                session_id,
                model or self.served_model_name,
                SessionLog(self.log_dir, session_id),
            )
            self._sessions[session_id] = session
        return session

    def _close_session(self, session: Session) -> None:
        with self._lock:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]
                self._closed_ids.add(session.id)

    def _session(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
            closed = session_id in self._closed_ids
        if session is not None:
            return session
        if closed:
            raise GatewayError(
                404,
                f"session {session_id!r} is closed; open a new session (gateway.open_session()) "
                "for another rollout",
                code="session_closed",
            )
        if self.auto_sessions and _SESSION_ID.fullmatch(session_id):
            with contextlib.suppress(ValueError):  # opened by a concurrent first call
                return self.open_session(session_id)
            return self._session(session_id)
        raise GatewayError(
            404,
            f"no session {session_id!r} on this gateway; open one with "
            "gateway.open_session() and use its session.base_url as the client's base_url "
            "(the standalone `envkit gateway` opens a session on its first call)",
            code="session_not_found",
        )

    # ------------------------------------------------------------------ endpoints

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(self._sessions)})

    async def _models(self, request: web.Request) -> web.Response:
        session = self._session(request.match_info["session"])
        return web.json_response({"object": "list", "data": [_model_card(session.model)]})

    async def _model(self, request: web.Request) -> web.Response:
        session = self._session(request.match_info["session"])
        name = request.match_info["model"]
        if name != session.model:
            raise _model_not_found(name, session)
        return web.json_response(_model_card(name))

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._call(request, "chat.completions")

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._call(request, "responses")

    async def _call(self, request: web.Request, api: Api) -> web.StreamResponse:
        """One model call: answered, recorded once (also when it fails), then sent."""
        session = self._session(request.match_info["session"])  # unknown: 404, no record
        started, t0 = time.time(), time.perf_counter()
        fields: dict[str, Any] = {"session": session.id, "index": session._next_index()}
        fields.update(api=api, started=started)
        self._in_flight += 1
        try:
            try:
                events = await self._answer(request, session, api, fields)
                status, payload = 200, None
            except GatewayError as e:
                events, status, payload = None, e.status, e.body()
            except Exception as e:  # a gateway bug: answer 500, never hang the client
                error = GatewayError(500, f"gateway error: {type(e).__name__}: {e}", code="bug")
                events, status, payload = None, 500, error.body()
            if payload is not None:
                fields.update(status=status, error=payload["error"]["message"], message=None)
            fields["duration_s"] = time.perf_counter() - t0
            try:
                record = CallRecord(**fields)
            except ValueError as e:  # an upstream answer the record cannot hold
                error = GatewayError(
                    502, f"the upstream answered unusably: {e}", code="upstream_error"
                )
                events, status, payload = None, 502, error.body()
                keep = ("session", "index", "api", "started", "stream", "model", "duration_s")
                record = CallRecord(
                    **{k: v for k, v in fields.items() if k in keep},
                    status=502,
                    error=error.message,
                )
            session._add(record)
            if events is None:
                return web.json_response(payload, status=status)
            if isinstance(events, dict):
                return web.json_response(events)
            return await self._send_stream(request, events)
        finally:
            self._in_flight -= 1

    async def _answer(
        self, request: web.Request, session: Session, api: Api, fields: dict[str, Any]
    ) -> dict[str, Any] | list[bytes]:
        """The answer of one call (a JSON dict, or the SSE lines of a stream); fills ``fields``
        with what the record keeps. Raises ``GatewayError`` for a refused or failed call."""
        body = await _read_json(request, self.max_body_bytes)
        if api == "responses":
            from envkit.gateway import responses

            if not isinstance(body, dict):
                raise GatewayError(
                    400,
                    f"the request body must be a JSON object, got {type(body).__name__}",
                    code="invalid_body",
                )
            fields["stream"] = bool(body.get("stream"))
            if "model" in body:
                fields["model"] = str(body["model"])
            try:
                chat_body = responses.chat_body_from_responses(body)
            except ValueError as e:
                raise GatewayError(400, str(e), code="unsupported_parameter") from None
            answer, _ = await self._chat(chat_body, session, fields)
            response = responses.response_from_chat(answer, body)
            if not fields["stream"]:
                return response
            return [
                f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                for name, data in responses.response_stream_events(response)
            ]
        fields["stream"] = isinstance(body, dict) and bool(body.get("stream"))
        answer, parsed = await self._chat(body, session, fields)
        if not parsed.stream:
            return answer
        chunks = stream_chunks(
            answer, include_usage=parsed.include_usage, chunk_chars=self.stream_chunk_chars
        )
        lines = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
        return [*lines, b"data: [DONE]\n\n"]

    async def _chat(
        self, raw: Any, session: Session, fields: dict[str, Any]
    ) -> tuple[dict[str, Any], ChatCompletionBody]:
        """The chat path every API shares: a chat-completions body in, a ``chat.completion``
        answer dict (and the parsed body) out; ``fields`` gets the record's model, messages,
        tokens and message."""
        if isinstance(raw, dict) and isinstance(raw.get("model"), str):
            fields.setdefault("model", raw["model"])
        body: ChatCompletionBody = parse_chat_body(raw)
        fields["model"] = fields.get("model") or body.model
        if body.tools:
            fields["tools"] = body.tools
        fields["messages"] = messages = parse_messages(body.messages)
        if body.model != session.model:
            raise _model_not_found(body.model, session)
        upstream = self.upstream
        if body.logprobs and not upstream.reports_token_ids:
            raise GatewayError(
                400,
                "logprobs=true: this gateway's upstream reports no log-probabilities (a hosted "
                "API); leave logprobs out or serve a model that reports them",
                code="unsupported_parameter",
                param="logprobs",
            )
        request = UpstreamRequest(
            messages=messages,
            tools=body.tools or None,
            parse_tool_calls=body.parse_tool_calls,
            max_tokens=body.max_new_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            seed=body.seed,
        )
        fields["adapter"] = upstream.adapter
        try:
            completion = await upstream.complete(request)
        except UpstreamRequestError as e:
            raise GatewayError(400, str(e), code="invalid_request") from None
        except Exception as e:
            raise GatewayError(
                502, f"the upstream failed: {type(e).__name__}: {e}", code="upstream_error"
            ) from None
        fields.update(
            prompt_token_ids=completion.prompt_token_ids,
            token_ids=completion.token_ids,
            logprobs=completion.logprobs,
            message=completion.message,
        )
        answer = chat_answer(
            completion,
            model=session.model,
            logprobs=bool(body.logprobs),
            token_strings=upstream.token_strings,
        )
        fields["finish_reason"] = answer["choices"][0]["finish_reason"]
        return answer, body

    async def _send_stream(self, request: web.Request, lines: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        try:
            await response.prepare(request)
            for line in lines:
                await response.write(line)
            await response.write_eof()
        except (ConnectionError, OSError):  # the client went away mid-stream: already recorded
            self.client_disconnects += 1
        return response


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "envkit"}


def _model_not_found(name: str, session: Session) -> GatewayError:
    return GatewayError(
        404,
        f"The model {name!r} does not exist on this session: it serves {session.model!r} "
        f"(GET {session.base_url}/models); send model={session.model!r}",
        code="model_not_found",
        param="model",
    )


async def _read_json(request: web.Request, limit: int) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, limit) from None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise GatewayError(
            400,
            f"the request body is not valid JSON ({e}); send a JSON object with "
            "Content-Type: application/json",
            code="invalid_json",
        ) from None


def _too_large(size: int | None, limit: int) -> GatewayError:
    got = f" ({size} bytes)" if size is not None else ""
    return GatewayError(
        413,
        f"the request body{got} exceeds the gateway's limit of {limit} bytes; shorten the "
        "conversation or start the gateway with a larger max_body_bytes",
        code="request_too_large",
    )


def _json_errors(gateway: Gateway) -> Any:
    """A middleware answering ``GatewayError`` and aiohttp's own errors (404, 405) as JSON."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as e:
            return web.json_response(e.body(), status=e.status)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            message = f"{e.reason}: {request.method} {request.path}"
            if e.status == 404:
                message = (
                    f"no endpoint {request.method} {request.path}; the gateway serves "
                    "/s/<session>/v1/chat/completions, /s/<session>/v1/responses and "
                    "/s/<session>/v1/models (use a session's base_url)"
                )
            error = GatewayError(e.status, message, code=e.reason.lower().replace(" ", "_"))
            return web.json_response(error.body(), status=e.status)

    return middleware


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancels the tasks left on ``loop`` (the policy's batch worker, late handlers)."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
