"""The capture gateway's cost: overhead per call, sessions per second, 256 concurrent calls.

Side by side in one run, against a trivially fast upstream (a stub answering a fixed completion
with 256 prompt ids, 32 sampled ids and their log-probabilities) so that model time does not
hide the gateway's own:

1. latency per call, p50 and p95, of the same request sent one at a time (keep-alive) to
   a. the gateway (``/s/<id>/v1/chat/completions``: parse, check, call the upstream, build the
      answer, write and flush the call's record), and
   b. a bare aiohttp server in the same process that parses the request JSON and answers the
      same answer JSON (what calling an upstream server directly costs),
   through three clients: raw aiohttp, raw httpx and the ``openai`` SDK (over httpx);
   non-streamed, streamed and the Responses API; rounds alternate between the two servers so
   machine noise hits both. The overhead is gateway p50 - direct p50 (goal: <= 2 ms on
   loopback). The stub's
   ``upstream.complete`` alone is timed too (what "the upstream" costs in-process);
2. sessions per second: ``open_session()``, one call, ``close()``, at concurrency 1 and 64,
   with each client (the openai client made per session over one shared httpx client, as
   ``envkit.agent_runner`` does), beside the direct server's calls per second;
3. 256 concurrent calls (each of 256 workers sends ``--load-calls / 256`` calls in turn)
   through each client to each server: wall time and calls per second.

    python benchmarks/bench_gateway.py           # about 4 minutes on 2 busy cores
    python benchmarks/bench_gateway.py --quick   # fewer calls, about 70 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httpx
import openai
from aiohttp import web

from envkit.gateway import Gateway
from envkit.gateway.upstream import UpstreamRequest
from envkit.types import Completion, Message

MODEL = "bench"
SYSTEM = "You are a careful assistant. " * 20  # ~600 characters, a typical agent preamble
MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What is 2 + 2? Think, then answer with the number only."},
]
CHAT = {"model": MODEL, "messages": MESSAGES, "max_tokens": 32}
RESPONSES = {"model": MODEL, "instructions": SYSTEM, "input": MESSAGES[1]["content"]}
Send = Callable[[], Awaitable[None]]


class StubUpstream:
    """An ``Upstream`` answering one fixed completion at once (token ids and logprobs too)."""

    reports_token_ids = True
    sampling = "policy"
    adapter = None

    def __init__(self, prompt_tokens: int = 256, completion_tokens: int = 32) -> None:
        self.completion = Completion(
            message=Message(role="assistant", content="Two plus two is four. The answer: 4."),
            prompt_token_ids=list(range(prompt_tokens)),
            token_ids=list(range(completion_tokens)),
            logprobs=[-0.25] * completion_tokens,
            finish_reason="stop",
        )

    async def complete(self, request: UpstreamRequest) -> Completion:
        return self.completion

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        return [f"t{t}" for t in token_ids]


class DirectServer:
    """A bare aiohttp server on 127.0.0.1 in its own loop thread: parses each request's JSON and
    answers fixed payloads (captured from the gateway, so both send the same bytes)."""

    def __init__(self, chat: dict[str, Any], stream: list[bytes], response: dict[str, Any]):
        self.chat, self.stream, self.response = chat, stream, response
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        started.set()
        self.loop.run_forever()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        if not body.get("stream"):
            return web.json_response(self.chat)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for line in self.stream:
            await response.write(line)
        await response.write_eof()
        return response

    async def _responses(self, request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response(self.response)

    def close(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def capture(gateway: Gateway) -> tuple[dict[str, Any], list[bytes], dict[str, Any]]:
    """The gateway's answers to the bench requests, for the direct server to send."""
    session = gateway.open_session("capture")
    with httpx.Client(timeout=30) as http:
        chat = http.post(session.base_url + "/chat/completions", json=CHAT).json()
        raw = http.post(session.base_url + "/chat/completions", json={**CHAT, "stream": True})
        stream = [line.encode() + b"\n\n" for line in raw.text.split("\n\n") if line]
        response = http.post(session.base_url + "/responses", json=RESPONSES).json()
    session.close()
    return chat, stream, response


# ---------------------------------------------------------------------------- the clients


