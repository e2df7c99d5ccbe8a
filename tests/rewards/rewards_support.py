"""Builders shared by the reward tests: groups of trajectories and a judge aimed at the server."""

from __future__ import annotations

from typing import Any

from envkit.rewards import RulerJudge
from envkit.types import Message, ToolCall, Trajectory, TrajectoryGroup

SYSTEM = "You are a meticulous assistant. " * 40  # a long system prompt, easy to count
TASK = "Compute 17 * 23 and explain briefly."

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluates an arithmetic expression.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
                "additionalProperties": False,
            },
        },
    }
]


def trajectory(
    answer: str, *, info: dict[str, Any] | None = None, turns: int = 1, **kw: Any
) -> Trajectory:
    """A trajectory: system prompt, task, ``turns - 1`` tool round trips, then ``answer``."""
    messages = [Message(role="system", content=SYSTEM), Message(role="user", content=TASK)]
    for k in range(turns - 1):
        call = ToolCall.create("calculator", {"expression": f"17*23+{k}"}, id=f"c{k}")
        messages.append(
            Message(role="assistant", content=f"Let me compute step {k}.", tool_calls=[call])
        )
        messages.append(
            Message(role="tool", tool_call_id=f"c{k}", name="calculator", content=str(391 + k))
        )
    messages.append(Message(role="assistant", content=answer))
    return Trajectory(env_id="test/Judge-v0", messages=messages, tools=TOOLS, info=info or {}, **kw)


def group(*answers: str, seed: int = 0, **kw: Any) -> TrajectoryGroup:
    """A group with one trajectory per answer, in order."""
    trajs = [trajectory(a, group_index=i, **kw) for i, a in enumerate(answers)]
    return TrajectoryGroup(env_id="test/Judge-v0", seed=seed, trajectories=trajs)


def judge_for(server: Any, rubric: str | None = None, **options: Any) -> RulerJudge:
    """A judge that talks to the scripted ``server`` with small timeouts and backoffs."""
    settings: dict[str, Any] = {
        "timeout_s": 2.0,
        "backoff_s": 0.001,
        "backoff_max_s": 0.05,
        "jitter": 0.0,
    }
    settings.update(options)
    return RulerJudge("openai/judge-test", rubric, api_base=server.url, api_key="test", **settings)


def score_of_answer(text: str) -> float:
    """The scripted judge's opinion: 391 is right (1.0), 'tests' means hacking (0.0), else 0.3."""
    if "special-cased" in text:
        return 0.0
    return 1.0 if "391" in text.split("</message>")[-2] else 0.3
