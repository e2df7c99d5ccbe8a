"""``tool_calls_valid``: the fraction of the assistant's tool calls that were well-formed.

A call is valid when it names one of the trajectory's tools and its arguments are a JSON object
that fits the tool's ``parameters`` schema: required keys present, no unknown keys where
``additionalProperties`` is false, and top-level values of the declared JSON types.

Example:
    >>> from envkit.types import Message, ToolCall, Trajectory
    >>> schema = {"type": "function", "function": {"name": "add", "parameters": {
    ...     "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    ...     "required": ["a", "b"]}}}
    >>> t = Trajectory(env_id="e", tools=[schema], messages=[
    ...     Message(role="assistant", tool_calls=[
    ...         ToolCall.create("add", {"a": 1, "b": 2}, id="c1"),
    ...         ToolCall.create("add", {"a": "one"}, id="c2")])])
    >>> tool_calls_valid(t)
    0.5
"""

from __future__ import annotations

import json
from typing import Any

from envkit.rewards.registry import reward
from envkit.types import ToolCall, Trajectory

__all__ = ["tool_call_problem", "tool_calls_valid"]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, declared: Any) -> bool:
    names = declared if isinstance(declared, list) else [declared]
    for name in names:
        kinds = _TYPES.get(name)
        if kinds is None:
            return True  # an unknown type name: do not judge it
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, kinds):
            return True
    return False


def tool_call_problem(call: ToolCall, tools: dict[str, dict[str, Any]]) -> str | None:
    """What is wrong with ``call`` given the tool schemas by name, or ``None`` if it is valid."""
    name = call.function.name
    if name not in tools:
        return f"unknown tool {name!r}"
    try:
        args = json.loads(call.function.arguments or "{}")
    except ValueError:
        return f"{name}: arguments are not valid JSON"
    if not isinstance(args, dict):
        return f"{name}: arguments are not a JSON object"
    params = tools[name].get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    missing = [k for k in params.get("required", []) if k not in args]
    if missing:
        return f"{name}: missing required argument(s) {missing}"
    if params.get("additionalProperties") is False:
        extra = sorted(set(args) - set(props))
        if extra:
            return f"{name}: unknown argument(s) {extra}"
    for key, value in args.items():
        declared = (props.get(key) or {}).get("type")
        if declared is not None and not _type_ok(value, declared):
            return f"{name}: argument {key!r} should be {declared}, got {type(value).__name__}"
    return None


@reward(inline=True)
def tool_calls_valid(trajectory: Trajectory) -> float:
    """The fraction of the assistant's tool calls that were valid (1.0 when it made none).

    Args:
        trajectory: The episode; its ``tools`` hold the OpenAI tool schemas it was offered.
    """
    tools = {
        (t.get("function") or t).get("name"): (t.get("function") or t)
        for t in trajectory.tools or []
    }
    calls = [c for m in trajectory.messages if m.role == "assistant" for c in m.tool_calls or []]
    if not calls:
        return 1.0
    return sum(tool_call_problem(c, tools) is None for c in calls) / len(calls)
