"""The Responses API translations: request bodies to chat, chat answers to Responses and events.

The expected shapes come from the ``openai`` SDK's own types (``Response``,
``ResponseStreamEvent``) and from what the OpenAI Agents SDK (openai-agents 0.24) was seen to
send: ``AGENTS_SDK_SECOND_CALL`` is its second ``responses.create`` body, captured verbatim.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.responses.response_create_params import ResponseCreateParamsBase
from pydantic import TypeAdapter

from envkit.gateway.responses import (
    chat_body_from_responses,
    response_from_chat,
    response_stream_events,
)

EVENT = TypeAdapter(ResponseStreamEvent)

ADD_TOOL_PARAMS = {
    "properties": {"a": {"title": "A", "type": "integer"}, "b": {"title": "B", "type": "integer"}},
    "required": ["a", "b"],
    "title": "add_args",
    "type": "object",
    "additionalProperties": False,
}
ADD_TOOL = {
    "name": "add",
    "parameters": ADD_TOOL_PARAMS,
    "strict": True,
    "type": "function",
    "description": "Add two integers.",
}
CHAT_ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": ADD_TOOL_PARAMS,
        "strict": True,
    },
}

# openai-agents 0.24, Runner.run(Agent(instructions=..., tools=[add]), "What is 2+3?") with an
# OpenAIResponsesModel: the second call, after the model answered text plus two tool calls.
AGENTS_SDK_SECOND_CALL: dict[str, Any] = {
    "model": "smollm2-135m",
    "include": [],
    "input": [
        {"content": "What is 2+3?", "role": "user"},
        {
            "id": "msg_1",
            "content": [{"annotations": [], "text": "Let me check.", "type": "output_text"}],
            "role": "assistant",
            "status": "completed",
            "type": "message",
        },
        {
            "arguments": '{"a": 2, "b": 3}',
            "call_id": "call_a1",
            "name": "add",
            "type": "function_call",
            "id": "fc_1_0",
            "status": "completed",
        },
        {
            "arguments": '{"a": 1, "b": 1}',
            "call_id": "call_a2",
            "name": "add",
            "type": "function_call",
            "id": "fc_1_1",
            "status": "completed",
        },
        {"call_id": "call_a1", "output": "5", "type": "function_call_output"},
        {"call_id": "call_a2", "output": "2", "type": "function_call_output"},
    ],
    "instructions": "You add numbers.",
    "tools": [ADD_TOOL],
}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _chat_answer(
    content: str | None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "smollm2-135m",
        "choices": [choice],
        "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28},
    }


# ------------------------------------------------------------------------------- requests


INPUT_CASES = {
    "string": (
        {"input": "hi"},
        [{"role": "user", "content": "hi"}],
    ),
    "instructions lead": (
        {"instructions": "Be brief.", "input": [{"role": "user", "content": "hi"}]},
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    ),
    "roles, developer as system": (
        {
            "input": [
                {"role": "system", "content": "S"},
                {"role": "developer", "content": "D"},
                {"role": "user", "content": "U"},
                {"role": "assistant", "content": "A"},
            ]
        },
        [
            {"role": "system", "content": "S"},
            {"role": "system", "content": "D"},
            {"role": "user", "content": "U"},
            {"role": "assistant", "content": "A"},
        ],
    ),
    "typed message items with parts": (
        {
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Part one. "},
                        {"type": "input_text", "text": "Part two."},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "id": "msg_x",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Ok.", "annotations": []}],
                },
            ]
        },
        [
            {"role": "user", "content": "Part one. Part two."},
            {"role": "assistant", "content": "Ok."},
        ],
    ),
    "function calls without a text message": (
        {
            "input": [
                {"role": "user", "content": "add"},
                {"type": "function_call", "call_id": "c1", "name": "add", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "mul", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "1"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "2"}],
                },
            ]
        },
        [
            {"role": "user", "content": "add"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call("c1", "add", "{}"), _call("c2", "mul", "{}")],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "tool", "tool_call_id": "c2", "content": "2"},
        ],
    ),
    "text after the calls of its turn joins them": (
        {
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "add", "arguments": "{}"},
                {"role": "assistant", "content": "Checking."},
            ]
        },
        [{"role": "assistant", "content": "Checking.", "tool_calls": [_call("c1", "add", "{}")]}],
    ),
    "calls after a tool result start a new turn": (
        {
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "x"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            ]
        },
        [
            {"role": "assistant", "content": None, "tool_calls": [_call("c1", "f", "{}")]},
            {"role": "tool", "tool_call_id": "c1", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [_call("c2", "f", "{}")]},
        ],
    ),
    "reasoning items dropped": (
        {
            "input": [
                {"role": "user", "content": "q"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                {"role": "assistant", "content": "a"},
            ]
        },
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    ),
}


@pytest.mark.parametrize("body,messages", INPUT_CASES.values(), ids=INPUT_CASES.keys())
def test_input_items_become_chat_messages(
    body: dict[str, Any], messages: list[dict[str, Any]]
) -> None:
    assert chat_body_from_responses(body)["messages"] == messages


def test_agents_sdk_multi_turn_input() -> None:
    chat = chat_body_from_responses(AGENTS_SDK_SECOND_CALL)
    assert chat == {
        "model": "smollm2-135m",
        "messages": [
            {"role": "system", "content": "You add numbers."},
            {"role": "user", "content": "What is 2+3?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    _call("call_a1", "add", '{"a": 2, "b": 3}'),
                    _call("call_a2", "add", '{"a": 1, "b": 1}'),
                ],
            },
            {"role": "tool", "tool_call_id": "call_a1", "content": "5"},
            {"role": "tool", "tool_call_id": "call_a2", "content": "2"},
        ],
        "tools": [CHAT_ADD_TOOL],
    }


def test_a_response_fed_back_as_input_gives_the_chat_conversation() -> None:
    """The next request: the response's output items and the tool results, as clients send them."""
    first = {"model": "m", "input": "What is 2+3?", "tools": [ADD_TOOL]}
    calls = [_call("call_1", "add", '{"a": 2, "b": 3}')]
    answer = _chat_answer("Let me add.", calls, finish_reason="tool_calls")
    response = Response.model_validate(response_from_chat(answer, first))
    replay = [item.model_dump(exclude_none=True) for item in response.output]
    second = {
        **first,
        "input": [
            {"role": "user", "content": "What is 2+3?"},
            *replay,
            {"type": "function_call_output", "call_id": "call_1", "output": "5"},
        ],
    }
    assert chat_body_from_responses(second)["messages"] == [
        {"role": "user", "content": "What is 2+3?"},
        {**answer["choices"][0]["message"]},
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]


