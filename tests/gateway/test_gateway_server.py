"""The gateway server driven by real clients (``openai`` sync and async, litellm, raw HTTP).

One module-scoped gateway over the tiny-random ``HFPolicy`` gives real token ids; a second
``HFPolicy`` over the same model whose ``sample_batch`` is replaced on the instance writes tool
calls (a random model never does), so tool-call answers still travel the real
``agenerate_ids`` path and their records can be compared with what it returned.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import litellm
import openai
import pytest

from envkit.gateway import Gateway
from envkit.gateway.records import read_session
from envkit.gateway.upstream import PolicyUpstream
from envkit.policies import CallablePolicy, HFPolicy, ScriptedPolicy
from envkit.policies.hf import Sample
from envkit.types import GenerationRequest, Message

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MODEL = "tiny"
USER = [{"role": "user", "content": "What is 2 + 2?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]
CALL_TEXT = 'Adding.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    return HFPolicy.from_pretrained("tiny-random", device="cpu", max_new_tokens=8, seed=0)


@pytest.fixture(scope="module")
def gateway(policy: HFPolicy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    log_dir = tmp_path_factory.mktemp("gateway-logs")
    with Gateway(policy, served_model_name=MODEL, log_dir=log_dir, max_body_bytes=64 * 1024) as g:
        yield g


class ToolWriter:
    """An ``HFPolicy`` (same model) whose sampler writes ``CALL_TEXT``; keeps what
    ``agenerate_ids`` returned."""

    def __init__(self, policy: HFPolicy) -> None:
        self.policy = HFPolicy(policy.model, policy.tokenizer, max_new_tokens=64)
        tok = policy.tokenizer
        ids = tok(CALL_TEXT, add_special_tokens=False)["input_ids"] + [policy.stop_token_ids[0]]
        self.ids = ids
        self.returned: list[Any] = []
        self.policy.sample_batch = lambda requests: [  # type: ignore[method-assign]
            Sample(list(ids), [-0.25] * len(ids)) for _ in requests
        ]
        inner = self.policy.agenerate_ids

        async def spy(requests: Any) -> Any:
            out = await inner(requests)
            self.returned.extend(out)
            return out

        self.policy.agenerate_ids = spy  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def tools(policy: HFPolicy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    writer = ToolWriter(policy)
    log_dir = tmp_path_factory.mktemp("tool-logs")
    with Gateway(writer.policy, served_model_name=MODEL, log_dir=log_dir) as g:
        yield g, writer


def client(session: Any, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=session.base_url, api_key="x", max_retries=0, **kwargs)


def aclient(session: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=session.base_url, api_key="x", max_retries=0)


def post(url: str, content: bytes | str, **headers: str) -> httpx.Response:
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(url, content=content, headers=headers, timeout=30)


# ---------------------------------------------------------------------------- answers


def test_openai_sync_answer_carries_the_sampled_token_ids(gateway, policy):
    session = gateway.open_session()
    answer = client(session).chat.completions.create(
        model=MODEL, messages=USER, logprobs=True, max_tokens=5
    )
    (record,) = session.records
    choice = answer.choices[0]
    assert record.ok and record.api == "chat.completions" and not record.stream
    assert record.token_ids == choice.model_extra["token_ids"] and 1 <= len(record.token_ids) <= 5
    assert record.prompt_token_ids == answer.model_extra["prompt_token_ids"]
    request = GenerationRequest(messages=[Message(**USER[0])])
    assert record.prompt_token_ids == policy.render(request)
    assert [t.logprob for t in choice.logprobs.content] == record.logprobs
    assert choice.message.content == record.message.content
    assert choice.finish_reason == record.finish_reason
    assert answer.usage.completion_tokens == len(record.token_ids)
    assert answer.usage.prompt_tokens == len(record.prompt_token_ids)
    assert record.model == MODEL and record.messages[0].content == USER[0]["content"]
    assert record.duration_s > 0 and record.status == 200 and record.error is None


def test_policy_sampling_caps_max_tokens_and_ignores_client_temperature(gateway, policy):
    session = gateway.open_session()
    c = client(session)
    big = c.chat.completions.create(model=MODEL, messages=USER, max_tokens=500, temperature=0)
    small = c.chat.completions.create(model=MODEL, messages=USER, max_completion_tokens=2)
    assert len(big.choices[0].model_extra["token_ids"]) <= policy.max_new_tokens
    assert len(small.choices[0].model_extra["token_ids"]) <= 2


def test_client_sampling_applies_the_clients_temperature_and_seed(policy, tmp_path):
    with Gateway(PolicyUpstream(policy, sampling="client"), served_model_name=MODEL) as g:
        c = client(g.open_session())
        kw: dict[str, Any] = {"model": MODEL, "messages": USER, "max_tokens": 6}
        greedy = [c.chat.completions.create(**kw, temperature=0) for _ in range(2)]
        seeded = [c.chat.completions.create(**kw, temperature=1.0, seed=5) for _ in range(2)]
    ids = [a.choices[0].model_extra["token_ids"] for a in greedy + seeded]
    assert ids[0] == ids[1] and len(ids[0]) == 6  # greedy: deterministic, max_tokens honoured
    assert ids[2] == ids[3]  # same seed, same sample
    with pytest.raises(ValueError, match="only an in-process HFPolicy"):
        PolicyUpstream(ScriptedPolicy(["x"]), sampling="client")


def test_async_openai_stream_reassembles_to_the_recorded_answer(gateway):
    session = gateway.open_session()

    async def run() -> tuple[list[Any], str]:
        stream = await aclient(session).chat.completions.create(
            model=MODEL,
            messages=USER,
            stream=True,
            logprobs=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        return chunks, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    chunks, text = asyncio.run(run())
    (record,) = session.records
    assert record.stream and text == record.message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == [record.finish_reason]
    assert [t.logprob for t in finals[0].choices[0].logprobs.content] == record.logprobs
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(record.token_ids)


def test_litellm_completion_and_stream(gateway):
    session = gateway.open_session()
    kw: dict[str, Any] = {
        "model": f"openai/{MODEL}",
        "api_base": session.base_url,
        "api_key": "x",
        "messages": USER,
        "max_retries": 0,
    }
    answer = litellm.completion(**kw)
    pieces = [c.choices[0].delta.content or "" for c in litellm.completion(**kw, stream=True)]
    first, second = session.records
    assert answer.choices[0].message.content == first.message.content
    assert "".join(pieces) == second.message.content and second.stream


def test_models_endpoint_lists_the_sessions_model(gateway):
    session = gateway.open_session(model="other-name")
    assert [m.id for m in client(session).models.list()] == ["other-name"]
    assert client(session).models.retrieve("other-name").id == "other-name"
    assert session.records == []  # not a model call


# ---------------------------------------------------------------------------- tool calls


def test_tool_call_answer_and_record_match_what_agenerate_ids_returned(tools):
    g, writer = tools
    session = g.open_session()
    c = client(session)
    answer = c.chat.completions.create(model=MODEL, messages=USER, tools=TOOLS, logprobs=True)
    choice = answer.choices[0]
    (call,) = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls"
    assert call.function.name == "add" and json.loads(call.function.arguments) == {"a": 1, "b": 2}
    (record,) = session.records
    returned = writer.returned[-1]
    assert record.token_ids == returned.token_ids == writer.ids
    assert record.prompt_token_ids == returned.prompt_token_ids
    assert record.logprobs == returned.logprobs
    assert record.message.tool_calls[0].id == call.id and record.tools == TOOLS
    assert record.finish_reason == "tool_calls"
    # the agent answers the call: an assistant tool_calls message and a tool result
    history = [
        *USER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "3"},
    ]
    c.chat.completions.create(model=MODEL, messages=history, tools=TOOLS)
    second = session.records[1]
    assert [m.role for m in second.messages] == ["user", "assistant", "tool"]
    assert second.messages[1].tool_calls[0].function.arguments == call.function.arguments
    assert second.messages[2].tool_call_id == call.id
    assert second.prompt_token_ids[: len(record.prompt_token_ids)] == record.prompt_token_ids


def test_streamed_tool_call_deltas(tools):
    g, _ = tools
    session = g.open_session()
    stream = client(session).chat.completions.create(
        model=MODEL, messages=USER, tools=TOOLS, stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = []
    for chunk in stream:
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.id or ""
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
        finish.append(chunk.choices[0].finish_reason)
    (record,) = session.records
    expected = record.message.tool_calls[0]
    assert calls == {
        0: {"id": expected.id, "name": "add", "arguments": expected.function.arguments}
    }
    assert [f for f in finish if f] == ["tool_calls"]


def test_tool_choice_none_answers_text_and_forced_choices_are_refused(tools):
    g, _ = tools
    session = g.open_session()
    c = client(session)
    answer = c.chat.completions.create(model=MODEL, messages=USER, tools=TOOLS, tool_choice="none")
    assert answer.choices[0].message.tool_calls is None
    assert "<tool_call>" in answer.choices[0].message.content
    for choice in ("required", {"type": "function", "function": {"name": "add"}}):
        with pytest.raises(openai.BadRequestError, match="cannot force a tool call") as e:
            c.chat.completions.create(model=MODEL, messages=USER, tools=TOOLS, tool_choice=choice)
        assert e.value.body["param"] == "tool_choice"
    assert [r.status for r in session.records] == [200, 400, 400]


# ---------------------------------------------------------------------------- errors


def test_malformed_bodies_are_400_naming_the_problem_and_recorded(gateway):
    session = gateway.open_session()
    url = session.base_url + "/chat/completions"
    r = post(url, b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = post(url, json.dumps({"model": MODEL, "messages": USER, "temperature": "hot"}))
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "temperature", error
    assert error["type"] == "invalid_request_error"
    r = post(url, json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0]"
    r = post(url, json.dumps([1, 2]))
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    c = client(session)
    for kwargs, param in [
        ({"n": 2}, "n"),
        ({"logprobs": True, "top_logprobs": 3}, "top_logprobs"),
        ({"stop": ["\n"]}, "stop"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"extra_body": {"repetition_penalty": 1.3}}, "repetition_penalty"),
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model=MODEL, messages=USER, **kwargs)
        assert e.value.body["param"] == param, e.value.body
    records = session.records
    assert len(records) == 9 and [r.index for r in records] == list(range(9))
    assert all(r.status == 400 and r.error and not r.ok for r in records)
    assert records[1].messages == []  # refused before its messages were read


def test_unknown_and_closed_sessions_are_404_saying_how_to_open_one(gateway):
    ghost = type("S", (), {"base_url": f"{gateway.url}/s/nobody/v1"})()
    with pytest.raises(openai.NotFoundError, match="open_session") as e:
        client(ghost).chat.completions.create(model=MODEL, messages=USER)
    assert e.value.body["code"] == "session_not_found"
    session = gateway.open_session()
    session.close()
    with pytest.raises(openai.NotFoundError, match="closed"):
        client(session).chat.completions.create(model=MODEL, messages=USER)
    assert session.records == [] and session.closed
    r = httpx.get(f"{gateway.url}/v1/chat/completions")
    assert r.status_code == 404 and "/s/<session>/v1" in r.json()["error"]["message"]
    with pytest.raises(ValueError, match="already opened"):
        gateway.open_session(session.id)
    with pytest.raises(ValueError, match="not usable"):
        gateway.open_session("a/b")


def test_a_model_name_other_than_the_sessions_is_404_model_not_found(gateway):
    session = gateway.open_session()
    with pytest.raises(openai.NotFoundError, match="gpt-4o") as e:
        client(session).chat.completions.create(model="gpt-4o", messages=USER)
    assert e.value.body["code"] == "model_not_found" and MODEL in e.value.body["message"]
    (record,) = session.records
    assert record.status == 404 and record.model == "gpt-4o" and record.token_ids is None


def test_an_oversize_body_is_413(gateway):
    session = gateway.open_session()
    big = [{"role": "user", "content": "x" * (70 * 1024)}]
    with pytest.raises(openai.APIStatusError) as e:
        client(session).chat.completions.create(model=MODEL, messages=big)
    assert e.value.status_code == 413 and e.value.body["code"] == "request_too_large"
    (record,) = session.records
    assert record.status == 413


def test_an_upstream_failure_is_502_with_its_text():
    def boom(messages: Any, tools: Any) -> str:
        raise RuntimeError("the model server is down (connection refused)")

    with Gateway(CallablePolicy(boom), served_model_name=MODEL) as g:
        session = g.open_session()
        with pytest.raises(openai.APIStatusError, match="connection refused") as e:
            client(session).chat.completions.create(model=MODEL, messages=USER)
        assert e.value.status_code == 502 and e.value.body["code"] == "upstream_error"
        with pytest.raises(openai.BadRequestError, match="no log-probabilities"):
            client(session).chat.completions.create(model=MODEL, messages=USER, logprobs=True)
        assert [r.status for r in session.records] == [502, 400]
        assert "connection refused" in session.records[0].error


def test_the_session_file_is_made_by_open_session_not_by_the_first_call(tmp_path):
    # creating a file takes ~1 ms on some disks: not on the gateway's event loop, per session
    with Gateway(ScriptedPolicy(["hi"]), served_model_name=MODEL, log_dir=tmp_path) as g:
        session = g.open_session("early")
        assert session.path == tmp_path / "early.jsonl" and session.path.read_text() == ""
        assert read_session(session.path) == []
        client(session).chat.completions.create(model=MODEL, messages=USER)
        assert read_session(session.path) == session.records and len(session.records) == 1


def test_a_scripted_upstream_without_token_ids_answers_and_records_none():
    with Gateway(ScriptedPolicy(["hello"], cycle=True), served_model_name=MODEL) as g:
        session = g.open_session()
        answer = client(session).chat.completions.create(model=MODEL, messages=USER)
        assert answer.choices[0].message.content == "hello"
        assert "token_ids" not in answer.choices[0].model_extra
        (record,) = session.records
        assert record.ok and not record.has_token_ids


# ---------------------------------------------------------------------------- load


def test_concurrent_sessions_are_batched_and_no_record_is_lost_or_doubled(gateway, policy):
    sessions = [gateway.open_session(f"load-{i}") for i in range(32)]
    before = (policy.stats.batches, policy.stats.requests)

    async def agent(session: Any, http: httpx.AsyncClient) -> None:
        c = openai.AsyncOpenAI(base_url=session.base_url, api_key="x", http_client=http)
        messages = list(USER)
        for _ in range(2):
            answer = await c.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
            messages += [{"role": "assistant", "content": answer.choices[0].message.content}]
            messages += [{"role": "user", "content": "again"}]

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            await asyncio.gather(*(agent(s, http) for s in sessions))

    asyncio.run(run())
    batches = policy.stats.batches - before[0]
    requests = policy.stats.requests - before[1]
    assert requests == 64 and requests / batches > 1, (requests, batches)
    for session in sessions:
        records = session.records
        assert [r.index for r in records] == [0, 1] and all(r.ok for r in records)
        assert read_session(session.path) == records
        first, second = records
        assert second.messages[1].content == first.message.content
        assert second.prompt_token_ids[: len(first.prompt_token_ids)] == first.prompt_token_ids


def test_eight_concurrent_sessions_share_batches(gateway, policy):
    sessions = [gateway.open_session() for _ in range(8)]
    before = (policy.stats.batches, policy.stats.requests)

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            clients = [
                openai.AsyncOpenAI(base_url=s.base_url, api_key="x", http_client=http)
                for s in sessions
            ]
            await asyncio.gather(
                *(
                    c.chat.completions.create(model=MODEL, messages=USER, max_tokens=2)
                    for c in clients
                )
            )

    asyncio.run(run())
    batches = policy.stats.batches - before[0]
    assert policy.stats.requests - before[1] == 8 and 8 / batches > 1, batches


def test_256_concurrent_sessions_lose_and_double_nothing(tmp_path):
    # raw aiohttp as the client: httpx (under the openai SDK) slows down badly at 256
    # concurrent connections, whatever the server
    import aiohttp

    policy = CallablePolicy(lambda messages, tools: f"{len(messages)} messages", delay=0.01)
    with Gateway(policy, served_model_name=MODEL, log_dir=tmp_path) as g:
        sessions = [g.open_session() for _ in range(256)]

        async def agent(session: Any, http: aiohttp.ClientSession, stream: bool) -> None:
            body = {"model": MODEL, "messages": USER, "stream": stream}
            for _ in range(2):
                url = session.base_url + "/chat/completions"
                async with http.post(url, json=body) as r:
                    assert r.status == 200
                    text = await r.text()
                assert text.endswith("data: [DONE]\n\n") if stream else json.loads(text)["id"]

        async def run() -> None:
            connector = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(connector=connector) as http:
                await asyncio.gather(*(agent(s, http, i % 2 == 1) for i, s in enumerate(sessions)))

        asyncio.run(run())
        assert g.in_flight == 0
    for i, session in enumerate(sessions):
        records = session.records
        assert [r.index for r in records] == [0, 1] and all(r.ok for r in records)
        assert [r.stream for r in records] == [i % 2 == 1] * 2
        assert read_session(session.path) == records
    assert len(list(tmp_path.iterdir())) == 256


def test_a_client_that_disconnects_mid_stream_leaves_one_record_and_no_task():
    long_answer = "word " * 100_000  # 500 kB in 8-character chunks: more than socket buffers hold
    with Gateway(ScriptedPolicy([long_answer]), served_model_name=MODEL, stream_chunk_chars=8) as g:
        session = g.open_session()
        loop = g._loop
        assert loop is not None

        def tasks() -> int:
            async def count() -> int:
                return len(asyncio.all_tasks())

            return asyncio.run_coroutine_threadsafe(count(), loop).result(5)

        baseline = tasks()
        body = {"model": MODEL, "messages": USER, "stream": True}
        url = session.base_url + "/chat/completions"
        with httpx.Client(timeout=30) as h, h.stream("POST", url, json=body) as r:
            assert next(r.iter_lines()).startswith("data: ")
        # leaving the block closed the connection with most of the stream unread
        deadline = time.monotonic() + 10
        while (g.in_flight or tasks() > baseline) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert g.in_flight == 0 and tasks() <= baseline
        assert g.client_disconnects == 1
        (record,) = session.records
        assert record.stream and record.ok and record.message.content == long_answer
        assert read_session(session.path) == [record]


def test_auto_sessions_open_on_first_use(policy, tmp_path):
    with Gateway(policy, served_model_name=MODEL, log_dir=tmp_path, auto_sessions=True) as g:
        ghost = type("S", (), {"base_url": f"{g.url}/s/run-7/v1"})()
        client(ghost).chat.completions.create(model=MODEL, messages=USER)
        session = g.sessions["run-7"]
        assert len(session.records) == 1
    assert [r.session for r in read_session(tmp_path / "run-7.jsonl")] == ["run-7"]


# ---------------------------------------------------------------------------- Responses API


def test_responses_api_through_the_chat_path(gateway):
    session = gateway.open_session()
    c = client(session)
    response = c.responses.create(model=MODEL, input="What is 2 + 2?", max_output_tokens=4)
    events = list(c.responses.create(model=MODEL, input="What is 2 + 2?", stream=True))
    r = post(session.base_url + "/responses", "[1]")
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    first, second, third = session.records
    assert third.api == "responses" and third.status == 400
    assert first.api == second.api == "responses"
    assert response.output_text == first.message.content and not first.stream
    assert second.stream and events[-1].type in ("response.completed", "response.incomplete")
    assert events[-1].response.output_text == second.message.content
    assert first.has_token_ids and len(first.token_ids) <= 4


def test_responses_api_function_tools(tools):
    g, writer = tools
    session = g.open_session()
    response = client(session).responses.create(
        model=MODEL,
        input="What is 1 + 2?",
        tools=[{"type": "function", **TOOLS[0]["function"]}],
    )
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "add" and json.loads(call.arguments) == {"a": 1, "b": 2}
    (record,) = session.records
    assert record.token_ids == writer.ids and record.message.tool_calls[0].function.name == "add"
    with pytest.raises(openai.BadRequestError):
        client(session).responses.create(model=MODEL, input="x", previous_response_id="resp_1")
    assert [r.status for r in session.records] == [200, 400]
