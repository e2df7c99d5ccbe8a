"""Gymnasium spaces of conversations and assistant turns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from core_support import ToolEnv

from envkit.spaces import AssistantTurn, Conversation
from envkit.types import Completion, Message

CALL = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ("", True),
        ("hello", True),
        ({"role": "assistant", "content": "hi"}, True),
        ({"content": "hi"}, True),
        ({"role": "assistant", "content": None, "tool_calls": [CALL]}, True),
        (Message(role="assistant", content="hi"), True),
        ({"role": "user", "content": "hi"}, False),
        ({"role": "assistant"}, False),
        ({"role": "assistant", "content": "hi", "extra": 1}, False),
        (42, False),
        (None, False),
        (["hi"], False),
        (Completion(message=Message(role="assistant", content="hi")), False),
    ],
)
def test_assistant_turn_contains(x: Any, expected: bool) -> None:
    assert AssistantTurn().contains(x) is expected
    assert (x in AssistantTurn()) is expected


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([], True),
        ([{"role": "user", "content": "2+2?"}], True),
        ([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], True),
        ([{"role": "tool", "tool_call_id": "c1", "content": "5"}], True),
        ([{"role": "tool", "content": "5"}], False),
        ([{"role": "user", "content": "u", "tool_calls": [CALL]}], False),
        ([Message(role="user", content="u")], False),
        ({"role": "user", "content": "u"}, False),
        ("text", False),
        ([{"role": "wizard", "content": "u"}], False),
    ],
)
def test_conversation_contains(x: Any, expected: bool) -> None:
    assert Conversation().contains(x) is expected


def test_conversation_max_messages() -> None:
    space = Conversation(max_messages=2)
    msg = {"role": "user", "content": "u"}
    assert space.contains([msg, msg])
    assert not space.contains([msg, msg, msg])
    space.seed(0)
    assert all(len(space.sample()) <= 2 for _ in range(50))


@pytest.mark.parametrize(
    "space_factory",
    [
        lambda: AssistantTurn(),
        lambda: AssistantTurn(max_length=5, tool_names=["add", "search"]),
        lambda: Conversation(),
        lambda: Conversation(max_messages=3),
    ],
    ids=["turn", "turn-tools", "conversation", "conversation-max3"],
)
def test_samples_are_contained_and_reproducible(space_factory: Any) -> None:
    a, b = space_factory(), space_factory()
    a.seed(123)
    b.seed(123)
    samples_a = [a.sample() for _ in range(100)]
    samples_b = [b.sample() for _ in range(100)]
    assert samples_a == samples_b
    assert all(a.contains(s) for s in samples_a)
    c = space_factory()
    c.seed(124)
    assert [c.sample() for _ in range(100)] != samples_a


def test_seed_in_constructor_and_generator() -> None:
    a = AssistantTurn(seed=5)
    b = AssistantTurn(seed=np.random.default_rng(5))
    assert [a.sample() for _ in range(20)] == [b.sample() for _ in range(20)]


def test_tool_turn_samples_call_known_tools() -> None:
    space = AssistantTurn(tool_names=["add"], seed=0)
    samples = [space.sample() for _ in range(200)]
    calls = [s for s in samples if isinstance(s, dict)]
    texts = [s for s in samples if isinstance(s, str)]
    assert calls and texts, "both kinds of turn should be drawn"
    assert {c["tool_calls"][0]["function"]["name"] for c in calls} == {"add"}
    assert all(len(t) <= space.max_length for t in texts)


def test_env_action_space_knows_its_tools() -> None:
    env = ToolEnv()
    assert env.action_space == AssistantTurn(tool_names=["add", "explode", "nap", "broken_sandbox"])
    assert env.action_space != AssistantTurn()
    assert env.observation_space == Conversation()


@pytest.mark.parametrize("space", [AssistantTurn(), Conversation()])
def test_masks_are_refused_and_jsonable_round_trip(space: Any) -> None:
    with pytest.raises(ValueError, match="does not support masks"):
        space.sample(mask=1)
    space.seed(0)
    samples = [space.sample() for _ in range(3)]
    assert space.from_jsonable(space.to_jsonable(samples)) == samples
    assert not space.is_np_flattenable


def test_bad_max_length() -> None:
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        AssistantTurn(max_length=0)
