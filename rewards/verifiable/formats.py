"""Format rewards: a regular expression, valid JSON, a JSON schema.

Example:
    >>> from envkit.types import Message, Trajectory
    >>> t = Trajectory(env_id="e", messages=[
    ...     Message(role="assistant", content='```json\\n{"city": "Paris"}\\n```')])
    >>> json_valid(t), json_valid(t, schema={"type": "object", "required": ["country"]})
    (1.0, 0.0)
    >>> regex_match(t, pattern=r'"city"')
    1.0
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from envkit.parsing import final_response
from envkit.rewards.registry import reward
from envkit.types import Trajectory

__all__ = ["json_valid", "regex_match"]

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.S)


@reward(inline=True)
def regex_match(
    trajectory: Trajectory,
    *,
    pattern: str,
    mode: Literal["search", "full"] = "search",
    ignore_case: bool = False,
) -> float:
    """1.0 when the final response matches ``pattern``, else 0.0.

    Args:
        trajectory: The episode.
        pattern: A Python regular expression (``re`` syntax; ``re.S`` is on).
        mode: ``"search"``: anywhere in the response; ``"full"``: the whole (stripped) response.
        ignore_case: Match case-insensitively.

    Raises:
        ValueError: ``pattern`` is not a valid regular expression or ``mode`` is unknown.

    Example:
        >>> from envkit.types import Message, Trajectory
        >>> t = Trajectory(env_id="e", messages=[
        ...     Message(role="assistant", content="<think>hm</think><answer>4</answer>")])
        >>> regex_match(t, pattern=r"<think>.*</think>\\s*<answer>.*</answer>", mode="full")
        1.0
    """
    if mode not in ("search", "full"):
        raise ValueError(f"regex_match: mode must be 'search' or 'full', got {mode!r}")
    try:
        compiled = re.compile(pattern, re.S | (re.I if ignore_case else 0))
    except re.error as e:
        raise ValueError(f"regex_match: invalid pattern {pattern!r}: {e}") from e
    text = final_response(trajectory)
    found = compiled.fullmatch(text.strip()) if mode == "full" else compiled.search(text)
    return float(found is not None)


def _json_text(text: str) -> str:
    fenced = _FENCE.match(text)
    return fenced.group(1) if fenced else text.strip()


@reward(inline=True)
def json_valid(trajectory: Trajectory, *, schema: dict[str, Any] | None = None) -> float:
    """1.0 when the final response is valid JSON (matching ``schema`` if given), else 0.0.

    A single fenced code block (```` ```json ... ``` ````) around the JSON is accepted.
    Schema validation uses the ``jsonschema`` package (any draft it supports).

    Args:
        trajectory: The episode.
        schema: A JSON schema the parsed value must satisfy.

    Raises:
        ImportError: ``schema`` is given but ``jsonschema`` is not installed.
        ValueError: ``schema`` is not a valid JSON schema.

    Example:
        >>> from envkit.types import Message, Trajectory
        >>> t = Trajectory(env_id="e", messages=[Message(role="assistant", content="{'a': 1}")])
        >>> json_valid(t)
        0.0
    """
    try:
        value = json.loads(_json_text(final_response(trajectory)))
    except ValueError:
        return 0.0
    if schema is None:
        return 1.0
    try:
        import jsonschema
    except ImportError as e:
        raise ImportError("json_valid(schema=...) needs jsonschema: pip install jsonschema") from e
    validator_cls = jsonschema.validators.validator_for(schema)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ValueError(f"json_valid: invalid JSON schema: {e.message}") from e
    return float(validator_cls(schema).is_valid(value))