FIELD_CASES = {
    "sampling and limits": (
        {"temperature": 0.7, "top_p": 0.9, "max_output_tokens": 64, "parallel_tool_calls": False},
        {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "parallel_tool_calls": False},
    ),
    "tool_choice auto": ({"tool_choice": "auto"}, {"tool_choice": "auto"}),
    "tool_choice none": ({"tool_choice": "none"}, {"tool_choice": "none"}),
    "tool_choice required": ({"tool_choice": "required"}, {"tool_choice": "required"}),
    "tool_choice function": (
        {"tool_choice": {"type": "function", "name": "add"}},
        {"tool_choice": {"type": "function", "function": {"name": "add"}}},
    ),
    "tools": ({"tools": [ADD_TOOL]}, {"tools": [CHAT_ADD_TOOL]}),
    "a bare function tool": (
        {"tools": [{"type": "function", "name": "f"}]},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
    ),
    "logprobs by include": (
        {"include": ["message.output_text.logprobs"]},
        {"logprobs": True},
    ),
    "logprobs by top_logprobs": ({"top_logprobs": 3}, {"logprobs": True, "top_logprobs": 3}),
    "text format text": ({"text": {"format": {"type": "text"}, "verbosity": "low"}}, {}),
    "text format json_object": (
        {"text": {"format": {"type": "json_object"}}},
        {"response_format": {"type": "json_object"}},
    ),
    "text format json_schema": (
        {"text": {"format": {"type": "json_schema", "name": "out", "schema": {}, "strict": True}}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": {}, "strict": True},
            }
        },
    ),
    "vllm extras pass through": (
        {"top_k": 20, "repetition_penalty": 1.0, "min_p": 0.0, "seed": 3},
        {"top_k": 20, "repetition_penalty": 1.0, "min_p": 0.0, "seed": 3},
    ),
    "ignored fields": (
        {
            "stream": True,
            "store": True,
            "metadata": {"k": "v"},
            "truncation": "auto",
            "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "low"},
            "user": "u",
            "safety_identifier": "s",
            "service_tier": "auto",
            "prompt_cache_key": "k",
            "max_tool_calls": 3,
            "background": False,
            "previous_response_id": None,
        },
        {},
    ),
}


