"""Parsing Hermes/Qwen ``<tool_call>`` blocks out of model text."""

from __future__ import annotations

import itertools
import json

import pytest

from envkit.policies.toolcall_parsing import new_call_id, parse_tool_calls
from envkit.types import Message


def _ids():
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


@pytest.mark.parametrize(
    ("text", "content", "calls", "malformed"),
    [
        pytest.param("Just text, no call.", "Just text, no call.", [], 0, id="no-call"),
        pytest.param("  keeps spacing\n", "  keeps spacing\n", [], 0, id="no-call-verbatim"),
        pytest.param(
            '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
            "",
            [("add", {"a": 1, "b": 2})],
            0,
            id="valid",
        ),
        pytest.param(
            'Let me add.\n<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\nDone',
            "Let me add.\n\nDone",
            [("add", {"a": 1})],
            0,
            id="text-around",
        ),
        pytest.param(
            '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "b", "arguments": {"x": "é"}}</tool_call>',
            "",
            [("a", {}), ("b", {"x": "é"})],
            0,
            id="multiple",
        ),
        pytest.param(
            '<tool_call>[{"name": "a", "arguments": {"n": 1}}, {"name": "b", "arguments": {}}]'
            "</tool_call>",
            "",
            [("a", {"n": 1}), ("b", {})],
            0,
            id="list-in-one-block",
        ),
        pytest.param(
            '<tool_call>{"name": "f", "parameters": {"q": "x"}}</tool_call>',
            "",
            [("f", {"q": "x"})],
            0,
            id="parameters-alias",
        ),
        pytest.param(
            '<tool_call>{"name": "f", "arguments": "{\\"q\\": 1}"}</tool_call>',
            "",
            [("f", {"q": 1})],
            0,
            id="arguments-as-json-text",
        ),
        pytest.param('<tool_call>{"name": "f"}</tool_call>', "", [("f", {})], 0, id="no-arguments"),
        pytest.param(
            'thinking <tool_call>\n{"name": "add", "arguments": {"a": 1}}',
            "thinking",
            [("add", {"a": 1})],
            0,
            id="unclosed-at-end",
        ),
    ],
)
def test_parses_valid_calls(text, content, calls, malformed):
    parsed = parse_tool_calls(text, make_id=_ids())
    assert parsed.content == content
    assert [(c.function.name, json.loads(c.function.arguments)) for c in parsed.tool_calls] == calls
    assert [c.id for c in parsed.tool_calls] == [f"call_{i}" for i in range(len(calls))]
    assert parsed.malformed == malformed


@pytest.mark.parametrize(
    ("text", "name", "raw_arguments"),
    [
        pytest.param(
            '<tool_call>{"name": "add", "arguments": {"a": 1,}}</tool_call>',
            "add",
            '{"a": 1,}',
            id="trailing-comma",
        ),
        pytest.param(
            '<tool_call>{"name": "add", "arguments": {\'a\': 1}}</tool_call>',
            "add",
            "{'a': 1}",
            id="single-quotes",
        ),
        pytest.param(
            '<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>',
            "add",
            '{"a": 1',
            id="truncated",
        ),
    ],
)
def test_malformed_json_with_a_name_keeps_the_raw_arguments(text, name, raw_arguments):
    parsed = parse_tool_calls(text)
    assert parsed.malformed == 1
    [call] = parsed.tool_calls
    assert call.function.name == name
    assert call.function.arguments == raw_arguments
    with pytest.raises(ValueError):  # the env's tool dispatch reports the bad JSON to the model
        json.loads(call.function.arguments)


@pytest.mark.parametrize(
    "block",
    [
        "<tool_call>not json at all</tool_call>",
        '<tool_call>{"arguments": {"a": 1}}</tool_call>',
        "<tool_call>[1, 2]</tool_call>",
        '<tool_call>{"name": 3}</tool_call>',
    ],
)
def test_blocks_without_a_readable_name_stay_in_the_content(block):
    parsed = parse_tool_calls(f"before {block} after")
    assert parsed.tool_calls == []
    assert parsed.content == f"before {block} after"
    assert parsed.malformed == 1


def test_a_bad_block_does_not_hide_a_good_one():
    text = (
        "<tool_call>garbage</tool_call>"
        '<tool_call>{"name": "ok", "arguments": {"v": true}}</tool_call>'
    )
    parsed = parse_tool_calls(text)
    assert [c.function.name for c in parsed.tool_calls] == ["ok"]
    assert parsed.content == "<tool_call>garbage</tool_call>"
    assert parsed.malformed == 1


def test_parsed_calls_make_a_valid_assistant_message():
    parsed = parse_tool_calls('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
    message = Message(
        role="assistant", content=parsed.content or None, tool_calls=parsed.tool_calls
    )
    assert message.to_dict()["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x": 1}'}


def test_generated_ids_are_unique_and_openai_shaped():
    ids = {new_call_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("call_") and len(i) == 29 for i in ids)
