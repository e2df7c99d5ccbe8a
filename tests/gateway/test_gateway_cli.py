"""``envkit gateway``: the command runs a standalone gateway (sessions open on first use), and
``--upstream`` samples from an ``envkit serve``-style server through ``ServerPolicy``."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from envkit.cli.gateway import make_gateway
from envkit.cli.main import app
from envkit.gateway import Gateway, read_session
from envkit.policies import HFPolicy
from envkit.serving.app import InferenceServer
from envkit.serving.process import free_port
from envkit.types import GenerationRequest, Message

runner = CliRunner()
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    log_dir = tmp_path_factory.mktemp("cli-logs")
    g = make_gateway("tiny-random", device="cpu", max_new_tokens=4, seed=0, log_dir=log_dir)
    with g:
        yield g


def test_help_names_every_option():
    result = runner.invoke(app, ["gateway", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in ("--model", "--upstream", "--port", "--log-dir", "--sampling", "--host"):
        assert option in result.output


def test_the_standalone_gateway_opens_sessions_on_first_use(gateway):
    assert gateway.auto_sessions and gateway.served_model_name == "tiny-random"
    base = f"{gateway.url}/s/agent-1/v1"
    c = openai.OpenAI(base_url=base, api_key="x", max_retries=0)
    c.chat.completions.create(model="tiny-random", messages=USER)
    (record,) = read_session(Path(gateway.log_dir) / "agent-1.jsonl")
    assert record.has_token_ids and len(record.token_ids) <= 4


def test_upstream_server_policy_records_token_ids(gateway, tmp_path):
    policy: HFPolicy = gateway.upstream.policy  # type: ignore[attr-defined]
    with InferenceServer(policy, served_model_name="tiny-random") as server:
        host, port = server.address
        g = make_gateway(
            "tiny-random", upstream=f"http://{host}:{port}", max_new_tokens=4, log_dir=tmp_path
        )
        assert g.upstream.reports_token_ids
        with g:
            c = openai.OpenAI(base_url=f"{g.url}/s/s1/v1", api_key="x", max_retries=0)
            answer = c.chat.completions.create(model="tiny-random", messages=USER, logprobs=True)
            (record,) = g.sessions["s1"].records
    request = GenerationRequest(messages=[Message(**USER[0])])
    assert record.prompt_token_ids == policy.render(request)
    assert record.token_ids == answer.choices[0].model_extra["token_ids"]
    assert [t.logprob for t in answer.choices[0].logprobs.content] == record.logprobs
    with pytest.raises(ValueError, match="sampling='client'"):
        make_gateway("tiny-random", upstream="http://127.0.0.1:9", sampling="client")


def test_the_command_serves_until_sigterm(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    calls: dict[str, Any] = {}

    def agent() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        try:
            c = openai.OpenAI(base_url=f"{url}/s/cli-1/v1", api_key="x", max_retries=0)
            calls["answer"] = c.chat.completions.create(model="tiny-random", messages=USER)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=agent)
    thread.start()
    args = ["gateway", "--model", "tiny-random", "--port", str(port), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--max-new-tokens", "3", "--log-dir", str(tmp_path)])
    thread.join(10)
    assert result.exit_code == 0, result.output
    assert f"{url}/s/<session>/v1" in result.output
    assert calls["answer"].choices[0].message.content is not None
    assert len(read_session(tmp_path / "cli-1.jsonl")) == 1


def test_the_command_reports_bad_settings():
    args = ["gateway", "--model", "tiny-random", "--upstream", "http://127.0.0.1:9"]
    result = runner.invoke(app, [*args, "--sampling", "client"])
    assert result.exit_code == 2 and "sampling='client'" in result.output
