"""OpenEnv envs (written with openenv-core's server API) played as envkit envs."""

from __future__ import annotations

import gymnasium as gym
import pytest
from openenv_policies import bisect_guesser, calculator

import envkit
from envkit.environments.openenv import OpenEnvChatEnv, register_openenv
from envkit.errors import InfraError
from envkit.policies import CallablePolicy


def test_text_game_maps_the_reply_to_the_typed_action(guess_server: str) -> None:
    env = OpenEnvChatEnv.from_url(guess_server, max_turns=8)
    assert (env.action_mapper.mode, env.action_mapper.field) == ("text", "guess")
    assert env.tool_schemas == []  # the env has no MCP tools
    obs, info = env.reset(seed=3)
    assert obs[-1]["content"] == "Guess my number between 1 and 100."
    # the reply's integer fills GuessAction.guess; a reply without one is sent back, reward 0
    obs, reward, terminated, truncated, _ = env.step("I have no idea")
    assert "could not be used as an action" in obs[-1]["content"]
    assert (reward, terminated) == (0.0, False)
    obs, reward, terminated, _, info = env.step("My guess is 50")
    assert obs[-1]["content"] in ("higher", "lower") and reward == 0.0 and not terminated
    assert info["openenv_observation"] == {"message": obs[-1]["content"]}
    while not terminated:
        obs, reward, terminated, truncated, _ = env.step(bisect_guesser(obs, None))
        assert not truncated
    assert reward == 1.0  # the env's own reward and done
    env.close()


def test_collect_and_gymnasium_make_on_a_registered_openenv_env(
    guess_server: str, clean_registry: None
) -> None:
    fid = register_openenv("OpenEnvGuessTest-v0", url=guess_server, max_turns=8)
    assert fid == "envkit/OpenEnvGuessTest-v0"
    env = gym.make(fid)
    assert isinstance(env.unwrapped, OpenEnvChatEnv)
    env.close()
    groups = envkit.collect(
        "OpenEnvGuessTest-v0",
        CallablePolicy(bisect_guesser),
        seeds=[1, 2, 3],
        group_size=2,
        concurrency=6,  # six sessions at once, each its own env on the server
        progress=False,
    )
    trajs = [t for g in groups for t in g.trajectories]
    assert [t.outcome for t in trajs] == ["ok"] * 6
    assert all(t.reward == 1.0 for t in trajs)
    # the seed reaches the server: the same seed gives the same number, hence the same game
    by_seed = {g.trajectories[0].seed: g for g in groups}
    for g in groups:
        a, b = (t.message_dicts() for t in g.trajectories)
        assert a == b
    assert by_seed[1].trajectories[0].message_dicts() != by_seed[2].trajectories[0].message_dicts()


def test_tool_style_env_forwards_tool_calls_and_takes_its_reward(calc_server: str) -> None:
    env = OpenEnvChatEnv.from_url(calc_server, max_turns=4)
    assert env.action_mapper.mode == "tool"
    names = sorted(s["function"]["name"] for s in env.tool_schemas)
    assert names == ["add", "submit"]
    groups = envkit.collect(env, CallablePolicy(calculator), seeds=[5], progress=False)
    traj = groups[0].trajectories[0]
    assert traj.outcome == "ok" and traj.reward == 1.0
    tool_msgs = [m for m in traj.message_dicts() if m["role"] == "tool"]
    assert tool_msgs[0]["name"] == "add" and tool_msgs[1]["content"] == "submitted"

    # a wrong answer: the env's reward is 0, bad arguments come back to the model as text
    obs, _ = env.reset(seed=5)
    bad = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    obs, reward, terminated, _, _ = env.step({"role": "assistant", "tool_calls": [bad]})
    assert "missing ['b']" in obs[-1]["content"] and not terminated
    submit = {"name": "submit", "arguments": '{"answer": -1}'}
    call = {"id": "c2", "type": "function", "function": submit}
    obs, reward, terminated, _, _ = env.step({"role": "assistant", "tool_calls": [call]})
    assert (reward, terminated) == (0.0, True)
    env.close()


def test_each_episode_is_its_own_session(calc_server: str) -> None:
    a = OpenEnvChatEnv.from_url(calc_server)
    b = OpenEnvChatEnv.from_url(calc_server)
    a.reset(seed=1)
    b.reset(seed=2)
    assert a.messages[0].content != b.messages[0].content
    a.step(
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "x",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a":1,"b":1}'},
                }
            ],
        }
    )
    assert a.state()["step_count"] == 1 and b.state()["step_count"] == 0
    a.close()
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        a.reset(seed=1)


def test_a_server_that_stops_answering_ends_the_episode_as_infra_error(
    guess_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESS_HANG_S", "3")  # the in-thread server sleeps 3 s on guess 13
    env = OpenEnvChatEnv.from_url(guess_server, timeout=0.5)
    env.reset(seed=0)
    with pytest.raises(InfraError, match="did not answer"):
        env.step("13")
    env.close()
    groups = envkit.collect(
        lambda: OpenEnvChatEnv.from_url(guess_server, timeout=0.5),
        CallablePolicy(lambda m, t: "13"),
        seeds=[0],
        progress=False,
    )
    traj = groups[0].trajectories[0]
    assert traj.outcome == "infra_error" and "did not answer" in (traj.error or "")


def test_bad_configuration_gives_clear_errors(guess_server: str) -> None:
    with pytest.raises(ValueError, match="exactly one of url=, command= or image="):
        OpenEnvChatEnv()
    with pytest.raises(ValueError, match="not a field of the env's action"):
        OpenEnvChatEnv.from_url(guess_server, action_field="nope")
    with pytest.raises(InfraError, match="did not answer GET /schema"):
        OpenEnvChatEnv.from_url("http://127.0.0.1:9", timeout=2)
    with pytest.raises(ValueError, match="no '\\{port\\}' placeholder"):
        OpenEnvChatEnv.from_command("python -m http.server")
    with pytest.raises(ValueError, match="never pulls"):
        OpenEnvChatEnv.from_image("envkit-no-such-image:latest")
