"""The bundled verifiable rewards: answer extraction, matching, formats, tool calls, length."""

from __future__ import annotations

import pytest

from envkit.parsing import final_response
from envkit.rewards import get, score_groups
from envkit.rewards.verifiable import (
    exact_match,
    json_valid,
    length_penalty,
    numeric_match,
    regex_match,
    tool_calls_valid,
)
from envkit.types import Completion, Message, ToolCall, Trajectory, TrajectoryGroup


def said(*contents: str, **kw) -> Trajectory:
    return Trajectory(
        env_id="e",
        messages=[
            Message(role="user", content="q"),
            *(Message(role="assistant", content=c) for c in contents),
        ],
        **kw,
    )


@pytest.mark.parametrize(
    ("content", "answer", "kwargs", "expected"),
    [
        ("The answer is 391.", 391, {}, 1.0),
        ("\\boxed{391}", "391", {}, 1.0),
        ("#### 391.0", 391, {}, 1.0),
        ("It is 390", 391, {}, 0.0),
        ("approximately 3.1416", 3.14159, {"rel_tol": 1e-4}, 1.0),
        ("approximately 3.1416", 3.14159, {}, 0.0),
        ("\\boxed{\\frac{1}{2}}", 0.5, {}, 1.0),
        ("no number at all", 391, {}, 0.0),
        ("17*23 = 391", "391.", {}, 1.0),
        ("9-4", 4, {}, 1.0),  # a minus after a digit is subtraction: the number is 4, not -4
        ("9-4", -4, {}, 0.0),
    ],
)
def test_numeric_match(content: str, answer, kwargs: dict, expected: float) -> None:
    assert numeric_match(said(content), answer=answer, **kwargs) == expected


@pytest.mark.parametrize(
    ("content", "answer", "kwargs", "expected"),
    [
        ("Paris", "Paris", {}, 1.0),
        ("  **paris**.", "Paris", {}, 1.0),
        ("paris", "Paris", {"ignore_case": False}, 0.0),
        ("I think <answer>Lyon</answer>", "Lyon", {}, 1.0),
        ("I think <answer>Lyon</answer>", "Lyon", {"extract": False}, 0.0),
        ("Nice", ["Paris", "Nice"], {}, 1.0),
        ("Marseille", ["Paris", "Nice"], {}, 0.0),
        ("", "Paris", {}, 0.0),
    ],
)
def test_exact_match(content: str, answer, kwargs: dict, expected: float) -> None:
    assert exact_match(said(content), answer=answer, **kwargs) == expected


def test_final_response_never_looks_back_past_the_last_assistant_turn() -> None:
    """An episode that ends in a tool call has no final text, whatever an earlier turn said."""
    t = Trajectory(
        env_id="e",
        messages=[
            Message(role="assistant", content="391"),
            Message(role="assistant", tool_calls=[ToolCall.create("f", {}, id="c")]),
            Message(role="tool", tool_call_id="c", content="tool says 5"),
        ],
    )
    assert final_response(t) == ""
    assert numeric_match(t, answer=391) == 0.0


@pytest.mark.parametrize("name", ["numeric_match", "exact_match"])
def test_rewards_score_what_the_env_graded_not_earlier_text(name: str) -> None:
    """The hack: say "the answer is 42" in text, then submit 41 through the env's tool."""
    t = Trajectory(
        env_id="e",
        reference="42",
        info={"submitted": "41"},
        messages=[
            Message(role="assistant", content="The answer is 42."),
            Message(
                role="assistant", tool_calls=[ToolCall.create("submit", {"answer": "41"}, id="c")]
            ),
            Message(role="tool", tool_call_id="c", content="Answer received."),
        ],
    )
    g = TrajectoryGroup(env_id="e", trajectories=[t])
    score_groups(g, name)
    assert g.rewards == [0.0]
    t.info["submitted"] = "42"
    score_groups(g, name)
    assert g.rewards == [1.0]


@pytest.mark.parametrize("name", ["numeric_match", "exact_match"])
def test_missing_reference_is_an_error_not_zero(name: str) -> None:
    g = TrajectoryGroup(env_id="e", trajectories=[said("391")])
    report = score_groups(g, name)
    assert g.rewards == [None] and report.errors == 1
    assert "needs the reference answer" in g[0].metrics["reward_errors"][name]


def test_reference_from_trajectory_and_bound_option() -> None:
    g = TrajectoryGroup(
        env_id="e", trajectories=[said("391", reference=391), said("5", reference=5)]
    )
    score_groups(g, "numeric_match")
    assert g.rewards == [1.0, 1.0]
    score_groups(g, get("numeric_match").bind(answer=391))
    assert g.rewards == [1.0, 0.0]


@pytest.mark.parametrize("name", ["numeric_match", "exact_match"])
def test_the_submitted_answer_in_info_is_not_a_reference(name: str) -> None:
    """The old lie: an env put the model's answer in info["answer"], read as the reference."""
    g = TrajectoryGroup(
        env_id="e", trajectories=[said("<answer>1 + 1</answer>", info={"answer": "1 + 1"})]
    )
    score_groups(g, name)
    assert g.rewards == [None]
    assert "needs the reference answer" in g[0].metrics["reward_errors"][name]


