"""``LiteLLMPolicy`` against a real OpenAI-compatible HTTP server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import envkit
from envkit import ChatEnv, Feedback, Task
from envkit.policies import LiteLLMPolicy, Policy
from envkit.testing import Reply, ScriptedOpenAIServer, echo
from envkit.types import GenerationRequest, Message

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]


def make_policy(server: ScriptedOpenAIServer, **kwargs: Any) -> LiteLLMPolicy:
    kwargs.setdefault("num_retries", 0)
    return LiteLLMPolicy("openai/test-model", api_base=server.url, api_key="sk-test", **kwargs)


def test_plain_answer(openai_server):
    policy = make_policy(openai_server, temperature=0.3, max_tokens=17)
    assert isinstance(policy, Policy)
    c = policy([{"role": "user", "content": "hello there"}])
    assert c.message.role == "assistant"
    assert c.message.content == "echo: hello there"
    assert c.message.tool_calls is None
    assert c.finish_reason == "stop"
    assert c.usage.prompt_tokens == 2
    assert c.usage.completion_tokens == 4
    assert c.token_ids is None and c.logprobs is None  # an API gives no token data
    [sent] = openai_server.requests
    assert sent.path == "/v1/chat/completions"
    body = sent.body
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 17
    assert "tools" not in body


def test_tool_call_response_becomes_tool_calls(openai_server):
    openai_server.script(
        Reply(
            content=None,
            tool_calls=[
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                },
                {
                    "id": "call_def",
                    "type": "function",
                    "function": {"name": "add", "arguments": "{not json"},
                },
            ],
            finish_reason="tool_calls",
        )
    )
    c = make_policy(openai_server)([{"role": "user", "content": "1+2?"}], tools=TOOLS)
    assert c.finish_reason == "tool_calls"
    assert c.message.content is None
    calls = c.message.tool_calls
    assert [(t.id, t.function.name) for t in calls] == [("call_abc", "add"), ("call_def", "add")]
    assert json.loads(calls[0].function.arguments) == {"a": 1, "b": 2}
    assert calls[1].function.arguments == "{not json"  # kept for the env to report
    assert openai_server.requests[0].body["tools"] == TOOLS


def test_tool_turns_are_sent_in_openai_format(openai_server):
    messages = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "1+2?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c0",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "3"},
    ]
    c = make_policy(openai_server)(messages, tools=TOOLS)
    assert c.message.content == "echo: 1+2?"
    sent = openai_server.requests[0].body["messages"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 1, "b": 2}'}
    assert sent[3] == {"role": "tool", "tool_call_id": "c0", "content": "3"}


def test_http_500_raises(openai_server):
    import litellm

    openai_server.script(Reply(status=500))
    policy = make_policy(openai_server)
    with pytest.raises(litellm.InternalServerError, match="scripted failure"):
        policy([{"role": "user", "content": "x"}])
    assert len(openai_server.requests) == 1  # num_retries=0: no retry


def test_retries_recover_from_a_transient_500(openai_server):
    openai_server.script(Reply(status=500))
    c = make_policy(openai_server, num_retries=1)([{"role": "user", "content": "again"}])
    assert c.message.content == "echo: again"
    assert len(openai_server.requests) == 2


def test_bad_request_raises_without_retrying(openai_server):
    import litellm

    openai_server.script(Reply.fail(400, "context too long"))
    with pytest.raises(litellm.BadRequestError, match="context too long"):
        make_policy(openai_server, num_retries=2)([{"role": "user", "content": "x"}])
    assert len(openai_server.requests) == 1


def test_timeout_raises(openai_server):
    import litellm

    openai_server.script(Reply(delay_s=2.0))
    with pytest.raises(litellm.Timeout):
        make_policy(openai_server, timeout=0.3)([{"role": "user", "content": "slow"}])


def test_concurrency_is_limited(openai_server):
    openai_server.responder = lambda request: echo(request).delayed(0.1)
    policy = make_policy(openai_server, concurrency=3)
    requests = [
        GenerationRequest(messages=[Message(role="user", content=str(i))]) for i in range(8)
    ]
    completions = policy.generate(requests)
    assert [c.message.content for c in completions] == [f"echo: {i}" for i in range(8)]
    assert 2 <= openai_server.max_in_flight <= 3


def test_concurrent_agenerate_calls_overlap(openai_server):
    openai_server.responder = lambda request: echo(request).delayed(0.2)
    policy = make_policy(openai_server, concurrency=8)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(
                policy.agenerate(
                    [GenerationRequest(messages=[Message(role="user", content=f"q{i}")])]
                )
                for i in range(6)
            )
        )

    results = asyncio.run(main())
    assert [r[0].message.content for r in results] == [f"echo: q{i}" for i in range(6)]
    assert openai_server.max_in_flight >= 4


def test_completion_kwargs_are_forwarded(openai_server):
    make_policy(openai_server, top_p=0.5, seed=7)([{"role": "user", "content": "x"}])
    body = openai_server.requests[0].body
    assert body["top_p"] == 0.5
    assert body["seed"] == 7


class OneShotEnv(ChatEnv):
    def make_task(self, options: dict[str, Any] | None) -> Task:
        return Task(messages=[{"role": "user", "content": "say hi"}])

    def respond(self, message: Message) -> Feedback:
        return Feedback(reward=float("hi" in (message.content or "")), done=True)


def test_rollout_records_server_errors_as_policy_errors(openai_server):
    openai_server.script(Reply(status=500))  # one episode fails, the other answers
    policy = make_policy(openai_server)
    [group] = envkit.collect(OneShotEnv, policy, seeds=[0], group_size=2, concurrency=1)
    outcomes = sorted(t.outcome for t in group)
    assert outcomes == ["ok", "policy_error"]
    failed = next(t for t in group if t.outcome == "policy_error")
    assert "scripted failure" in failed.error
    assert failed.reward is None
    ok = next(t for t in group if t.outcome == "ok")
    assert ok.reward == 1.0
    assert ok.usage is not None and ok.usage.completion_tokens == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": ""}, "litellm model string"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"num_retries": -1}, "num_retries must be >= 0"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    model = kwargs.pop("model", "openai/x")
    with pytest.raises(ValueError, match=match):
        LiteLLMPolicy(model, **kwargs)


# ------------------------------------------------------------------ HTTP 200, bad bodies
NO_CHOICES = {"id": "x", "object": "chat.completion", "created": 0, "model": "test-model"}


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(body=NO_CHOICES), "no 'choices'"),
        (Reply(body={**NO_CHOICES, "choices": []}), "ModelResponseError"),
        (Reply(content=None), "content: null"),
    ],
    ids=["no-choices", "empty-choices", "null-content"],
)
def test_a_bad_body_is_a_recorded_policy_error_not_a_zero(openai_server, reply, reason):
    openai_server.responder = lambda request: reply
    policy = make_policy(openai_server)
    [group] = envkit.collect(OneShotEnv, policy, seeds=[0], group_size=2, progress=False)
    for t in group:
        assert t.outcome == "policy_error" and t.reward is None, (t.outcome, t.reward)
        assert reason in (t.error or ""), t.error
        assert t.num_turns == 0  # no made-up empty answer was sent to the env
    assert len(openai_server.requests) == 2


def test_a_reply_cut_at_the_token_limit_is_kept_and_marked(openai_server):
    cut = '{"a": 2, "b'
    openai_server.script(
        Reply(content="hi, the answer is", finish_reason="length"),
        Reply.calling(("add", cut), finish_reason="length"),
    )
    policy = make_policy(openai_server)
    text = policy([{"role": "user", "content": "q"}])
    assert text.message.content == "hi, the answer is" and text.finish_reason == "length"
    call = policy.generate([GenerationRequest(messages=[Message(role="user", content="q")])])[0]
    assert call.finish_reason == "length"
    assert call.message.tool_calls[0].function.arguments == cut  # the env reports invalid JSON
