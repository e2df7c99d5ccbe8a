"""``collect``/``acollect``: groups, error outcomes, timeouts, env reuse, streaming, concurrency."""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from core_support import (
    EchoEnv,
    FailingEnv,
    InFlight,
    InlineEchoEnv,
    SlowEnv,
    ToolEnv,
    answer_of,
    tool_turn,
)

import envkit
from envkit import InfraError
from envkit.policies import CallablePolicy, ScriptedPolicy
from envkit.rollout import acollect, collect
from envkit.types import Completion, Message, TrajectoryGroup, Usage, read_jsonl


def solver(messages: list[dict[str, Any]], tools: Any) -> str:
    return answer_of(messages)


def wrong(messages: list[dict[str, Any]], tools: Any) -> str:
    return "wrong"


@pytest.mark.parametrize("env_cls", [EchoEnv, InlineEchoEnv], ids=["thread", "inline"])
@pytest.mark.parametrize("concurrency", [1, 3, 32])
def test_group_structure_and_order(env_cls: type[EchoEnv], concurrency: int) -> None:
    seeds = [5, 1, 3, 1]
    groups = collect(
        env_cls,
        CallablePolicy(solver),
        seeds=seeds,
        group_size=3,
        concurrency=concurrency,
        progress=False,
    )
    assert [g.seed for g in groups] == seeds
    for g in groups:
        assert isinstance(g, TrajectoryGroup) and len(g) == 3
        assert [t.group_index for t in g] == [0, 1, 2]
        assert {t.seed for t in g} == {g.seed}
        assert len({t.task_id for t in g}) == 1 and g.task_id == g[0].task_id == f"seed-{g.seed}"
        assert len({str(t.messages[:2]) for t in g}) == 1, "a group shares one task"
        for t in g:
            assert (t.outcome, t.reward, t.step_rewards, t.error) == ("ok", 1.0, [1.0], None)
            assert [m.role for m in t.messages] == ["system", "user", "assistant"]
            assert t.num_turns == 1 and t.metrics["turns"] == 1
            assert len(t.completions) == 1 and t.completions[0].message == t.messages[-1]
            assert t.info["correct"] is True
            assert t.timings.total_s >= t.timings.env_s >= 0 and t.timings.policy_s >= 0
    assert str(groups[1][0].messages) == str(groups[3][0].messages), "same seed, same task"
    assert groups[0].env_id == env_cls.__name__


def test_multi_turn_rewards_and_truncation() -> None:
    policy = ScriptedPolicy(["no", "nope", "still no"], cycle=True)
    (group,) = collect("Arithmetic-v0", policy, seeds=[0], progress=False)
    t = group[0]
    assert t.env_id == "envkit/Arithmetic-v0"
    assert t.outcome == "truncated" and t.reward == 0.0 and t.step_rewards == [0.0, 0.0, 0.0]
    assert t.num_turns == 3 and len(t.messages) == 1 + 3 * 2
    assert [m.content for m in t.messages if m.role == "assistant"] == ["no", "nope", "still no"]

    def second_try(messages: list[dict[str, Any]], tools: Any) -> str:
        expr = messages[0]["content"].removeprefix("What is ").split("?")[0]
        a, op, b = expr.split()
        value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        return str(value) if len(messages) > 1 else "no idea"

    (group,) = collect("Arithmetic-v0", CallablePolicy(second_try), seeds=[0], progress=False)
    t = group[0]
    assert t.outcome == "ok" and t.step_rewards == [0.0, pytest.approx(2 / 3)]
    assert t.reward == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("error", "where", "outcome", "needle"),
    [
        (ValueError("bad task"), "step", "env_error", "ValueError in env.step: bad task"),
        (KeyError("k"), "reset", "env_error", "KeyError in env.reset: 'k'"),
        (InfraError("daemon gone"), "step", "infra_error", "InfraError in env.step: daemon gone"),
        (InfraError("no container"), "reset", "infra_error", "InfraError in env.reset"),
    ],
)
def test_env_errors_become_outcomes(
    error: BaseException, where: str, outcome: str, needle: str
) -> None:
    groups = collect(
        lambda: FailingEnv(error=error, bad_seeds=(1,), where=where),
        CallablePolicy(solver),
        seeds=[0, 1, 2],
        group_size=2,
        progress=False,
    )
    for g in groups:
        for t in g:
            if g.seed == 1:
                assert t.outcome == outcome and t.failed
                assert needle in t.error
                assert t.reward is None, "a failed episode has no reward, never a silent 0"
            else:
                assert (t.outcome, t.reward) == ("ok", 1.0)
    bad = groups[1][0]
    if where == "step":
        assert bad.messages[-1].role == "assistant", "the turn that crashed the env is kept"


