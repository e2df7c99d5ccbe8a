"""``envkit.testing.ScriptedOpenAIServer`` over real HTTP (urllib, and litellm as a client)."""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from envkit.testing import (
    RecordedRequest,
    Reply,
    ScriptedOpenAIServer,
    echo,
    ruler_answer,
    ruler_responder,
    tool_call,
    trajectory_blocks,
)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "two words"}]}


def post(
    server: ScriptedOpenAIServer,
    body: Any = CHAT,
    *,
    path: str = "/chat/completions",
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], Any]:
    """POSTs ``body`` (JSON, or bytes as is); returns status, headers and the JSON answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.load(e)


def message(answer: Any) -> dict[str, Any]:
    return answer["choices"][0]["message"]


def test_default_is_echo_with_counted_usage(openai_server: ScriptedOpenAIServer) -> None:
    status, _, answer = post(openai_server)
    assert status == 200 and answer["object"] == "chat.completion" and answer["model"] == "m"
    assert message(answer) == {"role": "assistant", "content": "echo: two words"}
    assert answer["choices"][0]["finish_reason"] == "stop"
    # 2 prompt words; 3 answer words + 1 end-of-turn token
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


def test_script_is_used_in_order_then_the_responder(openai_server: ScriptedOpenAIServer) -> None:
    openai_server.script("first", Reply.json({"scores": [1]}), lambda r: f"saw {r.user_text}")
    assert openai_server.pending == 3
    contents = [message(post(openai_server)[2])["content"] for _ in range(4)]
    assert contents == ["first", '{"scores": [1]}', "saw two words", "echo: two words"]
    assert openai_server.pending == 0 and len(openai_server.requests) == 4


def test_replies_given_to_the_constructor_come_first() -> None:
    with ScriptedOpenAIServer("one", responder=lambda r: "rest") as server:
        assert [message(post(server)[2])["content"] for _ in range(2)] == ["one", "rest"]


def test_tool_calls(openai_server: ScriptedOpenAIServer) -> None:
    openai_server.script(
        Reply.calling(("add", {"a": 1}), tool_call("nap", "{bad json", id="x9"), content="ok")
    )
    answer = post(openai_server)[2]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert message(answer)["content"] == "ok"
    assert message(answer)["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}},
        {"id": "x9", "type": "function", "function": {"name": "nap", "arguments": "{bad json"}},
    ]


def test_fixed_usage_and_per_reply_override() -> None:
    with ScriptedOpenAIServer(responder=lambda r: "x", usage=(100, 20)) as server:
        server.script(Reply("y", prompt_tokens=7))
        assert post(server)[2]["usage"] == {
            "prompt_tokens": 7,
            "completion_tokens": 20,
            "total_tokens": 27,
        }
        assert post(server)[2]["usage"]["prompt_tokens"] == 100


@pytest.mark.parametrize(
    ("reply", "status", "kind", "text"),
    [
        (Reply.fail(429, retry_after=0.25), 429, "rate_limit_error", "scripted failure (HTTP 429)"),
        (Reply.fail(500), 500, "server_error", "scripted failure (HTTP 500)"),
        (Reply.fail(503, "overloaded"), 503, "server_error", "overloaded"),
        (Reply.fail(400, "context too long"), 400, "invalid_request_error", "context too long"),
        (Reply.fail(401), 401, "authentication_error", "scripted failure (HTTP 401)"),
    ],
)
def test_http_errors_send_openai_error_objects(
    openai_server: ScriptedOpenAIServer, reply: Reply, status: int, kind: str, text: str
) -> None:
    openai_server.script(reply)
    got, headers, body = post(openai_server)
    assert got == status
    assert body["error"]["type"] == kind and body["error"]["message"] == text
    assert (headers.get("retry-after") or headers.get("Retry-After")) == (
        "0.25" if status == 429 else None
    )


def test_raw_body_is_sent_as_is(openai_server: ScriptedOpenAIServer) -> None:
    openai_server.script(Reply(status=502, body={"detail": "bad gateway"}))
    assert post(openai_server)[::2] == (502, {"detail": "bad gateway"})


def test_unscripted_request_on_a_strict_server_is_a_500() -> None:
    with ScriptedOpenAIServer(responder=None) as server:
        status, _, body = post(server)
    assert status == 500 and "unscripted request" in body["error"]["message"]


@pytest.mark.parametrize(
    ("responder", "needle"),
    [
        (lambda r: 1 / 0, "the responder raised ZeroDivisionError"),
        (lambda r: {"content": "a dict"}, "it must return a Reply or a string"),
    ],
    ids=["raises", "wrong-type"],
)
def test_broken_responders_answer_500_and_are_recorded(responder: Any, needle: str) -> None:
    with ScriptedOpenAIServer(responder=responder) as server:
        status, _, body = post(server)
        errors = list(server.errors)
    assert status == 500 and needle in body["error"]["message"]
    assert len(errors) == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/completions", CHAT, 404, "no route POST /v1/completions"),
        ("/chat/completions", b"{not json", 400, "not a JSON object"),
        ("/chat/completions", [1, 2], 400, "not a JSON object"),
        ("/chat/completions", {**CHAT, "stream": True}, 400, "does not stream"),
    ],
    ids=["wrong-path", "not-json", "not-an-object", "stream"],
)
def test_bad_requests_get_clear_errors_and_use_no_script(
    openai_server: ScriptedOpenAIServer, path: str, body: Any, status: int, needle: str
) -> None:
    openai_server.script("kept")
    got, _, answer = post(openai_server, body, path=path)
    assert got == status and needle in answer["error"]["message"]
    assert openai_server.pending == 1 and len(openai_server.requests) == 1


def test_models_endpoint(openai_server: ScriptedOpenAIServer) -> None:
    with urllib.request.urlopen(openai_server.url + "/models", timeout=10) as response:
        assert json.load(response)["data"][0]["id"] == "scripted"
    assert openai_server.requests[0].method == "GET"


def test_requests_are_recorded_with_headers_and_body(openai_server: ScriptedOpenAIServer) -> None:
    body = {
        "model": "m",
        "temperature": 0.5,
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "first"}]},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "last"},
        ],
    }
    post(openai_server, body, headers={"Authorization": "Bearer sk-x", "X-Trace": "7"})
    [req] = openai_server.requests
    assert isinstance(req, RecordedRequest)
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.body == body and json.loads(req.raw) == body
    assert req.authorization == "Bearer sk-x" and req.headers["x-trace"] == "7"
    assert req.user_text == "first" and req.last_user_text == "last"
    assert len(req.messages) == 4
    openai_server.clear()
    assert openai_server.requests == [] and openai_server.max_in_flight == 0


def test_delay_longer_than_the_client_timeout(openai_server: ScriptedOpenAIServer) -> None:
    openai_server.script(Reply("late", delay_s=300))
    with pytest.raises(TimeoutError):
        post(openai_server, timeout=0.3)
    # Still serving while the first reply waits out its 300 s (the fixture's close cuts it).
    assert message(post(openai_server)[2])["content"] == "echo: two words"
    assert openai_server.in_flight == 1


def test_close_cuts_pending_delays_and_connections() -> None:
    server = ScriptedOpenAIServer(responder=lambda r: echo(r).delayed(300)).start()
    before = threading.active_count()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            post(server, timeout=120)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while server.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight == 1
    server.close()
    thread.join(timeout=60)  # a hang guard: uncut, the client would wait 120 s for its timeout
    assert not thread.is_alive()
    assert len(errors) == 1 and not isinstance(errors[0], TimeoutError), errors  # cut
    deadline = time.monotonic() + 10  # a hang guard; the threads end right after close()
    while threading.active_count() > before - 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before - 1  # the server's threads are gone
    server.close()  # idempotent


def test_concurrent_requests_are_served_in_parallel(openai_server: ScriptedOpenAIServer) -> None:
    all_in = threading.Event()
    count = itertools.count(1)

    def responder(request: RecordedRequest) -> Reply:
        # Each request is held until all 8 are being handled at once (30 s: only a hang guard;
        # served one after the other, the first would wait it out and the clients time out).
        if next(count) == 8:
            all_in.set()
        return echo(request) if all_in.wait(30) else Reply.fail(500, "the 8 never overlapped")

    openai_server.responder = responder
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(openai_server, timeout=60), range(8)))
    assert all(status == 200 for status, _, _ in answers), answers
    assert all_in.is_set() and openai_server.in_flight == 0


def test_lifecycle_errors() -> None:
    server = ScriptedOpenAIServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with server, pytest.raises(RuntimeError, match="already running"):
        server.start()
    with pytest.raises(RuntimeError, match="cannot be restarted"):
        server.start()


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Reply(status=700), ValueError, "HTTP status"),
        (lambda: Reply(delay_s=-1), ValueError, "delay_s must be >= 0"),
        (lambda: Reply(content={"a": 1}), TypeError, "Reply.json"),
        (lambda: Reply.fail(200), ValueError, "error status"),
        (lambda: ScriptedOpenAIServer().script(42), TypeError, "Reply objects, strings"),
    ],
)
def test_bad_scripts_are_rejected_clearly(make: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_litellm_client_text_tool_calls_and_errors(openai_server: ScriptedOpenAIServer) -> None:
    import litellm

    from envkit.policies import LiteLLMPolicy

    openai_server.script(Reply.calling(("add", {"a": 1, "b": 2})), Reply.fail(429))
    policy = LiteLLMPolicy("openai/any", api_base=openai_server.url, api_key="k", num_retries=0)
    first = policy([{"role": "user", "content": "1+2?"}])
    assert first.finish_reason == "tool_calls"
    assert first.message.tool_calls[0].function.name == "add"
    with pytest.raises(litellm.RateLimitError):
        policy([{"role": "user", "content": "again"}])
    third = policy([{"role": "user", "content": "hello"}])
    assert third.message.content == "echo: hello" and third.usage.completion_tokens == 3
    assert [r.authorization for r in openai_server.requests] == ["Bearer k"] * 3


def test_ruler_helpers_score_each_trajectory_by_id() -> None:
    from envkit.rewards import RulerJudge
    from envkit.types import Message, Trajectory, TrajectoryGroup

    task = [Message(role="user", content="2+2?")]
    group = TrajectoryGroup(
        env_id="e",
        trajectories=[
            Trajectory(env_id="e", messages=[*task, Message(role="assistant", content=a)])
            for a in ("It is 4.", "It is 5.", "4, since 2+2=4.")
        ],
    )
    with ScriptedOpenAIServer(responder=ruler_responder(lambda t: float("4" in t))) as server:
        judge = RulerJudge("openai/j", api_base=server.url, api_key="k", cache=False)
        assert judge.score_group_sync(group) == [1.0, 0.0, 1.0]
        [req] = server.requests
    blocks = trajectory_blocks(req.user_text)
    assert sorted(blocks) == ["T1", "T2", "T3"] and req.trajectories == blocks
    answer = json.loads(ruler_answer({"T2": 0.5, "T1": 1.0}, hacking={"T1"}))
    assert [(s["id"], s["reward_hacking"], s["score"]) for s in answer["scores"]] == [
        ("T2", False, 0.5),
        ("T1", True, 1.0),
    ]
