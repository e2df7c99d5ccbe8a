"""``AgentEnv`` as a plain gymnasium env: tasks, rewards, registration, errors (no model)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import agents_support
import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envkit
from envkit.environments.agent import GROUP_JUDGE, AgentEnv, load_agent, load_tasks
from envkit.errors import EpisodeOverError
from envkit.rewards import Reward, reward, unregister
from envkit.types import Trajectory

ROWS = [
    {"prompt": "What is 2+2?", "answer": "4"},
    {"prompt": "What is 3+3?", "answer": "6", "level": 2},
    {
        "prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "1+1?"}],
        "answer": "2",
        "id": "one-plus-one",
    },
]


def make_env(**kwargs: Any) -> AgentEnv:
    kwargs.setdefault("reward", "exact_match")
    return AgentEnv(agents_support.one_call_agent, ROWS, **kwargs)


@pytest.mark.parametrize("reward_name", ["exact_match", None])
def test_check_env_passes(clean_registry: None, reward_name: str | None) -> None:
    env_id = envkit.register_agent(
        "TestAgentCheck-v0", agent=agents_support.one_call_agent, tasks=ROWS, reward=reward_name
    )
    env = envkit.make(env_id).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)
    env.close()


def test_one_step_episode() -> None:
    env = make_env()
    obs, info = env.reset(seed=0)
    assert obs == [{"role": "user", "content": "What is 2+2?"}]
    assert info["task_id"] == "task-0"
    obs, reward, terminated, truncated, info = env.step("The answer is 4.")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["submitted"] == "The answer is 4."
    assert info["reward_breakdown"] == {"exact_match": 1.0}
    assert obs[-1] == {"role": "assistant", "content": "The answer is 4."}
    with pytest.raises(EpisodeOverError):
        env.step("again")
    env.reset(seed=0)
    assert env.step({"role": "assistant", "content": "5"})[1] == 0.0


def test_seed_i_plays_task_i_and_options_pick_one() -> None:
    env = make_env()
    ids = [env.reset(seed=s)[1]["task_id"] for s in range(4)]
    assert ids == ["task-0", "task-1", "one-plus-one", "task-0"]
    assert env.reset(seed=0, options={"index": 2})[1]["task_id"] == "one-plus-one"
    assert env.reset()[1]["task_id"] in {"task-0", "task-1", "one-plus-one"}
    with pytest.raises(ValueError, match="out of range: there are 3 tasks"):
        env.reset(options={"index": 3})
    assert env.reset(seed=1)[1]["level"] == 2  # other columns: Task.info, in reset's info


def test_the_agent_gets_its_own_copy_of_the_task() -> None:
    env = make_env()
    env.reset(seed=2)
    assert env.task is not None
    env.task.messages.append({"role": "user", "content": "changed"})  # type: ignore[attr-defined]
    obs, _ = env.reset(seed=2)
    assert [m["content"] for m in obs] == ["Be terse.", "1+1?"]


def test_jsonl_task_file(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    env = AgentEnv("agents_support:one_call_agent", str(path), reward="exact_match")
    assert env.num_tasks == 3 and env.agent is agents_support.one_call_agent
    obs, info = env.reset(seed=2)
    assert info["task_id"] == "one-plus-one" and obs[0]["role"] == "system"
    assert env.task is not None and env.task.reference == "2"
    assert env.step("2")[1] == 1.0
    assert AgentEnv(agents_support.one_call_agent, path).num_tasks == 3  # a Path works too


def test_task_objects_and_task_env_source() -> None:
    tasks = [envkit.Task(messages=[{"role": "user", "content": "hi"}], reference="yo")]
    env = AgentEnv(agents_support.one_call_agent, tasks, reward="exact_match")
    env.reset(seed=5)
    assert env.task is not None and env.task.id == "task-0" and env.step("yo")[1] == 1.0

    from_env = AgentEnv(agents_support.one_call_agent, "Arithmetic-v0")
    obs, _ = from_env.reset(seed=3)
    plain = envkit.make("Arithmetic-v0")
    assert obs == plain.reset(seed=3)[0]
    assert from_env.num_tasks is None and from_env.task is not None
    assert from_env.task.reference == plain.unwrapped.task.reference
    from_env.close()
    plain.close()


def test_registered_and_callable_rewards() -> None:
    @reward(name="test_agent_says", override=True)
    def says(trajectory: Trajectory, answer: str | None = None, word: str = "yes") -> float:
        return float(word in trajectory.info["submitted"])

    try:
        env = make_env(reward="test_agent_says")
        env.reset(seed=0)
        assert env.step("yes!")[1] == 1.0
        assert env.reward is not None and env.reward.name == "test_agent_says"
    finally:
        unregister("test_agent_says")

    def graded(trajectory: Trajectory, answer: str | None = None, level: int = 1) -> float:
        return float(trajectory.info["submitted"] == answer) * level

    env = make_env(reward=graded)
    env.reset(seed=1)
    assert env.step("6")[1] == 2.0  # the reference as answer=, the task's column as level=
    assert env.group_reward is None and not env.scored_by_group


def test_no_reward_means_the_group_judge() -> None:
    env = make_env(reward=None)
    assert env.reward is None and env.group_reward == GROUP_JUDGE and env.scored_by_group
    env.reset(seed=0)
    _, value, terminated, _, info = env.step("anything")
    assert (value, terminated, info["reward_pending"]) == (0.0, True, "ruler")

    def rank(group: Any) -> list[float]:
        return [1.0] * len(group)

    group_reward = Reward(rank, group=True)
    env = make_env(reward=group_reward)
    assert env.reward is None and env.group_reward is group_reward
    env.reset(seed=0)
    assert env.step("x")[4]["reward_pending"] == "rank"


def test_a_reward_that_cannot_score_fails_the_step() -> None:
    env = AgentEnv(agents_support.one_call_agent, [{"prompt": "hi"}], reward="exact_match")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="'exact_match' could not score this answer"):
        env.step("yo")


def test_gymnasium_make_and_envkit_make(clean_registry: None) -> None:
    env_id = envkit.register_agent(
        "TestAgentMake-v0", agent=agents_support.one_call_agent, tasks=ROWS, reward="exact_match"
    )
    assert env_id == "envkit/TestAgentMake-v0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id)
        obs, _ = env.reset(seed=1)
        assert obs[-1]["content"] == "What is 3+3?"
        assert env.step("6")[1:3] == (1.0, True)
        check_env(env.unwrapped)
        env.close()
    made = envkit.make("TestAgentMake-v0", model="my-model").unwrapped
    assert isinstance(made, AgentEnv) and made.model == "my-model" and made.num_tasks == 3
    other = envkit.make("TestAgentMake-v0").unwrapped
    assert other.tasks is made.tasks  # loaded once, shared


def test_register_by_entry_point_with_strings(clean_registry: None, tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    envkit.register(
        "TestAgentEntry-v0",
        entry_point="envkit.environments.agent:AgentEnv",
        kwargs={"agent": "agents_support:two_call_agent", "tasks": str(path), "reward": None},
    )
    env = envkit.make("TestAgentEntry-v0").unwrapped
    assert env.agent is agents_support.two_call_agent and env.scored_by_group


@pytest.mark.parametrize(
    ("agent", "error", "match"),
    [
        ("no_colon", ValueError, "is not 'package.module:function'"),
        ("no_such_module_xyz:solve", ImportError, "cannot import the agent's module"),
        ("agents_support:missing", AttributeError, "has no attribute 'missing'"),
        (lambda client, task: "sync", TypeError, "must be 'async def agent"),
        (42, TypeError, "must be an async function"),
    ],
)
def test_bad_agents_are_refused(agent: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        load_agent(agent)


def test_bad_tasks_and_rewards_are_refused(tmp_path: Path) -> None:
    one = agents_support.one_call_agent
    with pytest.raises(ValueError, match="has no 'prompt' column"):
        AgentEnv(one, [{"question": "hi"}])
    with pytest.raises(ValueError, match="no tasks in"):
        AgentEnv(one, [])
    with pytest.raises(FileNotFoundError):
        AgentEnv(one, str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="clash with keys the env writes"):
        load_tasks([{"prompt": "hi", "submitted": "x"}])
    with pytest.raises(KeyError, match="no reward named 'no_such_reward'"):
        AgentEnv(one, ROWS, reward="no_such_reward")
    with pytest.raises(ValueError, match="model must be a non-empty model name"):
        AgentEnv(one, ROWS, model="")


def test_spawn_makes_another_env_of_the_same_kind() -> None:
    env = make_env(model="m", render_mode="ansi")
    twin = env.spawn()
    assert twin is not env and twin.tasks is env.tasks and twin.reward is env.reward
    assert (twin.model, twin.render_mode, twin.agent) == ("m", "ansi", env.agent)
    judged = make_env(reward=None).spawn()
    assert judged.group_reward == GROUP_JUDGE
    from_env = AgentEnv(agents_support.one_call_agent, "Arithmetic-v0").spawn()
    assert from_env.task_env is not None and from_env.reset(seed=1)[0]
    from_env.close()


def test_render_and_repr() -> None:
    env = make_env(render_mode="ansi")
    env.reset(seed=0)
    env.step("4")
    assert env.render() == "[user] What is 2+2?\n[assistant] 4"
    assert repr(env) == "AgentEnv(one_call_agent, 3 tasks, reward=exact_match)"
