"""The gateway under load and bad input at once: 256 concurrent sessions, each making a good call,
a malformed one, a call to an unknown session and a stream it abandons half read. Every call is
recorded exactly once (the unknown session's not at all), and when the clients are gone the
gateway holds no extra socket, file descriptor or task."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiohttp

from envkit.gateway import Gateway
from envkit.gateway.records import read_session
from envkit.policies import CallablePolicy

MODEL = "tiny"
LONG = "word " * 100_000  # 500 kB: a stream the client leaves long before its end
JSON = {"Content-Type": "application/json"}


def answer(messages: list[dict[str, Any]], tools: Any) -> str:
    return LONG if messages[-1]["content"] == "long" else "short"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def gateway_tasks(gateway: Gateway) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    assert gateway._loop is not None
    return asyncio.run_coroutine_threadsafe(count(), gateway._loop).result(10)


async def one_agent(http: aiohttp.ClientSession, session: Any, i: int) -> None:
    url = session.base_url + "/chat/completions"
    short = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url, json=short) as r:
        assert r.status == 200 and (await r.json())["choices"][0]["message"]["content"] == "short"
    async with http.post(url, data=b'{"model": "tiny", "messages": [', headers=JSON) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    unknown = url.replace(f"/s/{session.id}/", f"/s/nobody-{i}/")
    async with http.post(unknown, json=short) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "session_not_found"
    long = {**short, "messages": [{"role": "user", "content": "long"}], "stream": True}
    async with http.post(url, json=long) as r:
        assert r.status == 200
        assert (await r.content.readline()).startswith(b"data: ")
        r.close()  # hang up with most of the stream unread


def test_256_sessions_with_bad_calls_and_hang_ups_leak_nothing(tmp_path: Any) -> None:
    policy = CallablePolicy(answer)
    with Gateway(policy, served_model_name=MODEL, log_dir=tmp_path, stream_chunk_chars=1024) as g:
        fds, tasks = open_fds(), gateway_tasks(g)
        sessions = [g.open_session() for _ in range(256)]

        async def run() -> None:
            connector = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(connector=connector) as http:
                await asyncio.gather(*(one_agent(http, s, i) for i, s in enumerate(sessions)))

        asyncio.run(run())
        for session in sessions:
            session.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            g.in_flight or open_fds() > fds or gateway_tasks(g) > tasks
        ):
            time.sleep(0.1)
        assert g.in_flight == 0 and g.client_disconnects > 0  # some streams were cut mid-way
        assert open_fds() <= fds, "sockets or files left open after every client hung up"
        assert gateway_tasks(g) <= tasks, "tasks left on the gateway's loop"
        for session in sessions:
            records = session.records
            assert [r.index for r in records] == [0, 1, 2]  # the unknown session's call: none
            assert [r.status for r in records] == [200, 400, 200]
            assert [r.stream for r in records] == [False, False, True]
            assert records[2].message is not None and records[2].message.content == LONG
            assert read_session(session.path) == records
        assert "nobody" not in json.dumps(sorted(p.name for p in tmp_path.iterdir()))
        assert len(list(tmp_path.iterdir())) == 256
