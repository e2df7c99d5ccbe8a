"""``@tool`` schemas and validation, and ``ToolBox`` dispatch through an env."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Literal

import jsonschema
import pytest
from core_support import NAP_LOG, InFlight, ToolEnv, add, explode, nap, tool_turn

from envkit import ChatEnv, InfraError, Tool, ToolBox, tool
from envkit.types import Message, ToolCall


# ------------------------------------------------------------------ schemas
@tool
def kitchen_sink(
    a: int,
    b: float,
    c: bool,
    d: list[int],
    e: Literal["x", "y"] = "x",
    g: str | None = None,
) -> str:
    """Does everything.

    A second paragraph of description.

    Args:
        a: The a,
            continued on the next line.
        b (float): The b.
        c: The c.
        d: The d.
        e: The e.
        g: The g.

    Returns:
        A string.
    """
    return f"{a} {b} {c} {d} {e} {g}"


def _params(t: Tool) -> dict[str, Any]:
    return t.schema["function"]["parameters"]


def test_schema_shape_is_openai_function() -> None:
    schema = kitchen_sink.schema
    assert schema["type"] == "function"
    assert schema["function"]["name"] == "kitchen_sink"
    assert (
        schema["function"]["description"]
        == "Does everything.\n\nA second paragraph of description."
    )
    params = _params(kitchen_sink)
    assert params["type"] == "object"
    assert params["required"] == ["a", "b", "c", "d"]
    assert params["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(params)
    json.dumps(schema)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("a", {"type": "integer", "description": "The a, continued on the next line."}),
        ("b", {"type": "number", "description": "The b."}),
        ("c", {"type": "boolean", "description": "The c."}),
        ("d", {"type": "array", "items": {"type": "integer"}, "description": "The d."}),
        ("e", {"type": "string", "enum": ["x", "y"], "default": "x", "description": "The e."}),
        (
            "g",
            {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "default": None,
                "description": "The g.",
            },
        ),
    ],
)
def test_schema_types_defaults_and_descriptions(arg: str, expected: dict[str, Any]) -> None:
    assert _params(kitchen_sink)["properties"][arg] == expected


def test_no_argument_tool_schema() -> None:
    @tool
    def ping() -> str:
        """Says pong."""
        return "pong"

    assert _params(ping)["properties"] == {} and _params(ping)["required"] == []
    jsonschema.Draft202012Validator.check_schema(_params(ping))


def test_name_description_and_timeout_overrides() -> None:
    @tool(name="sum-two", description="Sums.", timeout=1.5)
    def f(x: int) -> int:
        return x

    assert f.name == "sum-two" and f.schema["function"]["name"] == "sum-two"
    assert f.schema["function"]["description"] == "Sums."
    assert f.timeout == 1.5
    assert f(4) == 4, "the tool stays callable as the plain function"
    assert f.__name__ == "f"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1, "b": 2.5, "c": true, "d": [1, 2]}', "1 2.5 True [1, 2] x None"),
        ({"a": 1, "b": 2, "c": False, "d": [], "e": "y", "g": "hi"}, "1 2.0 False [] y hi"),
        ('{"a": "7", "b": 0, "c": false, "d": ["3"]}', "7 0.0 False [3] x None"),
    ],
)
async def test_acall_validates_and_runs(arguments: Any, expected: str) -> None:
    assert await kitchen_sink.acall(arguments) == expected


@pytest.mark.parametrize(
    ("arguments", "error", "needle"),
    [
        ("{nope", ValueError, "not valid JSON"),
        ("[1, 2]", ValueError, "must be a JSON object, got list"),
        ('{"a": "x", "b": 1, "c": true, "d": []}', TypeError, "a: Input should be a valid integer"),
        ('{"b": 1, "c": true, "d": []}', TypeError, "a: Field required"),
        ('{"a": 1, "b": 1, "c": true, "d": [], "z": 0}', TypeError, "z: Extra inputs"),
        ('{"a": 1, "b": 1, "c": true, "d": [], "e": "q"}', TypeError, "e: Input should be"),
    ],
)
def test_validate_errors_are_meant_for_the_model(
    arguments: str, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        kitchen_sink.validate(arguments)


def test_sync_and_async_tools() -> None:
    assert not add.is_async and nap.is_async
    assert asyncio.run(add.acall({"a": 2})) == 3
    assert asyncio.run(nap.acall({"seconds": 0})) == "rested"


class Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    @tool
    def bump(self, by: int = 1) -> int:
        """Adds to the counter and returns it.

        Args:
            by: How much to add.
        """
        self.value += by
        return self.value

    @tool
    async def peek(self) -> int:
        """Returns the counter."""
        return self.value


def test_methods_as_tools_bind_to_their_instance() -> None:
    one, two = Counter(10), Counter(100)
    box_one, box_two = ToolBox([one.bump, one.peek]), ToolBox([two.bump])
    assert "self" not in _params(one.bump)["properties"]
    assert _params(one.bump)["properties"]["by"]["description"] == "How much to add."
    msgs, stats = box_one.call_sync([ToolCall.create("bump", {"by": 5}, id="1")])
    assert msgs[0].content == "15" and stats.errors == 0
    msgs, _ = box_two.call_sync([ToolCall.create("bump", {}, id="1")])
    assert msgs[0].content == "101"
    msgs, _ = box_one.call_sync([ToolCall.create("peek", {}, id="1")])
    assert msgs[0].content == "15"
    assert one.value == 15 and two.value == 101
    assert Counter.bump is Counter.__dict__["bump"], "class access gives the unbound tool"


# ------------------------------------------------------------------ bad definitions
def test_tool_without_docstring() -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="'f' has no description"):
        tool(f)


def test_tool_without_type_hint() -> None:
    def f(x, y: int) -> int:  # type: ignore[no-untyped-def]
        """F."""
        return y

    with pytest.raises(TypeError, match="argument 'x' has no type hint"):
        tool(f)


@pytest.mark.parametrize("name", ["has space", "dot.ted", "x" * 65, "émoji", "a/b"])
def test_invalid_tool_names(name: str) -> None:
    def f(x: int) -> int:
        """F."""
        return x

    with pytest.raises(ValueError, match="not valid for the OpenAI API"):
        tool(name=name)(f)


def test_varargs_are_refused() -> None:
    def f(*xs: int) -> int:
        """F."""
        return 0

    with pytest.raises(TypeError, match=r"\*args/\*\*kwargs"):
        tool(f)


def test_duplicate_tool_names() -> None:
    def other_add(a: int) -> int:
        """Another add."""
        return a

    other = tool(name="add")(other_add)
    with pytest.raises(ValueError, match="two tools are named 'add'"):
        ToolBox([add, other])


def test_toolbox_wraps_plain_functions() -> None:
    def double(x: int) -> int:
        """Doubles x.

        Args:
            x: The number.
        """
        return 2 * x

    box = ToolBox([double])
    assert "double" in box and len(box) == 1
    assert box.schemas[0]["function"]["parameters"]["properties"]["x"]["type"] == "integer"


# ------------------------------------------------------------------ dispatch through an env
STEP_WAYS = ["step", "astep-thread", "astep-inline"]


class InlineToolEnv(ToolEnv):
    step_in_thread = False


def _tool_env(how: str, **kwargs: Any) -> ToolEnv:
    return (InlineToolEnv if how == "astep-inline" else ToolEnv)(**kwargs)


def _do_step(env: ChatEnv, how: str, action: Any) -> Any:
    return env.step(action) if how == "step" else asyncio.run(env.astep(action))


def _step(env: ChatEnv, *calls: tuple[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    obs, reward, terminated, truncated, info = env.step(tool_turn(*calls))
    assert (reward, terminated, truncated) == (0.0, False, False)
    return obs[-len(calls) :], info


ZERO = {
    "tool_calls": 1,
    "tool_errors": 1,
    "tool_unknown": 0,
    "tool_bad_arguments": 0,
    "tool_exceptions": 0,
    "tool_timeouts": 0,
}


@pytest.mark.parametrize(
    ("call", "counter", "needles"),
    [
        (("delete_all", {}), "tool_unknown", ["unknown tool 'delete_all'", "add, broken_sandbox"]),
        (("add", "{'a': 1}"), "tool_bad_arguments", ["not valid JSON", "Expected parameters"]),
        (("add", {"a": "one"}), "tool_bad_arguments", ["a: Input should be a valid integer"]),
        (("add", {}), "tool_bad_arguments", ["a: Field required", '"required": ["a"]']),
        (("explode", {"reason": "that"}), "tool_exceptions", ["ValueError: cannot do that"]),
        (("nap", {"seconds": 60}), "tool_timeouts", ["nap did not finish within 0.2 s"]),
    ],
    ids=["unknown", "malformed-json", "invalid-args", "missing-arg", "exception", "timeout"],
)
def test_tool_errors_become_tool_messages(
    call: tuple[str, Any], counter: str, needles: list[str]
) -> None:
    env = ToolEnv()
    env.reset(seed=0)
    NAP_LOG.clear()
    (msg,), info = _step(env, call)
    if call[0] == "nap":  # cut at its 0.2 s timeout, not waited for (it would nap 60 s)
        assert NAP_LOG == ["cancelled"], "a timed-out tool must not hold up the step"
    assert msg["role"] == "tool" and msg["tool_call_id"] == "c0" and msg["name"] == call[0]
    assert msg["content"].startswith("Error: ")
    for needle in needles:
        assert needle in msg["content"]
    assert {k: v for k, v in info.items() if k.startswith("tool_")} == {**ZERO, counter: 1}
    # The episode goes on: the model can answer now.
    _, reward, terminated, _, _ = env.step(env.task.answer)
    assert (reward, terminated) == (1.0, True)


def test_successful_calls_mixed_with_failures_keep_call_order_and_counts() -> None:
    env = ToolEnv()
    env.reset(seed=0)
    msgs, info = _step(
        env,
        ("add", {"a": 2, "b": 3}),
        ("nope", {}),
        ("add", {"a": 40, "b": 2}),
        ("explode", {"reason": "x"}),
    )
    assert [m["tool_call_id"] for m in msgs] == ["c0", "c1", "c2", "c3"]
    assert [m["content"] for m in (msgs[0], msgs[2])] == ["5", "42"]
    assert info["tool_calls"] == 4 and info["tool_errors"] == 2
    assert info["tool_unknown"] == 1 and info["tool_exceptions"] == 1
    assert info["turn"] == 1


def test_sync_tool_timeout_does_not_block_the_step() -> None:
    release, finished = threading.Event(), threading.Event()

    @tool(timeout=0.2)
    def stuck(seconds: float) -> str:
        """Blocks until the test releases it (``seconds`` at most: a hang guard).

        Args:
            seconds: How long at most.
        """
        release.wait(seconds)
        finished.set()
        return "done"

    env = ToolEnv(tools=[stuck])
    env.reset(seed=0)
    try:
        (msg,), info = _step(env, ("stuck", {"seconds": 60.0}))
        # The step came back while the tool's thread was still blocked: it did not wait for it.
        assert not finished.is_set(), "the step waited for the timed-out sync tool"
    finally:
        release.set()
    assert "did not finish within 0.2 s" in msg["content"] and info["tool_timeouts"] == 1
    assert finished.wait(30), "the released tool thread never finished"


def test_toolbox_default_timeout_and_tool_timeout_wins() -> None:
    @tool
    async def slow() -> str:
        """Sleeps 0.5 s."""
        await asyncio.sleep(0.5)
        return "ok"

    msgs, stats = ToolBox([slow], timeout=0.05).call_sync([ToolCall.create("slow", {}, id="1")])
    assert stats.timeouts == 1 and "0.05 s" in msgs[0].content
    patient = Tool(slow.fn, timeout=5)
    msgs, stats = ToolBox([patient], timeout=0.05).call_sync([ToolCall.create("slow", {}, id="1")])
    assert stats.timeouts == 0 and msgs[0].content == "ok"


def _gated_tools(inflight: InFlight, record: list[str]) -> list[Tool]:
    """Tools that each wait until all three calls of the turn are running at once."""

    @tool(timeout=60)
    async def a_wait(tag: str) -> str:
        """Waits (asynchronously) until three calls overlap.

        Args:
            tag: A label.
        """
        with inflight:
            overlapped = await inflight.await_peak(3, timeout=30)  # 30 s: only a hang guard
        record.append(tag if overlapped else f"{tag} alone")
        return tag

    @tool(timeout=60)
    def s_wait(tag: str) -> str:
        """Waits (in its thread) until three calls overlap.

        Args:
            tag: A label.
        """
        with inflight:
            overlapped = inflight.wait_for_peak(3, timeout=30)  # 30 s: only a hang guard
        record.append(tag if overlapped else f"{tag} alone")
        return tag

    return [a_wait, s_wait]


@pytest.mark.parametrize("name", ["a_wait", "s_wait"])
@pytest.mark.parametrize("how", STEP_WAYS)
def test_calls_of_one_turn_run_concurrently(name: str, how: str) -> None:
    inflight, record = InFlight(), []
    env = _tool_env(how, tools=_gated_tools(inflight, record))
    env.reset(seed=0)
    turn = tool_turn(*((name, {"tag": f"t{i}"}) for i in range(3)))
    obs = _do_step(env, how, turn)[0]
    assert [m["content"] for m in obs[-3:]] == ["t0", "t1", "t2"]  # results keep the call order
    assert inflight.peak == 3 and sorted(record) == ["t0", "t1", "t2"], (
        f"the three calls did not overlap: {record}"
    )


def test_result_formatting_and_truncation() -> None:
    @tool
    def data() -> dict:
        """Returns a dict."""
        return {"a": [1, 2], "b": None}

    @tool
    def big() -> str:
        """Returns a lot."""
        return "x" * 100

    @tool
    def odd() -> set:
        """Returns something JSON cannot encode."""
        return {1, 2}

    box = ToolBox([data, big, odd], max_result_chars=10)
    msgs, _ = box.call_sync(
        [
            ToolCall.create("data", {}, id="1"),
            ToolCall.create("big", {}, id="2"),
            ToolCall.create("odd", {}, id="3"),
        ]
    )
    assert msgs[0].content.startswith('{"a": [1, ')  # JSON, cut at 10 chars
    assert msgs[1].content == "x" * 10 + "\n[... 90 more characters cut]"
    assert msgs[2].content == "{1, 2}"  # str() when JSON cannot encode it
    full, _ = ToolBox([data]).call_sync([ToolCall.create("data", {}, id="1")])
    assert json.loads(full[0].content) == {"a": [1, 2], "b": None}


@pytest.mark.parametrize("how", STEP_WAYS)
def test_infra_error_in_a_tool_propagates(how: str) -> None:
    env = _tool_env(how)
    env.reset(seed=0)
    turn = tool_turn(("add", {"a": 1}), ("broken_sandbox", {}))
    with pytest.raises(InfraError, match="container killed"):
        _do_step(env, how, turn)


@pytest.mark.parametrize("how", STEP_WAYS)
def test_tool_errors_and_counts_on_every_step_path(how: str) -> None:
    env = _tool_env(how)
    env.reset(seed=0)
    turn = tool_turn(("add", {"a": 2}), ("explode", {"reason": "it"}), ("nap", {"seconds": 60}))
    NAP_LOG.clear()
    obs, reward, terminated, truncated, info = _do_step(env, how, turn)
    assert NAP_LOG == ["cancelled"], "the timed-out nap was waited for instead of cut"
    assert [m["content"][:20] for m in obs[-3:]] == [
        "3",
        "Error: explode raise",
        "Error: nap did not f",
    ]
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert (info["tool_calls"], info["tool_exceptions"], info["tool_timeouts"]) == (3, 1, 1)


def test_after_tools_hook_can_end_the_episode() -> None:
    @tool
    def submit(answer: str) -> str:
        """Submits the final answer.

        Args:
            answer: The answer.
        """
        return f"submitted {answer}"

    class SubmitEnv(ToolEnv):
        def after_tools(self, message: Message, results: list[Message]) -> Any:
            from envkit import Feedback

            call = message.tool_calls[0]
            if call.function.name == "submit":
                ok = json.loads(call.function.arguments)["answer"] == self.task.answer
                return Feedback(reward=float(ok), done=True, messages=results)
            return Feedback(messages=results)

    env = SubmitEnv(tools=[submit, add])
    env.reset(seed=0)
    assert [s["function"]["name"] for s in env.tool_schemas] == ["submit", "add"]
    obs, reward, terminated, truncated, info = env.step(
        tool_turn(("submit", {"answer": env.task.answer}))
    )
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert obs[-1]["content"] == f"submitted {env.task.answer}" and info["tool_calls"] == 1


async def test_call_sync_works_inside_a_running_loop() -> None:
    msgs, stats = ToolBox([add]).call_sync([ToolCall.create("add", {"a": 1, "b": 1}, id="1")])
    assert msgs[0].content == "2" and stats.calls == 1
    msgs, stats = await ToolBox([explode]).call(
        [ToolCall.create("explode", {"reason": "y"}, id="1")]
    )
    assert stats.exceptions == 1 and "cannot do y" in msgs[0].content
