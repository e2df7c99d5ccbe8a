"""Agents written with the plain ``openai`` SDK, as a user would, for the agent tests.

Each is ``async def agent(client, task) -> answer`` with ``client`` an ``openai.AsyncOpenAI``;
they are importable by name (``"agents_support:two_call_agent"``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai

MODEL = "policy"
"""The model name the agents send (``AgentEnv``'s default ``model``)."""

VERDICT = "Checker: that is not right. Answer again."


def prompt_of(task: Any) -> list[dict[str, Any]]:
    """The task's prompt as OpenAI message dicts."""
    return [dict(m) for m in task.messages]


async def one_call_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Asks once and returns the text."""
    out = await client.chat.completions.create(model=MODEL, messages=prompt_of(task))
    return out.choices[0].message.content or ""


async def two_call_agent(client: openai.AsyncOpenAI, task: Any) -> Any:
    """Answers, gets a checker's verdict as a user message, answers again (returns the SDK's
    message object)."""
    messages = prompt_of(task)
    first = await client.chat.completions.create(model=MODEL, messages=messages)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": VERDICT},
    ]
    second = await client.chat.completions.create(model=MODEL, messages=messages)
    return second.choices[0].message


async def rewriting_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Answers, then asks again over a rewritten history (a summary replaces the turns): two
    branches, the second one the main conversation."""
    messages = prompt_of(task)
    first = await client.chat.completions.create(model=MODEL, messages=messages)
    summary = f"Earlier you answered: {first.choices[0].message.content!r}. Answer once more."
    rewritten = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": summary}]
    second = await client.chat.completions.create(model=MODEL, messages=rewritten)
    return second.choices[0].message.content or ""


async def dict_agent(client: openai.AsyncOpenAI, task: Any) -> dict[str, Any]:
    """Returns the answer as an OpenAI message dict."""
    out = await client.chat.completions.create(model=MODEL, messages=prompt_of(task))
    return {"role": "assistant", "content": out.choices[0].message.content}


async def raising_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Calls the model, then fails in its own code."""
    await client.chat.completions.create(model=MODEL, messages=prompt_of(task))
    raise ValueError("the harness broke after the first call")


async def slow_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Calls the model once, then hangs."""
    await client.chat.completions.create(model=MODEL, messages=prompt_of(task))
    await asyncio.sleep(60)
    return "never"


async def silent_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Never calls the model."""
    return "42"


async def wrong_model_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Sends a model name the session does not serve."""
    out = await client.chat.completions.create(model="gpt-4o", messages=prompt_of(task))
    return out.choices[0].message.content or ""


async def catching_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Swallows a failed call and answers anyway."""
    try:
        await client.chat.completions.create(model=MODEL, messages=prompt_of(task))
    except openai.APIError:
        return "gave up"
    return "fine"


async def int_agent(client: openai.AsyncOpenAI, task: Any) -> int:
    """Calls the model, then returns something that is not an answer."""
    await client.chat.completions.create(model=MODEL, messages=prompt_of(task))
    return 42


async def closing_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Closes its client when done (``async with``), as tidy code does."""
    async with client:
        out = await client.chat.completions.create(model=MODEL, messages=prompt_of(task))
    return out.choices[0].message.content or ""


async def responses_agent(client: openai.AsyncOpenAI, task: Any) -> str:
    """Uses the Responses API (the OpenAI Agents SDK's default) instead of chat completions."""
    out = await client.responses.create(model=MODEL, input=prompt_of(task))
    return out.output_text
