"""``ChatEnv``: the gymnasium contract, errors, async twins, rendering, and every bundled env."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import pickle
import time
import warnings
from typing import Any, ClassVar

import gymnasium as gym
import pytest
from core_support import EchoEnv, InlineEchoEnv, answer_of
from gymnasium.utils.env_checker import check_env

import envkit
from envkit import ChatEnv, EpisodeOverError, Feedback, InvalidActionError, Task
from envkit.types import Completion, Message


def _registry_params() -> list[Any]:
    """Every registered envkit id; envs that need Docker are marked ``docker``."""
    params = []
    for env_id in envkit.registered_ids():
        entry_point = gym.spec(env_id).entry_point
        module = entry_point.split(":")[0] if isinstance(entry_point, str) else ""
        marks = [pytest.mark.docker] if module.startswith("envkit.environments.python_") else []
        params.append(pytest.param(env_id, marks=marks, id=env_id))
    return params


REGISTERED = _registry_params()


# ------------------------------------------------------------------ every registered env
@pytest.mark.parametrize("env_id", REGISTERED)
def test_check_env_passes(env_id: str) -> None:
    env = envkit.make(env_id).unwrapped
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", REGISTERED)
def test_gymnasium_make_has_no_warnings(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id)
        try:
            obs, info = env.reset(seed=0)
            assert env.observation_space.contains(obs)
            env.action_space.seed(0)
            obs, reward, _, _, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            assert isinstance(info, dict) and math.isfinite(float(reward))
        finally:
            env.close()


@pytest.mark.parametrize("env_id", REGISTERED)
def test_bundled_env_is_deterministic_by_seed(env_id: str) -> None:
    a, b = envkit.make(env_id), envkit.make(env_id)
    try:
        seen = set()
        for seed in range(5):
            obs_a, info_a = a.reset(seed=seed)
            obs_b, info_b = b.reset(seed=seed)
            assert obs_a == obs_b
            assert info_a == info_b
            task_a, task_b = a.unwrapped.task, b.unwrapped.task
            assert (task_a.id, repr(task_a.answer)) == (task_b.id, repr(task_b.answer))
            assert a.step("I am not sure.") == b.step("I am not sure.")
            seen.add((str(obs_a), repr(task_a.answer)))
        assert len(seen) > 1, "five seeds gave the same task (prompt and hidden answer)"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("env_id", REGISTERED)
def test_bundled_env_truncates_and_then_refuses_steps(env_id: str) -> None:
    env = envkit.make(env_id).unwrapped
    try:
        env.reset(seed=3)
        terminated = truncated = False
        for _ in range(env.max_turns):
            _, reward, terminated, truncated, _ = env.step("I am not sure.")
            assert math.isfinite(reward)
            if terminated or truncated:
                break
        assert terminated or truncated
        with pytest.raises(EpisodeOverError, match="reset"):
            env.step("again")
    finally:
        env.close()


# ------------------------------------------------------------------ the 5-tuple and seeds
def test_reset_and_step_types() -> None:
    env = EchoEnv(max_turns=2)
    obs, info = env.reset(seed=1)
    assert isinstance(obs, list) and all(isinstance(m, dict) for m in obs)
    assert obs[0] == {"role": "system", "content": "You repeat words."}
    assert info["task_id"] == "seed-1" and info["turn"] == 0 and "word" in info
    obs2, reward, terminated, truncated, info2 = env.step("wrong")
    assert type(reward) is float and reward == 0.0
    assert (terminated, truncated) == (False, False)
    assert obs2[:2] == obs
    assert obs2[2] == {"role": "assistant", "content": "wrong"}
    assert obs2[3] == {"role": "user", "content": "no"}
    assert info2 == {"turn": 1, "correct": False}
    _, reward, terminated, truncated, _ = env.step(answer_of(obs))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert env.episode_over


def test_observation_list_is_the_callers_and_its_messages_are_read_only() -> None:
    env = EchoEnv()
    obs, _ = env.reset(seed=0)
    obs.append({"role": "user", "content": "injected"})  # the list is the caller's
    assert len(env.messages) == 2 and len(env.observation()) == 2
    with pytest.raises(TypeError, match=r"read-only.*thaw\(\)"):
        obs[0]["content"] = "tampered"
    with pytest.raises(TypeError, match="read-only"):
        obs[0].update(content="tampered")
    mine = obs[0].thaw()
    mine["content"] = "tampered"
    assert env.observation()[0]["content"] == "You repeat words."
    assert type(mine) is dict and mine == {"role": "system", "content": "tampered"}


def test_an_observation_is_never_changed_by_later_steps() -> None:
    env = EchoEnv(max_turns=3)
    first, _ = env.reset(seed=0)
    held = [first, env.step("wrong")[0], env.step("wrong again")[0]]
    snapshots = [[m.thaw() for m in obs] for obs in held]
    env.step(answer_of(first))
    env.reset(seed=1)
    assert [[m.thaw() for m in obs] for obs in held] == snapshots
    assert [len(obs) for obs in held] == [2, 4, 6]
    # The messages are shared between observations (read-only, so that is safe).
    assert held[2][0] is held[1][0] is held[0][0]


def test_tool_call_messages_are_read_only_all_the_way_down() -> None:
    from envkit.types import ToolCall

    env = EchoEnv(max_turns=2)
    env.reset(seed=0)
    call = ToolCall.create("lookup", {"q": 1}, id="c1")
    obs = env.step(Message(role="assistant", content=None, tool_calls=[call]))[0]
    calls = obs[2]["tool_calls"]
    assert calls == [call.model_dump()] and json.loads(json.dumps(obs[2]))["tool_calls"] == calls
    with pytest.raises(TypeError, match="read-only"):
        calls.append({})
    with pytest.raises(TypeError, match="read-only"):
        calls[0]["function"]["name"] = "other"
    assert Message.model_validate(obs[2]) == env.messages[2]
    back = pickle.loads(pickle.dumps(obs))
    assert back == obs and type(back[2]["tool_calls"]) is type(calls)


def test_a_subclass_that_replaces_messages_gets_them_observed() -> None:
    class Forgetful(EchoEnv):
        """Keeps only the opening messages and the newest turn."""

        def respond(self, message: Message) -> Feedback:
            feedback = super().respond(message)
            self.messages = [*self.messages[:2], message]
            return feedback

    env = Forgetful(max_turns=3)
    env.reset(seed=0)
    env.step("one")
    obs = env.step("two")[0]
    assert [m["content"] for m in obs[2:]] == ["two", "no"]


def test_observation_cost_does_not_grow_with_the_conversation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each message becomes a dict once: a step converts only the new ones (the old code
    converted the whole conversation at every step: 4, 6, 8 ... per step)."""
    converted = 0
    to_dict = Message.to_dict

    def counting_to_dict(self: Message) -> dict[str, Any]:
        nonlocal converted
        converted += 1
        return to_dict(self)

    env = EchoEnv(max_turns=100)
    env.reset(seed=0)
    monkeypatch.setattr(Message, "to_dict", counting_to_dict)
    per_step = []
    for _ in range(60):
        before = converted
        env.step("wrong")
        per_step.append(converted - before)
    assert per_step == [2] * 60  # the assistant turn and the env's reply, at turn 1 as at 60