@pytest.mark.parametrize(
    ("fn", "needle"),
    [
        (lambda m, t: 1 / 0, "ZeroDivisionError in policy.agenerate: division by zero"),
        (lambda m, t: {"role": "user", "content": "x"}, "InvalidActionError"),
        (lambda m, t: None, "InvalidActionError"),
    ],
)
def test_policy_errors_become_outcomes(fn: Any, needle: str) -> None:
    groups = collect(EchoEnv, CallablePolicy(fn), seeds=[0, 1], progress=False)
    for t in (g[0] for g in groups):
        assert t.outcome == "policy_error" and needle in t.error and t.reward is None


def test_policy_returning_the_wrong_number_of_completions() -> None:
    class Greedy(envkit.policies.BasePolicy):
        async def agenerate(self, requests: Any) -> list[Completion]:
            msg = Message(role="assistant", content="x")
            return [Completion(message=msg), Completion(message=msg)]

    (g,) = collect(EchoEnv, Greedy(), seeds=[0], progress=False)
    assert g[0].outcome == "policy_error"
    assert "returned 2 items for 1 request" in g[0].error


def test_script_running_out_is_a_policy_error() -> None:
    groups = collect(
        EchoEnv,
        ScriptedPolicy(["wrong"]),
        seeds=[0, 1],
        concurrency=1,
        env_kwargs={"max_turns": 1},
        progress=False,
    )
    outcomes = [g[0].outcome for g in groups]
    assert sorted(outcomes) == ["ok", "policy_error"]  # a single-turn episode terminates
    failed = next(g[0] for g in groups if g[0].outcome == "policy_error")
    assert "ran out of its 1 turns" in failed.error


def test_infra_error_from_a_tool_is_an_infra_error_outcome() -> None:
    policy = CallablePolicy(lambda m, t: tool_turn(("broken_sandbox", {})))
    (g,) = collect(ToolEnv, policy, seeds=[0], progress=False)
    assert g[0].outcome == "infra_error" and "container killed" in g[0].error


class InlineToolEnv(ToolEnv):
    step_in_thread = False


