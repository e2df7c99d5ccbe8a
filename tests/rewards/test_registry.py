"""The reward registry, ``Reward`` semantics and the error contract (None + recorded, never 0)."""

from __future__ import annotations

import asyncio
import math
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
from rewards_support import group, trajectory

import envkit
from envkit.rewards import (
    Reward,
    default_reward_for,
    get,
    list_rewards,
    register,
    reward,
    score_groups,
    set_default_reward,
    unregister,
)
from envkit.rewards import registry as registry_mod


@pytest.fixture
def clean_rewards() -> Iterator[None]:
    before = dict(registry_mod._REGISTRY)
    defaults = dict(registry_mod._ENV_DEFAULTS)
    yield
    registry_mod._REGISTRY.clear()
    registry_mod._REGISTRY.update(before)
    registry_mod._ENV_DEFAULTS.clear()
    registry_mod._ENV_DEFAULTS.update(defaults)


def test_decorator_registers_and_returns_the_function(clean_rewards: None) -> None:
    @reward
    def mentions_391(trajectory) -> float:
        return float("391" in (trajectory.messages[-1].content or ""))

    assert callable(mentions_391) and not isinstance(mentions_391, Reward)
    assert mentions_391(trajectory("391")) == 1.0  # still a plain function
    assert "mentions_391" in list_rewards()
    r = get("mentions_391")
    assert isinstance(r, Reward) and r.name == "mentions_391" and not r.group
    assert r.score_trajectory_sync(trajectory("no")) == 0.0


def test_registration_conflicts(clean_rewards: None) -> None:
    def a(trajectory) -> float:
        return 1.0

    def b(trajectory) -> float:
        return 0.0

    register(a, "conflict")
    register(a, "conflict")  # the same function again is harmless
    with pytest.raises(ValueError, match=r"already registered.*override=True"):
        register(b, "conflict")
    register(b, "conflict", override=True)
    assert get("conflict").fn is b
    unregister("conflict")
    assert "conflict" not in list_rewards()


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "x" * 200, "semi;colon"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid reward name"):
        Reward(lambda t: 1.0, name=name)


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(KeyError, match="did you mean 'exact_match'"):
        get("exact_mach")
    with pytest.raises(TypeError, match="must be a string"):
        get(3)  # type: ignore[arg-type]


def test_bad_reward_functions_are_rejected_early() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        Reward(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="first parameter must take the trajectory"):
        Reward(lambda: 1.0, name="noargs")
    with pytest.raises(TypeError, match=r"has no parameter.*'tolerance'"):
        get("exact_match").bind(tolerance=0.1)
    with pytest.raises(ValueError, match="timeout_s"):
        Reward(lambda t: 1.0, name="x", timeout_s=0)


def test_kwargs_come_from_bound_options_over_the_reference_and_info() -> None:
    seen: list[dict] = []

    def check(trajectory, answer=None, *, strict: bool = False) -> float:
        seen.append({"answer": answer, "strict": strict})
        return 1.0

    r = Reward(check)
    r.score_trajectory_sync(trajectory("x", reference=391, info={"strict": True, "other": 1}))
    r.bind(answer=5, strict=False).score_trajectory_sync(trajectory("x", reference=391))
    assert seen == [{"answer": 391, "strict": True}, {"answer": 5, "strict": False}]
    assert r.options == {}  # bind made a copy


def test_info_answer_is_never_the_reference() -> None:
    """An env's step info may hold the model's own answer; it must not become the reference."""
    seen: list[object] = []

    def check(trajectory, answer=None) -> float:
        seen.append(answer)
        return 1.0

    Reward(check).score_trajectory_sync(trajectory("x", info={"answer": "1 + 1"}))
    Reward(check).score_trajectory_sync(trajectory("x", reference=7, info={"answer": "1 + 1"}))
    assert seen == [None, 7]


def test_var_kwargs_reward_gets_all_info() -> None:
    got = {}

    def anything(trajectory, **kwargs) -> float:
        got.update(kwargs)
        return 0.5

    t = trajectory("x", reference="a", info={"answer": "not me", "k": 2})
    Reward(anything).bind(extra=1).score_trajectory_sync(t)
    assert got == {"answer": "a", "k": 2, "extra": 1}


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        (math.nan, "returned nan"),
        (math.inf, "returned inf"),
        ("0.5", "a reward must return a float or None"),
        ([1.0], "a reward must return a float or None"),
    ],
)
def test_invalid_return_values_are_errors_not_zero(returned, error: str) -> None:
    g = group("a", "b")
    report = score_groups(g, Reward(lambda t: returned, name="bad"))
    assert g.rewards == [None, None]
    assert error in g[0].metrics["reward_errors"]["bad"]
    assert report.errors == 2 and report.scored == 0
    assert g.metrics["reward_errors"] == 2


def test_exception_is_recorded_per_trajectory_and_counted() -> None:
    def flaky(trajectory) -> float:
        if "boom" in trajectory.messages[-1].content:
            raise RuntimeError("cannot parse")
        return 1.0

    g = group("fine", "boom", "fine")
    report = score_groups(g, flaky)
    assert g.rewards == [1.0, None, 1.0]
    assert g[1].metrics["reward_errors"] == {
        "flaky": "RuntimeError in reward 'flaky': cannot parse"
    }
    assert "reward_errors" not in g[0].metrics
    assert report.errors == 1 and report.scored == 2
    assert report.error_messages == ["RuntimeError in reward 'flaky': cannot parse"]
    # bool and None are fine: True is 1.0, None is "unknown" without an error
    g2 = group("a", "b")
    score_groups(g2, lambda t: None if t.group_index else True)
    assert g2.rewards == [1.0, None] and "reward_errors" not in g2[1].metrics