def test_same_seed_same_task_and_unseeded_reset_continues_the_stream() -> None:
    env = EchoEnv()
    first = [env.reset(seed=11)[0]] + [env.reset()[0] for _ in range(5)]
    again = [env.reset(seed=11)[0]] + [env.reset()[0] for _ in range(5)]
    assert first == again
    assert len({str(o) for o in first}) > 1


def test_options_reach_make_task() -> None:
    obs, info = EchoEnv().reset(seed=0, options={"word": "gnu"})
    assert obs[-1]["content"] == "Say gnu." and info["word"] == "gnu"


def test_single_turn_env_terminates_after_its_answer() -> None:
    env = EchoEnv(max_turns=1)
    env.reset(seed=0)
    assert env.step("wrong")[2:4] == (True, False)
    with pytest.raises(EpisodeOverError, match=r"terminated at turn 1.*env.reset\(\)"):
        env.step("wrong")


@pytest.mark.parametrize("max_turns", [2, 5])
def test_max_turns_truncates(max_turns: int) -> None:
    env = EchoEnv(max_turns=max_turns)
    env.reset(seed=0)
    flags = [env.step("wrong")[2:4] for _ in range(max_turns)]
    assert flags == [(False, False)] * (max_turns - 1) + [(False, True)]
    with pytest.raises(EpisodeOverError, match=r"truncated at turn \d+.*env.reset\(\)"):
        env.step("wrong")