@pytest.mark.parametrize("env_cls", [ToolEnv, InlineToolEnv], ids=["thread", "inline"])
def test_tool_turns_are_recorded_with_counts(env_cls: type[ToolEnv]) -> None:
    turns = iter([tool_turn(("add", {"a": 1}), ("nope", {})), None])

    def policy(messages: list[dict[str, Any]], tools: Any) -> Any:
        assert [t["function"]["name"] for t in tools] == ["add", "explode", "nap", "broken_sandbox"]
        turn = next(turns)
        return turn if turn is not None else answer_of(messages)

    (g,) = collect(env_cls, CallablePolicy(policy), seeds=[0], progress=False)
    t = g[0]
    assert t.outcome == "ok" and t.reward == 1.0
    assert [m.role for m in t.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert t.tools is not None and len(t.tools) == 4
    assert t.metrics["tool_calls"] == 2 and t.metrics["tool_errors"] == 1
    assert t.metrics["tool_unknown"] == 1


def test_episode_timeout_and_the_broken_env_is_replaced() -> None:
    made: list[SlowEnv] = []
    others_done = threading.Event()
    events: list[str] = []

    class StuckEnv(SlowEnv):
        """Seed 0 blocks until the other three episodes are done (60 s at most: a hang guard)."""

        def respond(self, message: Message) -> Any:
            if self.seed == 0:
                events.append("seed 0 released" if others_done.wait(60) else "seed 0 gave up")
            else:
                events.append(f"seed {self.seed} done")
                if len(events) == 3:
                    others_done.set()
            return super().respond(message)

    def factory() -> SlowEnv:
        env = StuckEnv(delay=0, slow_seeds=())
        made.append(env)
        return env

    groups = collect(
        factory,
        CallablePolicy(solver),
        seeds=[0, 1, 2, 3],
        concurrency=1,
        episode_timeout=0.3,
        progress=False,
    )
    # With concurrency=1 the others could only run because seed 0's episode was given up on.
    # Its abandoned thread is released by the third episode and records that on its own time:
    # wait for it (collect does not, by design) instead of racing it.
    deadline = time.monotonic() + 30
    while len(events) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == ["seed 1 done", "seed 2 done", "seed 3 done", "seed 0 released"]
    t0 = groups[0][0]
    assert t0.outcome == "timeout" and t0.reward is None
    assert "episode_timeout=0.3" in t0.error
    assert [g[0].outcome for g in groups[1:]] == ["ok", "ok", "ok"]
    slow_env = made[0]
    later = {g[0].info["instance"] for g in groups[1:]}
    assert id(slow_env) not in later, "the env of the timed-out episode was reused"
    assert len(made) == 2, "one replacement, then reuse"
    assert all(e.closed for e in made), "the pool closes the envs it made"


def test_env_of_a_failed_episode_is_replaced_and_healthy_ones_reused() -> None:
    made: list[FailingEnv] = []

    def factory() -> FailingEnv:
        made.append(FailingEnv(error=ValueError("x"), bad_seeds=(1,)))
        return made[-1]

    groups = collect(
        factory, CallablePolicy(solver), seeds=[0, 1, 2, 3], concurrency=1, progress=False
    )
    assert [g[0].outcome for g in groups] == ["ok", "env_error", "ok", "ok"]
    assert len(made) == 2
    assert groups[0][0].info["instance"] == id(made[0])
    assert groups[2][0].info["instance"] == groups[3][0].info["instance"] == id(made[1])


@pytest.mark.parametrize(
    ("step_result", "needle"),
    [
        (("obs", 1.0), "ValueError"),
        (([], "high", True, False, {}), "could not convert string to float"),
        (([], 1.0, True, False, "info"), "AttributeError"),
    ],
)
def test_a_malformed_step_result_is_an_env_error(step_result: Any, needle: str) -> None:
    class Malformed(InlineEchoEnv):
        async def astep(self, action: Any) -> Any:
            return step_result

    groups = collect(Malformed, CallablePolicy(solver), seeds=[0, 1], progress=False)
    for g in groups:
        assert g[0].outcome == "env_error" and needle in g[0].error and g[0].reward is None


def test_a_factory_that_fails_is_an_env_error() -> None:
    def factory() -> EchoEnv:
        raise RuntimeError("cannot start")

    (g,) = collect(factory, CallablePolicy(solver), seeds=[0], progress=False)
    assert (
        g[0].outcome == "env_error" and "RuntimeError in making the env: cannot start" in g[0].error
    )
    (g,) = collect(
        lambda: gym.make("CartPole-v1"), CallablePolicy(solver), seeds=[0], progress=False
    )
    assert g[0].outcome == "env_error" and "needs envkit ChatEnv" in g[0].error


@pytest.mark.parametrize("concurrency", [1, 4])
def test_jsonl_streams_each_finished_group(tmp_path: Path, concurrency: int) -> None:
    path = tmp_path / "out" / "groups.jsonl"
    path.parent.mkdir()
    path.write_text("stale\n")
    lines_seen: list[int] = []

    def policy(messages: list[dict[str, Any]], tools: Any) -> str:
        lines_seen.append(len(path.read_text().splitlines()))
        return answer_of(messages)

    groups = collect(
        EchoEnv,
        CallablePolicy(policy),
        seeds=[0, 1, 2],
        group_size=1,
        concurrency=concurrency,
        jsonl_path=path,
        progress=False,
    )
    back = read_jsonl(path, TrajectoryGroup)
    assert sorted(g.seed for g in back) == [0, 1, 2]
    assert {g.seed: g for g in back} == {g.seed: g for g in groups}
    if concurrency == 1:
        assert lines_seen == [0, 1, 2], "each group must be written as soon as it finishes"


@pytest.mark.parametrize("env_cls", [SlowEnv, "inline"])
def test_episodes_overlap_up_to_concurrency(env_cls: Any) -> None:
    inflight = InFlight()

    # Each of the first episodes holds its slot until 4 overlap (30 s at most: a hang guard), so
    # the count does not depend on how fast a loaded machine starts them.
    class Probe(SlowEnv):
        def respond(self, message: Message) -> Any:
            with inflight:
                inflight.wait_for_peak(4, timeout=30)
                return super().respond(message)

    class AsyncProbe(InlineEchoEnv):
        async def astep(self, action: Any) -> Any:
            with inflight:
                await inflight.await_peak(4, timeout=30)
                return await super().astep(action)

    factory = (lambda: Probe(delay=0)) if env_cls is SlowEnv else AsyncProbe
    groups = collect(
        factory, CallablePolicy(solver), seeds=range(6), group_size=2, concurrency=4, progress=False
    )
    assert all(t.outcome == "ok" for g in groups for t in g)
    assert inflight.peak == 4, f"expected 4 episodes in flight at once, saw {inflight.peak}"


def test_policy_calls_overlap() -> None:
    inflight = InFlight()

    async def slow_policy(messages: list[dict[str, Any]], tools: Any) -> str:
        with inflight:
            await inflight.await_peak(10, timeout=30)  # 30 s: only a hang guard
        return answer_of(messages)

    collect(
        InlineEchoEnv, CallablePolicy(slow_policy), seeds=range(10), concurrency=10, progress=False
    )
    assert inflight.peak == 10


def test_env_instance_passed_directly() -> None:
    env = gym.make("envkit/Arithmetic-v0", max_turns=1)
    groups = collect(
        env, CallablePolicy(wrong), seeds=[0, 1], group_size=2, concurrency=4, progress=False
    )
    assert [len(g) for g in groups] == [2, 2]
    assert all(
        t.env_id == "envkit/Arithmetic-v0" and t.outcome == "ok" and t.reward == 0.0
        for g in groups
        for t in g
    )
    assert all(t.num_turns == 1 for g in groups for t in g), "spec kwargs (max_turns=1) were kept"
    assert not env.unwrapped._closed, "collect must not close an env it was given"
    env.reset(seed=0)


def test_unregistered_env_instance_runs_one_episode_at_a_time() -> None:
    inflight = InFlight()

    class Probe(SlowEnv):
        def respond(self, message: Message) -> Any:
            with inflight:
                return super().respond(message)

    env = Probe(delay=0.02)
    groups = collect(env, CallablePolicy(solver), seeds=[0, 1, 2], group_size=2, progress=False)
    assert all(t.outcome == "ok" and t.info["instance"] == id(env) for g in groups for t in g)
    assert inflight.peak == 1
    assert not env.closed


def test_env_kwargs_and_options() -> None:
    groups = collect(
        EchoEnv,
        CallablePolicy(wrong),
        seeds=[0],
        env_kwargs={"max_turns": 2},
        options={"word": "gnu"},
        progress=False,
    )
    t = groups[0][0]
    assert t.num_turns == 2 and t.messages[1].content == "Say gnu."


def test_usage_is_summed() -> None:
    def policy(messages: list[dict[str, Any]], tools: Any) -> Completion:
        return Completion(
            message=Message(role="assistant", content="wrong"),
            usage=Usage(prompt_tokens=len(messages), completion_tokens=1),
        )

    (g,) = collect(EchoEnv, CallablePolicy(policy), seeds=[0], progress=False)
    assert g[0].usage == Usage(prompt_tokens=2 + 4 + 6, completion_tokens=3)


def test_numpy_values_in_info_are_made_json() -> None:
    import numpy as np

    class NumpyInfo(EchoEnv):
        def respond(self, message: Message) -> Any:
            fb = super().respond(message)
            fb.info.update(score=np.float32(0.5), ids=np.arange(3), tags={"b", "a"})
            return fb

    (g,) = collect(NumpyInfo, CallablePolicy(solver), seeds=[0], progress=False)
    assert g[0].info["score"] == 0.5 and g[0].info["ids"] == [0, 1, 2]
    assert g[0].info["tags"] == ["a", "b"]
    TrajectoryGroup.model_validate_json(g.model_dump_json())


async def test_acollect_inside_a_running_loop() -> None:
    groups = await acollect("Arithmetic-v0", CallablePolicy(wrong), seeds=[0, 1], progress=False)
    assert [g[0].outcome for g in groups] == ["truncated", "truncated"]
    again = collect("Arithmetic-v0", CallablePolicy(wrong), seeds=[0, 1], progress=False)
    assert [g[0].messages for g in again] == [g[0].messages for g in groups]


def test_progress_bar_runs() -> None:
    groups = collect(EchoEnv, CallablePolicy(solver), seeds=[0, 1], progress=True)
    assert len(groups) == 2


def test_empty_seeds() -> None:
    assert collect(EchoEnv, CallablePolicy(solver), seeds=[], progress=False) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"group_size": 0}, ValueError, "group_size must be >= 1"),
        ({"concurrency": 0}, ValueError, "concurrency must be >= 1"),
        ({"episode_timeout": 0}, ValueError, "episode_timeout must be positive"),
        (
            {"policy": lambda m, t: "x"},
            TypeError,
            "Wrap a function with envkit.policies.CallablePolicy",
        ),
        ({"env": 3}, TypeError, "env must be an env id"),
        ({"env": "Arithmetc-v0"}, gym.error.NameNotFound, "Did you mean: `Arithmetic`"),
        ({"env": "instance", "env_kwargs": {"max_turns": 2}}, TypeError, "cannot be applied"),
    ],
)
def test_invalid_arguments_raise_clear_errors(
    kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    args: dict[str, Any] = {
        "env": EchoEnv,
        "policy": CallablePolicy(solver),
        "seeds": [0],
        "progress": False,
    }
    args.update(kwargs)
    if args["env"] == "instance":
        args["env"] = envkit.make("Arithmetic-v0")
    env, policy = args.pop("env"), args.pop("policy")
    with pytest.raises(error, match=needle):
        collect(env, policy, **args)


def test_scripted_policy_needs_turns() -> None:
    with pytest.raises(ValueError, match="at least one turn"):
        ScriptedPolicy([])
    with pytest.raises(TypeError, match="needs a callable"):
        CallablePolicy("not callable")  # type: ignore[arg-type]


def test_rollout_and_ray_rollout_do_not_import_each_other() -> None:
    """Only ``envkit.rollout`` imports the Ray backend (lazily); the backend imports the shared
    engine modules, never ``envkit.rollout``."""
    import ast

    import envkit.env_pool
    import envkit.ray_rollout
    import envkit.rollout

    def imported(module: Any) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names

    assert "envkit.rollout" not in imported(envkit.ray_rollout)
    assert "envkit.ray_rollout" in imported(envkit.rollout)
    for shared in ("envkit.env_pool", "envkit.episode_runner", "envkit.progress"):
        assert "envkit.rollout" not in imported(importlib.import_module(shared)), shared
    assert envkit.rollout.EnvPool is envkit.env_pool.EnvPool  # the old import path still works