def aiohttp_sender(http: aiohttp.ClientSession, base_url: str, kind: str) -> Send:
    """One call of ``kind`` (chat, stream, responses) with raw aiohttp, body read to its end."""
    url, body = base_url + "/chat/completions", CHAT
    if kind == "stream":
        body = {**CHAT, "stream": True}
    elif kind == "responses":
        url, body = base_url + "/responses", RESPONSES

    async def send() -> None:
        async with http.post(url, json=body) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{url}: {r.status}")

    return send


def httpx_sender(http: httpx.AsyncClient, base_url: str, kind: str) -> Send:
    """One call of ``kind`` with raw httpx (the openai SDK's transport), body read to its end."""
    url, body = base_url + "/chat/completions", CHAT
    if kind == "stream":
        body = {**CHAT, "stream": True}
    elif kind == "responses":
        url, body = base_url + "/responses", RESPONSES

    async def send() -> None:
        async with http.stream("POST", url, json=body) as r:
            await r.aread()
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code}")

    return send


def openai_sender(client: openai.AsyncOpenAI, kind: str) -> Send:
    """One call of ``kind`` with the ``openai`` SDK (stream consumed to its end)."""

    async def send() -> None:
        if kind == "chat":
            await client.chat.completions.create(**CHAT)
        elif kind == "stream":
            async for _ in await client.chat.completions.create(**CHAT, stream=True):
                pass
        else:
            await client.responses.create(**RESPONSES)

    return send


def openai_client(base_url: str, http: httpx.AsyncClient | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, http_client=http)


# ---------------------------------------------------------------------------- measurements


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(send: Send, n: int, into: list[float]) -> None:
    for _ in range(n):
        start = time.perf_counter()
        await send()
        into.append(time.perf_counter() - start)


async def latency(senders: dict[str, Send], calls: int, rounds: int = 5) -> dict[str, list[float]]:
    """Seconds per call of each sender, rounds alternating between them (after a warm-up)."""
    out: dict[str, list[float]] = {name: [] for name in senders}
    for send in senders.values():
        await timed(send, 20, [])
    for _ in range(rounds):
        for name, send in senders.items():
            await timed(send, max(1, calls // rounds), out[name])
    return out


def upstream_latency(upstream: StubUpstream, calls: int) -> list[float]:
    request = UpstreamRequest(messages=[Message(**m) for m in MESSAGES])

    async def run() -> list[float]:
        out = []
        for _ in range(calls):
            start = time.perf_counter()
            await upstream.complete(request)
            out.append(time.perf_counter() - start)
        return out

    return asyncio.run(run())


async def pool(work: Callable[[], Awaitable[None]], total: int, concurrency: int) -> float:
    """Wall seconds of ``total`` runs of ``work`` by ``concurrency`` workers."""
    todo = iter(range(total))

    async def worker() -> None:
        for _ in todo:
            await work()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def sessions_per_s(
    gateway: Gateway, direct: DirectServer, client: str, concurrency: int, total: int
) -> tuple[float, float]:
    """(gateway sessions/s: open, one call, close; direct server calls/s), same client."""
    limit = max(concurrency, 1)
    async with contextlib.AsyncExitStack() as stack:
        if client == "aiohttp":
            connector = aiohttp.TCPConnector(limit=limit)
            http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))

            def make(base_url: str) -> Send:
                return aiohttp_sender(http, base_url, "chat")
        else:
            limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
            shared = await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=120))

            def make(base_url: str) -> Send:
                return openai_sender(openai_client(base_url, shared), "chat")

        async def one_session() -> None:
            session = gateway.open_session()
            try:
                await make(session.base_url)()
            finally:
                session.close()

        direct_send = make(direct.base_url)
        await pool(one_session, min(total, 32), concurrency)  # warm-up
        await pool(direct_send, min(total, 32), concurrency)
        gateway_s = await pool(one_session, total, concurrency)
        direct_s = await pool(direct_send, total, concurrency)
    return total / gateway_s, total / direct_s