def test_step_after_termination_raises_and_reset_recovers() -> None:
    env = EchoEnv()
    obs, _ = env.reset(seed=0)
    assert env.step(answer_of(obs))[2] is True
    with pytest.raises(EpisodeOverError, match="terminated"):
        env.step("more")
    env.reset(seed=0)
    assert env.turn == 0 and not env.episode_over
    assert env.step("x")[4]["turn"] == 1


def test_step_before_reset_raises() -> None:
    with pytest.raises(gym.error.ResetNeeded):
        EchoEnv().step("hi")


@pytest.mark.parametrize(
    ("action", "needle"),
    [
        (42, "got int"),
        (["hi"], "got list"),
        (None, "got NoneType"),
        ({"role": "user", "content": "hi"}, "role='user'"),
        ({"role": "assistant"}, "neither content nor tool_calls"),
        ({"content": None, "tool_calls": []}, "neither content nor tool_calls"),
        ({"content": "hi", "bogus": 1}, "not valid"),
        ({"tool_calls": [{"id": "1", "function": {}}]}, "not valid"),
        (Message(role="user", content="hi"), "role='user'"),
    ],
    ids=[
        "int",
        "list",
        "None",
        "user-dict",
        "empty-dict",
        "empty-tool-calls",
        "extra-key",
        "bad-tool-call",
        "user-Message",
    ],
)
def test_wrong_action_shapes_raise_invalid_action(action: Any, needle: str) -> None:
    env = EchoEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="Expected the assistant's turn") as err:
        env.step(action)
    assert needle in str(err.value)
    assert env.turn == 0 and len(env.messages) == 2, "a rejected action must not change state"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    "action",
    [
        "cat",
        {"role": "assistant", "content": "cat"},
        {"content": "cat"},
        Message(role="assistant", content="cat"),
        Completion(message=Message(role="assistant", content="cat")),
    ],
    ids=["str", "dict", "dict-no-role", "Message", "Completion"],
)
def test_accepted_action_shapes(action: Any) -> None:
    env = EchoEnv()
    env.reset(seed=0, options={"word": "cat"})
    assert env.step(action)[1:4] == (1.0, True, False)


def test_close_is_idempotent_and_context_manager_closes() -> None:
    env = EchoEnv()
    env.reset(seed=0)
    env.close()
    env.close()
    with EchoEnv() as env2:
        env2.reset(seed=0)
    assert env2._closed


@pytest.mark.parametrize("env_cls", [EchoEnv, InlineEchoEnv], ids=["thread", "inline"])
async def test_areset_astep_match_sync(env_cls: type[EchoEnv]) -> None:
    a, b = env_cls(max_turns=2), env_cls(max_turns=2)
    sync = [a.reset(seed=4), a.step("wrong")[:4], a.step(answer_of(a.observation()))[:4]]
    obs, info = await b.areset(seed=4)
    out = [(obs, info), (await b.astep("wrong"))[:4]]
    out.append((await b.astep(answer_of(obs)))[:4])
    assert out == sync
    with pytest.raises(EpisodeOverError):
        await b.astep("x")
    c = env_cls()
    await c.areset(seed=0)
    with pytest.raises(InvalidActionError):
        await c.astep(7)


def test_render_modes(capsys: pytest.CaptureFixture[str]) -> None:
    env = EchoEnv(render_mode="ansi")
    env.reset(seed=0, options={"word": "cat"})
    env.step("dog")
    text = env.render()
    assert text == "[system] You repeat words.\n[user] Say cat.\n[assistant] dog\n[user] no"
    human = EchoEnv(render_mode="human")
    human.reset(seed=0, options={"word": "cat"})
    human.step("cat")
    assert "[assistant] cat" in capsys.readouterr().out
    assert human.render() is None
    assert "[assistant] cat" in capsys.readouterr().out
    assert EchoEnv().render() is None
    with pytest.raises(ValueError, match="render_mode='rgb_array' is not supported"):
        EchoEnv(render_mode="rgb_array")


