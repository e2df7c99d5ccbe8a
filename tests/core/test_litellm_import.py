"""``import envkit`` sets no environment variable; litellm is imported without a network fetch.

litellm downloads its model price map when imported unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is
set. envkit sets it just before it imports litellm (``envkit._litellm``), not on ``import envkit``.
Each check runs in a fresh interpreter with the variable removed, with every socket connection
and DNS lookup to anything but 127.0.0.1 recorded and refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

VAR = "LITELLM_LOCAL_MODEL_COST_MAP"

_GUARD = """
import importlib.abc, json, os, socket, sys

seen = {}
remote = []


class _Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "litellm" and "at_import" not in seen:
            seen["at_import"] = os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")
        return None


sys.meta_path.insert(0, _Watch())
_LOCAL = ("127.0.0.1", "::1", "localhost")
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo


def connect(self, address):
    if isinstance(address, tuple) and address[0] not in _LOCAL:
        remote.append(repr(address))
        raise OSError("test: network access refused")
    return _connect(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL and host is not None:
        remote.append(repr(host))
        raise OSError("test: name lookup refused")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
"""

_REPORT = """
print(json.dumps({"seen": seen, "remote": remote, "after": os.environ.get(
    "LITELLM_LOCAL_MODEL_COST_MAP"), **result}))
"""

_POLICY = """
from envkit.policies import LiteLLMPolicy
from envkit.testing import ScriptedOpenAIServer

with ScriptedOpenAIServer() as server:
    policy = LiteLLMPolicy("openai/m", api_base=server.url, api_key="sk-test", num_retries=0)
    answer = policy([{"role": "user", "content": "hi"}]).message.content
result = {"answer": answer}
"""

_JUDGE = """
import asyncio
from envkit.rewards.judge.client import JudgeClient, JudgeStats
from envkit.rewards.judge.config import JudgeConfig
from envkit.testing import ScriptedOpenAIServer

with ScriptedOpenAIServer() as server:
    client = JudgeClient("openai/m", api_base=server.url, api_key="sk-test",
                         config=JudgeConfig(), stats=JudgeStats())
    reply = asyncio.run(client.complete([{"role": "user", "content": "hi"}]))
result = {"answer": reply.content}
"""


def _run(body: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != VAR}
    proc = subprocess.run(
        [sys.executable, "-c", _GUARD + body + _REPORT],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_envkit_sets_no_environment_variable() -> None:
    body = "import envkit, envkit.policies, envkit.rewards, envkit.trainers\nresult = {}\n"
    out = _run(body)
    assert out["after"] is None  # the old `import envkit` set it to "True"
    assert "at_import" not in out["seen"]  # and none of these imports litellm


@pytest.mark.parametrize("body", [_POLICY, _JUDGE], ids=["LiteLLMPolicy", "judge-client"])
def test_litellm_is_imported_with_the_local_cost_map_and_no_fetch(body: str) -> None:
    out = _run(body)
    assert out["seen"]["at_import"] == "True"  # set just before litellm was imported
    assert out["remote"] == []  # no price-map download (nor any other non-local connection)
    assert out["answer"]  # the call itself went to the 127.0.0.1 server


def test_a_value_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from envkit._litellm import import_litellm

    monkeypatch.setenv(VAR, "1")
    assert import_litellm().__name__ == "litellm"
    assert os.environ[VAR] == "1"