@pytest.mark.parametrize("fields,expected", FIELD_CASES.values(), ids=FIELD_CASES.keys())
def test_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    chat = chat_body_from_responses({"model": "m", "input": "hi", **fields})
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "hi"}], **expected}


def test_every_responses_create_field_is_decided() -> None:
    """No field of the SDK's responses.create is refused as unknown (an update would show here)."""
    for field in ResponseCreateParamsBase.__annotations__:
        try:
            chat_body_from_responses({"input": "hi", **({} if field == "input" else {field: None})})
        except ValueError as e:
            pytest.fail(f"{field}: {e}")


REFUSALS = {
    "previous_response_id": ({"previous_response_id": "resp_1"}, "send the whole conversation"),
    "conversation": ({"conversation": "conv_1"}, "conversation: the gateway keeps no"),
    "prompt": ({"prompt": {"id": "pmpt_1"}}, "prompt: stored prompt templates"),
    "background": ({"background": True}, "background:"),
    "unknown field": ({"frobnicate": 1}, "unknown Responses API field(s) ['frobnicate']"),
    "no input": ({"input": None}, "input: required"),
    "input not a list": ({"input": {"role": "user"}}, "input: must be a list"),
    "item not an object": ({"input": ["hi"]}, "input[0]: must be an object"),
    "instructions not text": ({"instructions": ["x"]}, "instructions: must be a string"),
    "input_image": (
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input[0].content[0]: input_image is unsupported",
    ),
    "input_file": (
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input_file is unsupported",
    ),
    "image tool output": (
        {
            "input": [
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [{"type": "input_image", "image_url": "x"}],
                }
            ]
        },
        "input[0].output[0]: input_image is unsupported",
    ),
    "bad role": ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role: 'tool'"),
    "call without call_id": (
        {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
        "needs call_id",
    ),
    "output without call_id": (
        {"input": [{"type": "function_call_output", "output": "x"}]},
        "needs the call_id",
    ),
    "item_reference": ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    "hosted tool item": (
        {"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]},
        "input[0]: input items of type 'web_search_call'",
    ),
    "web_search tool": (
        {"tools": [{"type": "web_search"}]},
        "tools[0]: tools of type 'web_search'",
    ),
    "file_search tool": (
        {"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]},
        "tools of type 'file_search'",
    ),
    "computer tool": (
        {"tools": [ADD_TOOL, {"type": "computer_use_preview"}]},
        "tools[1]: tools of type 'computer_use_preview'",
    ),
    "deferred tool": (
        {"tools": [{**ADD_TOOL, "defer_loading": True}]},
        "tools[0] (add): defer_loading",
    ),
    "tool_choice hosted": ({"tool_choice": {"type": "web_search"}}, "tool_choice: 'web_search'"),
    "tool_choice allowed_tools": (
        {"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}},
        "tool_choice: 'allowed_tools'",
    ),
    "text format unknown": (
        {"text": {"format": {"type": "grammar"}}},
        "text.format: type 'grammar' is not supported",
    ),
    "json_schema without schema": (
        {"text": {"format": {"type": "json_schema", "name": "x"}}},
        "needs a name and a schema",
    ),
}


@pytest.mark.parametrize("fields,message", REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals_name_the_field_and_the_fix(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        chat_body_from_responses({"model": "m", "input": "hi", **fields})
    assert message in str(info.value)


# ------------------------------------------------------------------------------ responses


LOGPROBS = [
    {"token": "Four", "logprob": -0.25, "bytes": [70, 111, 117, 114], "top_logprobs": []},
    {
        "token": ".",
        "logprob": -0.5,
        "bytes": None,
        "top_logprobs": [{"token": ".", "logprob": -0.5, "bytes": None}],
    },
]

ANSWERS = {
    "text": (_chat_answer("Four."), {}),
    "tool calls": (
        _chat_answer(
            None,
            [_call("call_1", "add", '{"a": 2, "b": 2}'), _call("call_2", "add", "{}")],
            finish_reason="tool_calls",
        ),
        {"tools": [ADD_TOOL], "tool_choice": "required", "parallel_tool_calls": True},
    ),
    "text and a tool call": (
        _chat_answer("Adding.", [_call("call_1", "add", "{}")], finish_reason="tool_calls"),
        {"tools": [ADD_TOOL], "tool_choice": {"type": "function", "name": "add"}},
    ),
    "length": (_chat_answer("Fo", finish_reason="length"), {"max_output_tokens": 1}),
    "empty": (_chat_answer(""), {}),
    "logprobs": (
        _chat_answer("Four.", logprobs=LOGPROBS),
        {"include": ["message.output_text.logprobs"], "top_logprobs": 1},
    ),
    "echoes": (
        _chat_answer("ok"),
        {
            "instructions": "Be brief.",
            "temperature": 0.5,
            "top_p": 0.8,
            "metadata": {"run": "1"},
            "text": {"format": {"type": "json_schema", "name": "o", "schema": {}}},
            "truncation": "auto",
        },
    ),
}


def _response(case: str) -> dict[str, Any]:
    answer, fields = ANSWERS[case]
    return response_from_chat(answer, {"model": "smollm2-135m", "input": "q", **fields})


@pytest.mark.parametrize("case", ANSWERS)
def test_responses_validate_with_the_sdk(case: str) -> None:
    raw = _response(case)
    response = Response.model_validate(raw)
    answer, fields = ANSWERS[case]
    message = answer["choices"][0]["message"]
    assert response.id == "resp_abc123" and response.object == "response"
    assert response.created_at == 1700000000 and response.model == "smollm2-135m"
    assert response.error is None
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 7)
    assert response.usage.total_tokens == 28
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    texts = [p.text for o in response.output if o.type == "message" for p in o.content]
    calls = [(o.call_id, o.name, o.arguments) for o in response.output if o.type == "function_call"]
    assert calls == [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in message.get("tool_calls") or []
    ]
    assert texts == ([message["content"]] if message["content"] or not calls else [])
    assert response.output_text == (message["content"] or "")
    assert all(o.status == "completed" for o in response.output if o.type == "function_call")
    assert len({o.id for o in response.output}) == len(response.output)
    choice = response.tool_choice
    assert (choice if isinstance(choice, str) else choice.model_dump(exclude_none=True)) == (
        fields.get("tool_choice") or "auto"
    )
    assert response.metadata == fields.get("metadata", {})
    assert response.instructions == fields.get("instructions")
    assert json.loads(json.dumps(raw)) == raw  # plain JSON


def test_length_is_incomplete_for_max_output_tokens() -> None:
    response = Response.model_validate(_response("length"))
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    assert response.max_output_tokens == 1


def test_completed_responses_have_no_incomplete_details() -> None:
    response = Response.model_validate(_response("text"))
    assert response.status == "completed" and response.incomplete_details is None


def test_logprobs_only_when_asked() -> None:
    asked = Response.model_validate(_response("logprobs"))
    part = asked.output[0].content[0]
    assert [(lp.token, lp.logprob) for lp in part.logprobs] == [("Four", -0.25), (".", -0.5)]
    assert part.logprobs[1].bytes == [46]  # filled in from the token when the upstream gave none
    assert part.logprobs[1].top_logprobs[0].token == "."
    unasked = response_from_chat(_chat_answer("Four.", logprobs=LOGPROBS), {"input": "q"})
    assert "logprobs" not in unasked["output"][0]["content"][0]


def test_usage_details_and_missing_usage() -> None:
    answer = _chat_answer("x")
    answer["usage"] |= {
        "prompt_tokens_details": {"cached_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    usage = Response.model_validate(response_from_chat(answer, {})).usage
    assert usage is not None
    assert (
        usage.input_tokens_details.cached_tokens,
        usage.output_tokens_details.reasoning_tokens,
    ) == (
        5,
        2,
    )
    del answer["usage"]
    assert Response.model_validate(response_from_chat(answer, {})).usage is None


def test_a_chat_answer_without_choices_is_an_error() -> None:
    with pytest.raises(ValueError, match="no choices"):
        response_from_chat({"id": "x", "choices": []}, {})


# --------------------------------------------------------------------------------- events


def _validated(case: str) -> tuple[dict[str, Any], list[Any]]:
    raw = _response(case)
    events = response_stream_events(raw)
    parsed = []
    for name, data in events:
        assert name == data["type"]
        parsed.append(EVENT.validate_python(data))
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    return raw, parsed


@pytest.mark.parametrize("case", ANSWERS)
def test_events_validate_and_reassemble(case: str) -> None:
    raw, events = _validated(case)
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    final = events[-1]
    expected_final = (
        "response.incomplete" if raw["status"] == "incomplete" else "response.completed"
    )
    assert final.type == expected_final
    assert final.response.model_dump(exclude_none=True) == Response.model_validate(raw).model_dump(
        exclude_none=True
    )
    texts: dict[str, str] = {}
    arguments: dict[str, str] = {}
    for e in events:
        if e.type == "response.output_text.delta":
            texts[e.item_id] = texts.get(e.item_id, "") + e.delta
        elif e.type == "response.output_text.done":
            assert texts.get(e.item_id, "") == e.text
        elif e.type == "response.function_call_arguments.delta":
            arguments[e.item_id] = arguments.get(e.item_id, "") + e.delta
        elif e.type == "response.function_call_arguments.done":
            assert arguments[e.item_id] == e.arguments
    for item in raw["output"]:
        if item["type"] == "message":
            assert texts.get(item["id"], "") == item["content"][0]["text"]
        else:
            assert arguments[item["id"]] == item["arguments"]


@pytest.mark.parametrize("case", ["text", "tool calls", "text and a tool call"])
def test_event_order_per_item(case: str) -> None:
    raw, events = _validated(case)
    expected = ["response.created", "response.in_progress"]
    for item in raw["output"]:
        expected.append("response.output_item.added")
        if item["type"] == "message":
            expected += [
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
            ]
        else:
            expected += [
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
            ]
        expected.append("response.output_item.done")
    expected.append("response.completed")
    assert [e.type for e in events] == expected
    indexed = [e for e in events if hasattr(e, "output_index")]
    for e in indexed:
        item = raw["output"][e.output_index]
        if hasattr(e, "item_id"):
            assert e.item_id == item["id"]
        if e.type == "response.output_item.added":
            assert e.item.status == "in_progress"
        if e.type == "response.output_item.done":
            done = Response.model_validate(raw).output[e.output_index]
            assert e.item.model_dump(exclude_none=True) == done.model_dump(exclude_none=True)


def test_logprob_tokens_stream_one_delta_each() -> None:
    _, events = _validated("logprobs")
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [(d.delta, d.logprobs[0].logprob) for d in deltas] == [("Four", -0.25), (".", -0.5)]
    assert all(d.content_index == 0 and d.output_index == 0 for d in deltas)


def test_empty_text_streams_no_delta() -> None:
    _, events = _validated("empty")
    assert not [e for e in events if e.type == "response.output_text.delta"]


def test_streaming_an_unknown_item_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot stream an item of type 'reasoning'"):
        response_stream_events(
            {"id": "r", "status": "completed", "output": [{"type": "reasoning"}]}
        )


# ------------------------------------------------------------------- the openai SDK as client


def _client(handler: Any) -> Any:
    httpx2 = pytest.importorskip("httpx2")
    import openai

    return openai.OpenAI(
        base_url="http://gateway.test/v1",
        api_key="x",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def _serve(answer: dict[str, Any]) -> Any:
    import httpx2

    def handler(request: Any) -> Any:
        body = json.loads(request.content)
        chat_body_from_responses(body)
        response = response_from_chat(answer, body)
        if not body.get("stream"):
            return httpx2.Response(200, json=response)
        sse = "".join(
            f"event: {name}\ndata: {json.dumps(data)}\n\n"
            for name, data in response_stream_events(response)
        )
        return httpx2.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    return handler


def _tool_answer() -> dict[str, Any]:
    return _chat_answer("Adding.", [_call("call_1", "add", '{"a": 1}')], "tool_calls")


def test_the_openai_client_reads_the_answer() -> None:
    client = _client(_serve(_tool_answer()))
    response = client.responses.create(model="m", input="q", tools=[ADD_TOOL])
    assert response.output_text == "Adding." and response.output[1].call_id == "call_1"


def test_the_openai_stream_helper_accepts_the_events() -> None:
    """``responses.stream`` rebuilds the response from the events and checks their order."""
    client = _client(_serve(_tool_answer()))
    with client.responses.stream(model="m", input="q", tools=[ADD_TOOL]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == "Adding."
    assert final.output[1].arguments == '{"a": 1}'