async def load(base_url: str, client: str, calls: int, concurrency: int) -> float:
    """Wall seconds of ``calls`` chat calls by ``concurrency`` workers sharing one client."""
    if client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            return await pool(aiohttp_sender(http, base_url, "chat"), calls, concurrency)
    async with openai_client(base_url) as c:  # the SDK's default httpx client and limits
        return await pool(openai_sender(c, "chat"), calls, concurrency)


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (about 70 s)")
    parser.add_argument("--calls", type=int, default=None, help="calls per latency figure")
    parser.add_argument("--sessions", type=int, default=None, help="sessions per rate figure")
    parser.add_argument("--load-calls", type=int, default=None, help="calls of the load test")
    args = parser.parse_args()
    calls = args.calls or (200 if args.quick else 1000)
    sessions = args.sessions or (256 if args.quick else 1024)
    load_calls = args.load_calls or (256 if args.quick else 512)

    upstream = StubUpstream()
    with (
        tempfile.TemporaryDirectory() as tmp,
        Gateway(upstream, served_model_name=MODEL, log_dir=tmp) as gateway,
    ):
        direct = DirectServer(*capture(gateway))
        try:
            print(f"gateway overhead per call, {calls} sequential calls per figure, loopback")
            print(f"({os.cpu_count()} CPUs; stub upstream: 256 prompt ids, 32 sampled ids)\n")
            print(
                "| request | client | direct p50 | direct p95 | gateway p50 | gateway p95 |"
                " overhead p50 | ratio p50 |"
            )
            print("|---|---|---|---|---|---|---|---|")
            overheads = []
            for kind in ("chat", "stream", "responses"):
                for client in ("aiohttp", "httpx", "openai"):
                    session = gateway.open_session()
                    lat = asyncio.run(_latency_pair(client, kind, direct, session, calls))
                    session.close()
                    d, g = lat["direct"], lat["gateway"]
                    over = (statistics.median(g) - statistics.median(d)) * 1e3
                    overheads.append(over)
                    print(
                        f"| {kind} | {client} | {_ms(statistics.median(d))} | {_ms(pct(d, 0.95))}"
                        f" | {_ms(statistics.median(g))} | {_ms(pct(g, 0.95))} | {over:.2f} ms |"
                        f" {statistics.median(g) / statistics.median(d):.2f}x |"
                    )
            up = upstream_latency(upstream, calls)
            print(
                f"\nupstream.complete() alone: p50 {statistics.median(up) * 1e6:.1f} us, "
                f"p95 {pct(up, 0.95) * 1e6:.1f} us"
            )

            print(
                f"\nsessions per second ({sessions} sessions: open_session, one chat call, "
                "close), beside the direct server's calls per second\n"
            )
            print("| client | concurrency | gateway sessions/s | direct calls/s | ratio |")
            print("|---|---|---|---|---|")
            for client in ("aiohttp", "openai"):
                for conc in (1, 64):
                    rate, ref = asyncio.run(sessions_per_s(gateway, direct, client, conc, sessions))
                    print(f"| {client} | {conc} | {rate:.0f} | {ref:.0f} | {rate / ref:.2f}x |")

            print(f"\n{load_calls} chat calls by 256 concurrent workers (one shared client)\n")
            print("| client | direct wall s | gateway wall s | gateway calls/s |")
            print("|---|---|---|---|")
            for client in ("aiohttp", "openai"):
                session = gateway.open_session()
                d_s = asyncio.run(load(direct.base_url, client, load_calls, 256))
                g_s = asyncio.run(load(session.base_url, client, load_calls, 256))
                session.close()
                print(f"| {client} | {d_s:.2f} | {g_s:.2f} | {load_calls / g_s:.0f} |")
            assert gateway.in_flight == 0
        finally:
            direct.close()


async def _latency_pair(
    client: str, kind: str, direct: DirectServer, session: Any, calls: int
) -> dict[str, list[float]]:
    if client == "aiohttp":
        async with aiohttp.ClientSession() as http:
            senders = {
                "direct": aiohttp_sender(http, direct.base_url, kind),
                "gateway": aiohttp_sender(http, session.base_url, kind),
            }
            return await latency(senders, calls)
    if client == "httpx":
        async with httpx.AsyncClient(timeout=60) as http:
            senders = {
                "direct": httpx_sender(http, direct.base_url, kind),
                "gateway": httpx_sender(http, session.base_url, kind),
            }
            return await latency(senders, calls)
    async with openai_client(direct.base_url) as d, openai_client(session.base_url) as g:
        senders = {"direct": openai_sender(d, kind), "gateway": openai_sender(g, kind)}
        return await latency(senders, calls)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


if __name__ == "__main__":
    main()