def test_render_shows_tool_calls() -> None:
    from core_support import ToolEnv, tool_turn

    env = ToolEnv(render_mode="ansi")
    env.reset(seed=0)
    env.step(tool_turn(("add", {"a": 2, "b": 3})))
    assert "-> add(" in env.render() and "[tool] 5" in env.render()


@pytest.mark.parametrize("task_has_system", [True, False])
def test_system_prompt_override(task_has_system: bool) -> None:
    class Env(EchoEnv):
        def make_task(self, options: dict[str, Any] | None) -> Task:
            task = super().make_task(options)
            if not task_has_system:
                task.messages = [m for m in task.messages if m["role"] != "system"]
            return task

    obs, _ = Env(system_prompt="Answer in French.").reset(seed=0)
    assert obs[0] == {"role": "system", "content": "Answer in French."}
    assert [m["role"] for m in obs] == ["system", "user"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reward_raises(bad: float) -> None:
    class Env(EchoEnv):
        def respond(self, message: Message) -> Feedback:
            return Feedback(reward=bad)

    env = Env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite reward"):
        env.step("x")


def test_wrong_return_types_from_subclass_hooks() -> None:
    class NoTask(EchoEnv):
        def make_task(self, options: dict[str, Any] | None) -> Any:
            return {"messages": []}

    class NoFeedback(EchoEnv):
        def respond(self, message: Message) -> Any:
            return 1.0

    with pytest.raises(TypeError, match=r"make_task must return an envkit\.Task, got dict"):
        NoTask().reset(seed=0)
    env = NoFeedback()
    env.reset(seed=0)
    with pytest.raises(TypeError, match=r"must return an envkit\.Feedback .* got float"):
        env.step("x")


def test_unimplemented_hooks_say_what_to_implement() -> None:
    class Bare(ChatEnv):
        pass

    with pytest.raises(NotImplementedError, match=r"Bare must implement make_task"):
        Bare().reset(seed=0)


@pytest.mark.parametrize("max_turns", [0, -1, 1.5, "3"])
def test_bad_max_turns(max_turns: Any) -> None:
    with pytest.raises(ValueError, match="max_turns must be a positive int"):
        EchoEnv(max_turns=max_turns)


def test_check_env_on_a_custom_env_and_through_make(clean_registry: None) -> None:
    envkit.register("TestEcho-v0", entry_point=EchoEnv, kwargs={"max_turns": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("envkit/TestEcho-v0")
        check_env(env.unwrapped)
        env.reset(seed=0)
        env.step("x")
        env.close()


def test_async_env_loop_is_not_blocked_by_default_astep() -> None:
    """The default astep runs a blocking ``step`` in a thread: another coroutine keeps running."""
    from core_support import SlowEnv

    class Blocking(SlowEnv):
        step_in_thread = ChatEnv.step_in_thread  # the default, on a class with no history

    assert Blocking.step_in_thread == "auto"

    async def main() -> int:
        env = Blocking(delay=0.3)
        await env.areset(seed=0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        await env.astep("x")
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10


class _Where(EchoEnv):
    """Records whether ``make_task`` and ``respond`` ran on the event loop's thread;
    ``respond`` sleeps ``sleep[i]`` seconds at its i-th call (``sleep_on_loop[i]``: at its i-th
    call on the loop). Class attributes, so each test makes a subclass."""

    sleep: ClassVar[dict[int, float]] = {}
    sleep_on_loop: ClassVar[dict[int, float]] = {}
    resets: ClassVar[list[bool]]
    steps: ClassVar[list[bool]]

    def make_task(self, options: dict[str, Any] | None) -> Task:
        type(self).resets.append(_on_loop())
        return super().make_task(options)

    def respond(self, message: Message) -> Feedback:
        cls = type(self)
        cls.steps.append(_on_loop())
        # time.sleep(0) would block too (it yields the CPU): sleep only where asked.
        delay = cls.sleep.get(len(cls.steps) - 1)
        if cls.steps[-1]:
            delay = cls.sleep_on_loop.get(sum(cls.steps) - 1, delay)
        if delay:
            time.sleep(delay)
        return super().respond(message)


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False  # a worker thread
    return True


def _fresh_where(**attrs: Any) -> type[_Where]:
    """A new ``_Where`` subclass: ``"auto"`` keeps what it learned per class."""
    return type("Probe", (_Where,), {"resets": [], "steps": [], **attrs})


def _play(cls: type[ChatEnv], episodes: int, turns: int) -> None:
    """Plays ``episodes`` episodes of ``turns`` wrong answers through ``areset``/``astep``."""

    async def main() -> None:
        env = cls(max_turns=turns)
        for seed in range(episodes):
            await env.areset(seed=seed)
            for _ in range(turns):
                await env.astep("wrong")

    asyncio.run(main())


def _runs(flags: list[bool]) -> list[tuple[bool, int]]:
    """Run lengths: ``[F, F, T]`` -> ``[(False, 2), (True, 1)]``."""
    return [(k, len(list(g))) for k, g in itertools.groupby(flags)]


def test_auto_runs_quick_env_code_on_the_loop_after_16_quick_calls() -> None:
    cls = _fresh_where()
    _play(cls, episodes=1, turns=40)
    # 16 calls in a row in threads that did not block (exactly 16 on a quiet machine; a loaded
    # one may make a thread's call look blocked and restart the count), then on the loop.
    (threads, n), (loop, m) = _runs(cls.steps)
    assert (threads, loop) == (False, True) and n >= 16 and m >= 4, cls.steps
    assert cls.resets == [False]  # one reset: still in a thread


def test_auto_never_runs_a_blocking_step_on_the_loop_and_judges_reset_apart() -> None:
    cls = _fresh_where(sleep=dict.fromkeys(range(60), 0.005))
    _play(cls, episodes=30, turns=2)
    assert not any(cls.steps), "a step that blocks must run in a worker thread"
    assert cls.resets[:16] == [False] * 16 and cls.resets[-1], "quick resets go to the loop"


def test_auto_sends_an_env_that_blocks_on_the_loop_back_to_threads_with_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cls = _fresh_where(sleep_on_loop={1: 0.05, 4: 0.05})  # its 2nd and 5th calls on the loop
    with caplog.at_level(logging.DEBUG, logger="envkit"):
        _play(cls, episodes=1, turns=150)
    runs = _runs(cls.steps)
    # >= 16 in threads; 2 on the loop, the 2nd blocks; >= 64 in threads; 3 on the loop, the 3rd
    # blocks; then it needs 256 quick calls in a row: threads up to the end.
    assert [on for on, _ in runs] == [False, True, False, True, False], runs
    assert runs[0][1] >= 16 and runs[1][1] == 2 and runs[2][1] >= 64 and runs[3][1] == 3
    warnings, debug = (
        [r.getMessage() for r in caplog.records if r.levelno == level and "blocked" in r.msg]
        for level in (logging.WARNING, logging.DEBUG)
    )
    assert len(warnings) == 1, "warn once, not at every back-off"
    assert "Probe.step blocked the event loop" in warnings[0]
    assert "step_in_thread = True" in warnings[0] and "until 64 calls" in warnings[0]
    assert any("until 256 calls" in d for d in debug)


def test_auto_runs_an_overridden_step_in_a_thread() -> None:
    class OwnStep(_fresh_where()):  # type: ignore[misc]
        def step(self, action: Any) -> Any:
            return super().step(action)

    _play(OwnStep, episodes=1, turns=30)
    assert not any(OwnStep.steps)


@pytest.mark.parametrize("value", [True, False])
def test_step_in_thread_true_and_false_are_fixed(value: bool) -> None:
    cls = _fresh_where(step_in_thread=value)
    _play(cls, episodes=20, turns=2)
    assert set(cls.steps + cls.resets) == {not value}


def test_bad_step_in_thread_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        _fresh_where(step_in_thread="yes")()
