"""The gateway driven by the OpenAI Agents SDK (``openai-agents``): an ``Agent`` with a function
tool, run by ``Runner.run`` and ``Runner.run_streamed``, through both of the SDK's models
(``OpenAIChatCompletionsModel``: ``/chat/completions``; ``OpenAIResponsesModel``:
``/responses``).

A scripted policy (keyed on the conversation) asks for the tool and then answers with its result,
so the tool round trip is real; the tiny-random ``HFPolicy`` checks that the SDK's calls carry
the sampled token ids into the records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelBehaviorError,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from envkit.gateway import Gateway
from envkit.policies import CallablePolicy, HFPolicy
from envkit.types import GenerationRequest

set_tracing_disabled(True)  # nothing may leave 127.0.0.1

MODEL = "tiny"
MODELS = {"chat.completions": OpenAIChatCompletionsModel, "responses": OpenAIResponsesModel}


def scripted(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
    """Calls ``multiply(6, 7)`` first, then answers with the tool's result."""
    if messages[-1]["role"] == "tool":
        return {"role": "assistant", "content": f"It is {messages[-1]['content']}."}
    assert tools and tools[0]["function"]["name"] == "multiply", tools
    call = {"name": "multiply", "arguments": json.dumps({"a": 6, "b": 7})}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_mul", "type": "function", "function": call}],
    }


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    return HFPolicy.from_pretrained("tiny-random", device="cpu", max_new_tokens=8, seed=0)


@pytest.fixture
def gateway(tmp_path: Any) -> Iterator[Gateway]:
    with Gateway(CallablePolicy(scripted), served_model_name=MODEL, log_dir=tmp_path) as g:
        yield g


def make_agent(api: str, session: Any, runs: list[tuple[int, int]]) -> Agent:
    @function_tool
    def multiply(a: int, b: int) -> int:
        """Multiplies two integers."""
        runs.append((a, b))
        return a * b

    client = openai.AsyncOpenAI(base_url=session.base_url, api_key="x", max_retries=0)
    return Agent(
        name="calc",
        instructions="Use the multiply tool.",
        tools=[multiply],
        model=MODELS[api](model=MODEL, openai_client=client),
    )


@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("api", list(MODELS))
async def test_function_tool_round_trip(gateway: Gateway, api: str, stream: bool) -> None:
    session = gateway.open_session()
    runs: list[tuple[int, int]] = []
    agent = make_agent(api, session, runs)
    if stream:
        result = Runner.run_streamed(agent, "What is 6 times 7?", max_turns=4)
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    else:
        result = await Runner.run(agent, "What is 6 times 7?", max_turns=4)
    assert result.final_output == "It is 42."
    assert runs == [(6, 7)]  # the SDK ran the tool the gateway's answer asked for
    first, second = session.records
    assert [r.api for r in (first, second)] == [api, api]
    assert [r.stream for r in (first, second)] == [stream, stream]
    assert [r.finish_reason for r in (first, second)] == ["tool_calls", "stop"]
    assert all(r.ok and r.model == MODEL for r in (first, second))
    assert first.tools is not None and first.tools[0]["function"]["name"] == "multiply"
    # the second call carries the first one's tool call and the tool's result
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "tool"]
    (call,) = second.messages[2].tool_calls
    assert call.function.name == "multiply" and json.loads(call.function.arguments) == {
        "a": 6,
        "b": 7,
    }
    assert second.messages[3].tool_call_id == call.id and second.messages[3].content == "42"
    assert second.message is not None and second.message.content == "It is 42."


async def run_agent(agent: Agent, text: str, *, stream: bool) -> Any:
    """``Runner.run``, or ``Runner.run_streamed`` with its events drained."""
    if not stream:
        return await Runner.run(agent, text, max_turns=1)
    result = Runner.run_streamed(agent, text, max_turns=1)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("api", list(MODELS))
async def test_sdk_calls_record_the_sampled_token_ids(
    policy: HFPolicy, api: str, stream: bool, tmp_path: Any
) -> None:
    # The random model never stops within max_new_tokens=8: every answer ends by length.
    with Gateway(policy, served_model_name=MODEL, log_dir=tmp_path) as g:
        session = g.open_session()
        client = openai.AsyncOpenAI(base_url=session.base_url, api_key="x", max_retries=0)
        agent = Agent(name="a", instructions="Be brief.", model=MODELS[api](MODEL, client))
        if api == "responses":
            # A Responses answer cut by the token limit is status "incomplete" (as OpenAI's
            # is), which the SDK raises on, streamed or not: the call is still recorded.
            with pytest.raises(ModelBehaviorError, match="max_output_tokens"):
                await run_agent(agent, "Say hi.", stream=stream)
        else:
            result = await run_agent(agent, "Say hi.", stream=stream)
        (record,) = session.records
        assert record.api == api and record.stream is stream and record.ok
        assert record.finish_reason == "length"
        assert record.has_token_ids and len(record.token_ids or []) == 8
        request = GenerationRequest(messages=record.messages, tools=record.tools)
        assert record.prompt_token_ids == policy.render(request)
        if api == "chat.completions":
            assert record.message is not None
            assert result.final_output == record.message.content