def test_failed_episodes_are_not_scored() -> None:
    g = group("a", "b")
    g[1].outcome = "policy_error"
    calls = []
    score_groups(g, lambda t: calls.append(t.group_index) or 1.0)
    assert g.rewards == [1.0, None] and calls == [0]
    assert "reward_errors" not in g[1].metrics


async def test_async_rewards_and_sync_rewards_in_threads_run_concurrently() -> None:
    started = asyncio.Event()
    count = 0

    async def waits(trajectory) -> float:
        nonlocal count
        count += 1
        if count == 3:
            started.set()
        await asyncio.wait_for(started.wait(), 2)  # deadlocks unless all three run at once
        return 1.0

    g = group("a", "b", "c")
    from envkit.rewards import ascore_groups

    report = await ascore_groups(g, waits)
    assert g.rewards == [1.0, 1.0, 1.0] and report.errors == 0


def test_timeout_is_an_error() -> None:
    def slow(trajectory) -> float:
        time.sleep(0.5)
        return 1.0

    g = group("a")
    score_groups(g, Reward(slow, timeout_s=0.05))
    assert g.rewards == [None]
    assert "took longer than 0.05 s" in g[0].metrics["reward_errors"]["slow"]


def test_group_rewards() -> None:
    def rank(group) -> list[float]:
        lengths = [len(t.messages[-1].content or "") for t in group]
        return [float(n == max(lengths)) for n in lengths]

    g = group("short", "the longest one", "mid size")
    r = Reward(rank, group=True)
    assert r.score_group_sync(g) == [0.0, 1.0, 0.0]
    assert g[1].reward_breakdown == {"rank": 1.0}
    with pytest.raises(TypeError, match="scores whole groups"):
        r.score_trajectory_sync(g[0])


@pytest.mark.parametrize(
    ("fn", "error"),
    [
        (lambda g: [1.0], "returned 1 values for a group of 2"),
        (lambda g: 1.0, "returned 1.0 for a group of 2"),
        (lambda g: [1.0, math.nan], "returned nan"),
        (lambda g: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_broken_group_reward_is_a_group_error(fn, error: str) -> None:
    g = group("a", "b")
    report = score_groups(g, Reward(fn, name="grp", group=True))
    assert g.rewards == [None, None]
    assert g.outcome == "judge_error" and error in (g.error or "")
    assert report.judge_errors == 1 and error in g[0].metrics["reward_errors"]["grp"]


def test_decorated_group_reward_keeps_its_settings(clean_rewards: None) -> None:
    @reward(name="longest", group=True)
    def longest(group) -> list[float]:
        return [float(i == len(group) - 1) for i in range(len(group))]

    g = group("a", "b")
    score_groups(g, longest)  # the function itself, not the name
    assert g.rewards == [0.0, 1.0]


def test_default_reward_for_env(clean_rewards: None, clean_registry_ids: None) -> None:
    class WithDefault(envkit.ChatEnv):
        default_reward = "exact_match"

        def make_task(self, options):
            return envkit.Task(messages=[{"role": "user", "content": "hi"}], answer="hi")

        def respond(self, message):
            return envkit.Feedback(reward=1.0, done=True)

    envkit.register("RewardDefaultTest-v0", entry_point=WithDefault)
    assert default_reward_for("RewardDefaultTest-v0") == "exact_match"
    assert default_reward_for(WithDefault) == "exact_match"
    assert default_reward_for(envkit.make("RewardDefaultTest-v0")) == "exact_match"
    set_default_reward("RewardDefaultTest-v0", "numeric_match")
    assert default_reward_for("envkit/RewardDefaultTest-v0") == "numeric_match"
    assert default_reward_for("Arithmetic-v0") is None  # its reward is its own step reward
    with pytest.raises(gym.error.Error):
        default_reward_for("NoSuchEnv-v0")


@pytest.fixture
def clean_registry_ids() -> Iterator[None]:
    before = set(gym.registry)
    yield
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]


def test_plugin_rewards_through_entry_points(
    tmp_path: Path, clean_rewards: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real installed distribution (a .dist-info on sys.path) adds a reward by entry point."""
    (tmp_path / "plugin_reward_mod.py").write_text(
        textwrap.dedent(
            """
            def politeness(trajectory):
                return float("please" in (trajectory.messages[-1].content or ""))
            """
        )
    )
    dist = tmp_path / "envkit_plugin_reward-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: envkit-plugin-reward\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[envkit.rewards]\npoliteness = plugin_reward_mod:politeness\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "politeness" in list_rewards()
    r = get("politeness")
    assert r.score_trajectory_sync(trajectory("yes please")) == 1.0
    monkeypatch.delitem(sys.modules, "plugin_reward_mod", raising=False)


def test_info_key_named_like_the_first_parameter_is_not_passed() -> None:
    def anything(trajectory, **kwargs) -> float:
        return float(len(kwargs))

    assert (
        Reward(anything).score_trajectory_sync(trajectory("x", info={"trajectory": 1, "a": 2}))
        == 1.0
    )
