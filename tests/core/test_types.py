"""JSON round-trips, validation errors and JSONL helpers of ``envkit.types``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from envkit.types import (
    Completion,
    GenerationRequest,
    Message,
    ToolCall,
    Trajectory,
    TrajectoryGroup,
    Usage,
    read_jsonl,
    write_jsonl,
)

CALL = ToolCall.create("search", {"query": "naïve café ☕", "k": 3}, id="call_1")

MESSAGES = [
    Message(role="system", content="Be brief."),
    Message(role="user", content='日本語で答えて — émojis 🎉 and "quotes"\n\ttabs'),
    Message(role="assistant", content=None, tool_calls=[CALL]),
    Message(role="tool", tool_call_id="call_1", name="search", content='{"hits": []}'),
    Message(role="assistant", content=""),
]

TRAJ_FULL = Trajectory(
    env_id="envkit/Arithmetic-v0",
    seed=7,
    task_id="3 + 4",
    group_index=2,
    messages=MESSAGES,
    tools=[{"type": "function", "function": {"name": "search", "parameters": {}}}],
    completions=[
        Completion(
            message=MESSAGES[2],
            prompt_token_ids=[1, 2, 3],
            token_ids=[4, 5],
            logprobs=[-0.5, -1.25],
            finish_reason="tool_calls",
            usage=Usage(prompt_tokens=3, completion_tokens=2),
        )
    ],
    step_rewards=[0.0, 0.5],
    reward=0.5,
    reward_breakdown={"correct": 1.0, "format": None},
    metrics={"turns": 2, "nested": {"a": [1, 2.5, None, "x"]}},
    info={"correct": True},
    outcome="truncated",
    usage=Usage(prompt_tokens=10, completion_tokens=4),
)

TRAJ_FAILED = Trajectory(
    env_id="envkit/X-v0", outcome="env_error", error="ValueError in env.step: boom", reward=None
)

CASES: list[BaseModel] = [
    *MESSAGES,
    CALL,
    ToolCall.create("f", "{not json", id="bad"),  # malformed arguments are kept verbatim
    Completion(message=Message(role="assistant", content="42")),
    GenerationRequest(messages=MESSAGES[:2], tools=None),
    Trajectory(env_id="x"),
    TRAJ_FULL,
    TRAJ_FAILED,
    TrajectoryGroup(env_id="x", seed=1, trajectories=[TRAJ_FULL, TRAJ_FAILED]),
    TrajectoryGroup(env_id="x", outcome="judge_error", error="judge timed out"),
]


@pytest.mark.parametrize("obj", CASES, ids=lambda o: type(o).__name__)
def test_json_round_trip_is_lossless(obj: BaseModel) -> None:
    text = obj.model_dump_json()
    back = type(obj).model_validate_json(text)
    assert back == obj
    assert back.model_dump_json() == text


def test_round_trip_keeps_none_rewards_distinct_from_zero() -> None:
    group = TrajectoryGroup(
        env_id="x",
        trajectories=[Trajectory(env_id="x", reward=None), Trajectory(env_id="x", reward=0.0)],
    )
    back = TrajectoryGroup.model_validate_json(group.model_dump_json())
    assert back.rewards == [None, 0.0]
    assert back.rewards[0] is None


def test_nan_reward_becomes_none_not_zero() -> None:
    assert Trajectory(env_id="x", reward=float("nan")).reward is None


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.role)
def test_to_dict_coerce_round_trip(message: Message) -> None:
    d = message.to_dict()
    json.dumps(d)
    assert d["role"] == message.role
    assert Message.coerce(d) == message
    assert Message.coerce(message) is message


def test_to_dict_is_openai_format() -> None:
    d = MESSAGES[2].to_dict()
    assert d == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "search", "arguments": CALL.function.arguments},
            }
        ],
    }
    assert json.loads(d["tool_calls"][0]["function"]["arguments"]) == {
        "query": "naïve café ☕",
        "k": 3,
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"role": "user", "content": "x", "tool_calls": [CALL]}, "only assistant"),
        ({"role": "system", "content": "x", "tool_calls": [CALL]}, "only assistant"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "robot", "content": "x"}, "role"),
        ({"role": "user", "content": "x", "color": "red"}, "color"),
    ],
)
def test_invalid_messages_are_rejected(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        Message.model_validate(kwargs)


def test_completion_checks_token_data() -> None:
    msg = Message(role="assistant", content="hi")
    with pytest.raises(ValidationError, match=r"logprobs \(1\) and token_ids \(2\)"):
        Completion(message=msg, token_ids=[1, 2], logprobs=[-0.1])
    with pytest.raises(ValidationError, match="must be an assistant message"):
        Completion(message=Message(role="user", content="hi"))
    assert Completion(message=msg, token_ids=[1, 2], logprobs=[-0.1, -0.2]).token_ids == [1, 2]


def test_trajectory_helpers() -> None:
    assert TRAJ_FULL.num_turns == 2
    assert not TRAJ_FULL.failed
    assert TRAJ_FAILED.failed
    assert TRAJ_FULL.message_dicts()[1]["content"].startswith("日本語")
    assert Usage(prompt_tokens=1, completion_tokens=2) + Usage(prompt_tokens=3) == Usage(
        prompt_tokens=4, completion_tokens=2
    )


def test_tool_call_create_accepts_mapping_or_text() -> None:
    a = ToolCall.create("f", {"x": 1}, id="1")
    b = ToolCall.create("f", '{"x": 1}', id="1")
    assert a == b
    assert a.type == "function"


@pytest.mark.parametrize("model", [Trajectory, TrajectoryGroup])
def test_write_then_read_jsonl(tmp_path: Path, model: type[BaseModel]) -> None:
    items = [TRAJ_FULL, TRAJ_FAILED] if model is Trajectory else [CASES[-2], CASES[-1]]
    path = tmp_path / "sub" / "out.jsonl"
    assert write_jsonl(path, items) == 2
    assert write_jsonl(path, items[:1], append=True) == 1
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert read_jsonl(path, model) == [*items, items[0]]
    assert write_jsonl(path, items[:1]) == 1  # without append: overwrite
    assert read_jsonl(path, model) == items[:1]


def test_read_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(Trajectory(env_id="a").model_dump_json() + "\n\n   \n", encoding="utf-8")
    assert [t.env_id for t in read_jsonl(path, Trajectory)] == ["a"]


@pytest.mark.parametrize(
    "bad_line", ['{"env_id": 3}', "not json at all", '{"env_id": "x", "outcome": "great"}']
)
def test_read_jsonl_names_file_and_line_of_a_bad_line(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "t.jsonl"
    good = Trajectory(env_id="a").model_dump_json()
    path.write_text(f"{good}\n{good}\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl:3: not a valid Trajectory"):
        read_jsonl(path, Trajectory)
