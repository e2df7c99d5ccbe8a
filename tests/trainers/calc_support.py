"""The scripted tool episode of the sequence and env-mask tests: ``CalcEnv`` and its policy.

``CalcEnv`` asks for (2 + 3) * 4 with two tools; ``scripted_policy`` renders its prompts exactly
as ``HFPolicy`` does (same chat template, same tokenizer) and "samples" scripted turns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envkit.env import ChatEnv, Feedback, Task
from envkit.policies import CallablePolicy, HFPolicy
from envkit.policies.toolcall_parsing import parse_tool_calls
from envkit.tools import ToolBox, tool
from envkit.types import Completion, GenerationRequest, Message


@tool
def add(a: int, b: int) -> int:
    """Adds two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


@tool
def mul(a: int, b: int) -> int:
    """Multiplies two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


class CalcEnv(ChatEnv):
    """Compute (2 + 3) * 4 with the tools; the final answer ends the episode (reward 1 if 20)."""

    def __init__(self) -> None:
        super().__init__(max_turns=3, toolbox=ToolBox([add, mul]))

    def make_task(self, options: dict[str, Any] | None) -> Task:
        return Task(messages=[{"role": "user", "content": "Compute (2 + 3) * 4 with the tools."}])

    def respond(self, message: Message) -> Feedback:
        return Feedback(reward=float("20" in (message.content or "")), done=True)


def scripted_policy(
    renderer: HFPolicy,
    tok: Any,
    next_text: Callable[[list[dict[str, Any]]], str],
    logprob: Callable[[int], float],
) -> CallablePolicy:
    """A policy whose prompts are ``renderer.render(...)`` and whose turn is ``next_text(messages)``
    then ``<|im_end|>``, its i-th token with log-probability ``logprob(i)``."""
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def fn(messages: list[dict[str, Any]], tools: Any) -> Completion:
        text = next_text(messages)
        request = GenerationRequest(messages=[Message.coerce(m) for m in messages], tools=tools)
        ids = [*tok(text, add_special_tokens=False)["input_ids"], eos]
        parsed = parse_tool_calls(text)
        return Completion(
            message=Message(
                role="assistant",
                content=parsed.content or None if parsed.tool_calls else text,
                tool_calls=parsed.tool_calls or None,
            ),
            prompt_token_ids=renderer.render(request),
            token_ids=ids,
            logprobs=[logprob(i) for i in range(len(ids))],
            finish_reason="stop",
        )

    return CallablePolicy(fn)
