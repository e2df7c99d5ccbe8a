"""envkit envs served over OpenEnv (``envkit serve-env``), played by openenv-core's own client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from openenv.core.generic_client import GenericEnvClient
from openenv_support import ThreadServer, children_of, processes_of

import envkit
from envkit.environments.openenv import OpenEnvChatEnv
from envkit.environments.openenv._protocol import Session
from envkit.errors import InfraError
from envkit.policies import CallablePolicy
from envkit.sandbox import pool as sandbox_pool
from envkit.serving.openenv_server import build_app


@pytest.fixture(scope="module")
def guess_number() -> Iterator[str]:
    app = build_app("GuessNumber-v0", {"low": 1, "high": 10, "max_turns": 4}, max_sessions=2)
    s = ThreadServer(app)
    yield s.url
    s.stop()


def test_the_schema_is_openenvs_with_envkits_chat_types(guess_number: str) -> None:
    with urllib.request.urlopen(guess_number + "/schema", timeout=10) as r:
        schema = json.loads(r.read())
    assert {"content", "tool_calls"} <= set(schema["action"]["properties"])
    assert {"messages", "tools", "reward", "done"} <= set(schema["observation"]["properties"])


async def _two_sessions(url: str) -> None:
    async with GenericEnvClient(base_url=url) as a, GenericEnvClient(base_url=url) as b:
        ra = await a.reset(seed=1, options={"secret": 3})
        await b.reset(seed=2, options={"secret": 7})
        assert ra.observation["messages"][-1]["role"] == "user" and not ra.done
        sa = await a.step({"content": "3"})
        sb = await b.step({"content": "3"})
        assert (sa.reward, sa.done) == (1.0, True)  # a's env: secret 3
        assert (sb.reward, sb.done) == (0.0, False)  # b's env: secret 7, still running
        assert "higher" in sb.observation["messages"][-1]["content"].lower()
        state_a, state_b = await a.state(), await b.state()
        assert state_a["episode_id"] != state_b["episode_id"]
        assert state_a["step_count"] == 1 and state_b["step_count"] == 1
        sb = await b.step({"content": "7"})
        assert sb.done and 0.0 < sb.reward < 1.0  # found on the 2nd turn: GuessNumber's decay
        # max_sessions=2: a third session is refused, the two above go on
        c = GenericEnvClient(base_url=url)
        with pytest.raises(Exception):  # noqa: B017 - openenv's client reports a closed socket
            await c.connect()
            await c.reset(seed=3)
        await c.close()
        with pytest.raises(InfraError, match=r"refused the session"):  # envkit's says why
            await asyncio.to_thread(lambda: Session(url, timeout=5).reset(seed=3))
        again = await a.reset(seed=4, options={"secret": 5})
        assert not again.done


def test_two_concurrent_sessions_are_isolated_and_capacity_is_enforced(guess_number: str) -> None:
    asyncio.run(_two_sessions(guess_number))


def test_bad_steps_come_back_as_errors_not_hangs(guess_number: str) -> None:
    async def main() -> None:
        async with GenericEnvClient(base_url=guess_number, message_timeout_s=10) as c:
            with pytest.raises(Exception, match="reset"):
                await c.step({"content": "3"})  # no episode yet
            with pytest.raises(Exception, match=r"(?i)validation|invalid"):
                await c.step({"nope": 1})  # not a ChatAction

    asyncio.run(main())


def _busy_sandboxes() -> int:
    return sum(p.busy for p in list(sandbox_pool._SHARED.values()) if not p.closed)


def test_a_sandboxed_env_returns_its_sandbox_when_the_client_disconnects() -> None:
    s = ThreadServer(build_app("PythonTools-v0", {"sandbox": "local"}, max_sessions=2))
    call = {"name": "run_python", "arguments": json.dumps({"code": "print(6 * 7)"})}

    async def main() -> None:
        async with GenericEnvClient(base_url=s.url) as c:
            r = await c.reset(seed=0)
            assert "run_python" in [t["function"]["name"] for t in r.observation["tools"]]
            turn = {
                "content": "",
                "tool_calls": [{"id": "c1", "type": "function", "function": call}],
            }
            r = await c.step(turn)
            assert "42" in r.observation["messages"][-1]["content"]
            assert _busy_sandboxes() == 1  # the session's env holds its sandbox

    try:
        asyncio.run(main())
        deadline = time.monotonic() + 10
        while _busy_sandboxes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _busy_sandboxes() == 0  # the disconnect closed the env, the sandbox is back
    finally:
        s.stop()


def test_serve_env_cli_played_by_openenvchatenv_then_killed_mid_episode(
    serve_env_cli: OpenEnvChatEnv,
) -> None:
    # the round trip: `envkit serve-env` (a process envkit started) <- OpenEnvChatEnv <- collect
    env = serve_env_cli
    server = env.server
    assert server.process is not None and env.action_mapper.mode == "chat"
    watchdog = server.process.pid
    try:
        answers = iter(str(n) for n in range(1, 11))
        groups = envkit.collect(
            env, CallablePolicy(lambda m, t: next(answers)), seeds=[3], progress=False
        )
        traj = groups[0].trajectories[0]
        assert traj.outcome == "ok" and traj.reward > 0  # GuessNumber's own reward: found it
        assert traj.messages[0].role in ("system", "user")  # the env's own opening messages

        env.reset(seed=4)
        env.step("1")
        (child,) = children_of(watchdog)
        os.kill(child, signal.SIGKILL)  # the server dies mid-episode
        started = time.monotonic()
        with pytest.raises(InfraError):
            env.step("2")
        assert time.monotonic() - started < 5  # no hang
    finally:
        env.close()
    assert server.process is None
    assert not os.path.exists(f"/proc/{watchdog}") and not os.path.exists(f"/proc/{child}")


def test_a_started_server_dies_with_its_owner(tmp_path) -> None:  # type: ignore[no-untyped-def]
    here = os.path.dirname(os.path.abspath(__file__))
    owner_code = (
        "import sys, time\n"
        "from envkit.environments.openenv import _servers\n"
        f"h = _servers.start_process([sys.executable, {here + '/tiny_server.py'!r}, '{{port}}'])\n"
        "print(h.url, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    try:
        url = owner.stdout.readline().strip()  # type: ignore[union-attr]
        port = url.rsplit(":", 1)[1]
        assert processes_of(f"tiny_server.py {port}")
        owner.kill()  # SIGKILL: no atexit, no cleanup in the owner
        owner.wait(10)
        deadline = time.monotonic() + 10
        while processes_of(f"tiny_server.py {port}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(f"tiny_server.py {port}") == []
    finally:
        owner.kill()
