"""An OpenAI Agents SDK agent with a function tool, played through envkit's capture gateway.

Shows: an ``agents.Agent`` with a ``@function_tool``, run by ``agents.Runner.run`` on the
``openai.AsyncOpenAI`` client envkit hands each episode (bound to the episode's gateway session),
through both of the SDK's model classes: ``OpenAIChatCompletionsModel`` (``/chat/completions``)
and ``OpenAIResponsesModel`` (``/responses``, the SDK's default API); the SDK's tracing turned off
(``set_tracing_disabled(True)``) so nothing leaves this machine; and, per episode, the tool round
trip the gateway recorded: a call that asked for the tool, then one that answered with its result.

A tiny random model never writes a valid tool call, so the policy here is a script keyed on the
conversation (a ``CallablePolicy``): ask for ``add(a, b)`` first, answer with the tool's result
once it is in the conversation. Replace it with ``HFPolicy.from_pretrained("smollm2-135m")`` (or
any policy) to let a model decide. Needs the ``agents`` extra: ``pip install "envkit-rl[agents]"``.

Run:
    python examples/agent_openai_agents_sdk.py
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import openai
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

import envkit
from envkit.gateway import read_session
from envkit.policies import CallablePolicy

set_tracing_disabled(True)  # the SDK would upload traces to OpenAI otherwise

MODEL = "policy"  # the model name the agent sends: the gateway session serves only this one
TOOL_RUNS: list[tuple[int, int]] = []  # what the tool was called with, to show it ran


@function_tool
def add(a: int, b: int) -> int:
    """Adds two integers.

    Args:
        a: The first integer.
        b: The second integer.
    """
    TOOL_RUNS.append((a, b))
    return a + b


def _agent(model: Any) -> Agent:
    return Agent(
        name="calculator",
        instructions="Use the add tool to add numbers, then give the sum.",
        tools=[add],
        model=model,
    )


async def solve_chat(client: openai.AsyncOpenAI, task: Any) -> str:
    """The agent on the chat-completions API."""
    model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
    result = await Runner.run(_agent(model), [dict(m) for m in task.messages], max_turns=4)
    return str(result.final_output)


async def solve_responses(client: openai.AsyncOpenAI, task: Any) -> str:
    """The agent on the Responses API."""
    model = OpenAIResponsesModel(model=MODEL, openai_client=client)
    result = await Runner.run(_agent(model), [dict(m) for m in task.messages], max_turns=4)
    return str(result.final_output)


def scripted_model(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
    """Stands in for a model: calls ``add`` with the question's numbers, then answers with the
    tool's result."""
    if messages[-1]["role"] == "tool":
        return {"role": "assistant", "content": f"The sum is {messages[-1]['content']}."}
    question = next(m["content"] for m in messages if m["role"] == "user")
    a, b = (int(n) for n in re.findall(r"\d+", question)[:2])
    call = {"name": "add", "arguments": json.dumps({"a": a, "b": b})}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": f"call_{a}_{b}", "type": "function", "function": call}],
    }


def main() -> None:
    tasks = [{"prompt": f"What is {a} + {b}?", "answer": a + b} for a, b in [(17, 25), (3, 4)]]
    policy = CallablePolicy(scripted_model)
    with tempfile.TemporaryDirectory() as tmp:
        for api, agent in [("chat.completions", solve_chat), ("responses", solve_responses)]:
            TOOL_RUNS.clear()
            env_id = envkit.register_agent(
                f"AgentsSdk-{api.split('.')[0]}-v0",
                agent=agent,
                tasks=tasks,
                reward="numeric_match",
                override=True,
            )
            jsonl = Path(tmp) / f"{api}.jsonl"  # keeps the session files beside it
            groups = envkit.collect(env_id, policy, seeds=range(2), jsonl_path=jsonl)
            trajectories = [t for group in groups for t in group]
            print(f"{api}:")
            print(f"  outcomes: {[t.outcome for t in trajectories]}")
            print(f"  rewards: {[t.reward for t in trajectories]}")
            print(f"  answers: {[t.info['submitted'] for t in trajectories]}")
            print(f"  tool ran with: {sorted(TOOL_RUNS)}")
            records = read_session(trajectories[0].info["gateway_session"])
            print(f"  recorded calls: {[(r.api, r.finish_reason) for r in records]}")
            print(f"  roles the second call saw: {[m.role for m in records[1].messages]}")


if __name__ == "__main__":
    main()