@pytest.mark.parametrize("reference", ["no number", "three hundred ninety-one: 391", "9 + 4"])
def test_a_reference_that_is_not_one_number_is_an_error(reference: str) -> None:
    with pytest.raises(ValueError, match="not one finite number"):
        numeric_match(said("391 4"), answer=reference)


@pytest.mark.parametrize(
    ("content", "kwargs", "expected"),
    [
        (
            "<think>x</think><answer>1</answer>",
            {"pattern": r"<think>.*</think><answer>.*</answer>", "mode": "full"},
            1.0,
        ),
        ("preamble <answer>1</answer>", {"pattern": r"<answer>.*</answer>", "mode": "full"}, 0.0),
        ("preamble <answer>1</answer>", {"pattern": r"<answer>.*</answer>"}, 1.0),
        ("HELLO", {"pattern": "hello", "ignore_case": True}, 1.0),
        ("HELLO", {"pattern": "hello"}, 0.0),
    ],
)
def test_regex_match(content: str, kwargs: dict, expected: float) -> None:
    assert regex_match(said(content), **kwargs) == expected


def test_regex_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="invalid pattern"):
        regex_match(said("x"), pattern="(")
    with pytest.raises(ValueError, match="mode must be"):
        regex_match(said("x"), pattern="x", mode="partial")  # type: ignore[arg-type]
    g = TrajectoryGroup(env_id="e", trajectories=[said("x")])
    score_groups(g, "regex_match")  # no pattern bound
    assert g.rewards == [None] and "pattern" in g[0].metrics["reward_errors"]["regex_match"]


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


@pytest.mark.parametrize(
    ("content", "schema", "expected"),
    [
        ('{"name": "a", "age": 3}', None, 1.0),
        ('```json\n{"name": "a", "age": 3}\n```', SCHEMA, 1.0),
        ('{"name": "a", "age": -1}', SCHEMA, 0.0),
        ('{"name": "a"}', SCHEMA, 0.0),
        ("[1, 2]", None, 1.0),
        ("{'single': 'quotes'}", None, 0.0),
        ("", None, 0.0),
    ],
)
def test_json_valid(content: str, schema: dict | None, expected: float) -> None:
    assert json_valid(said(content), schema=schema) == expected


def test_invalid_schema_is_an_error() -> None:
    with pytest.raises(ValueError, match="invalid JSON schema"):
        json_valid(said("{}"), schema={"type": "no-such-type"})


TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize(
    ("name", "arguments", "valid"),
    [
        ("search", '{"query": "x"}', True),
        ("search", '{"query": "x", "limit": 3}', True),
        ("search", '{"query": "x", "limit": "3"}', False),
        ("search", '{"query": "x", "limit": true}', False),
        ("search", '{"limit": 3}', False),
        ("search", '{"query": "x", "sort": "asc"}', False),
        ("search", '{"query": ', False),
        ("search", '["x"]', False),
        ("browse", '{"query": "x"}', False),
    ],
)
def test_tool_calls_valid(name: str, arguments: str, valid: bool) -> None:
    call = ToolCall(id="c1", function={"name": name, "arguments": arguments})
    t = Trajectory(
        env_id="e", tools=[TOOL], messages=[Message(role="assistant", tool_calls=[call])]
    )
    assert tool_calls_valid(t) == (1.0 if valid else 0.0)


def test_tool_calls_valid_is_a_fraction_and_vacuous_without_calls() -> None:
    calls = [ToolCall.create("search", {"query": "x"}, id="a"), ToolCall.create("nope", {}, id="b")]
    t = Trajectory(
        env_id="e",
        tools=[TOOL],
        messages=[
            Message(role="assistant", tool_calls=calls[:1]),
            Message(role="tool", tool_call_id="a", content="r"),
            Message(role="assistant", tool_calls=calls[1:]),
        ],
    )
    assert tool_calls_valid(t) == 0.5
    assert tool_calls_valid(said("no calls")) == 1.0


@pytest.mark.parametrize(
    ("contents", "kwargs", "expected"),
    [
        (["x" * 100], {"limit": 100}, 0.0),
        (["x" * 150], {"limit": 100}, -0.5),
        (["x" * 60, "x" * 60], {"limit": 100}, -0.2),
        (["x" * 1000], {"limit": 100}, -1.0),
        (["a b c d"], {"limit": 2, "unit": "words"}, -1.0),
        (["a b c"], {"limit": 2, "unit": "words"}, -0.5),
    ],
)
def test_length_penalty(contents: list[str], kwargs: dict, expected: float) -> None:
    assert length_penalty(said(*contents), **kwargs) == pytest.approx(expected)


def test_length_penalty_in_tokens_needs_token_ids() -> None:
    msg = Message(role="assistant", content="hi")
    t = Trajectory(
        env_id="e", messages=[msg], completions=[Completion(message=msg, token_ids=[1] * 30)]
    )
    assert length_penalty(t, limit=20, unit="tokens") == -0.5
    with pytest.raises(ValueError, match="needs token ids"):
        length_penalty(said("hi"), unit="tokens")
    with pytest.raises(ValueError, match="limit must be > 0"):
        length_penalty(said("hi"), limit=0)
