"""The episode engine of both rollout backends: plays one episode of a ``ChatEnv``.

``EpisodeRunner.episode`` resets an env from an ``EnvPool``, alternates policy calls and env
steps until the episode ends, and records everything on a ``Trajectory``; a failure is recorded
there (``outcome``, ``error``), never raised. ``envkit.rollout`` (in this process) and
``envkit.ray_rollout`` (on Ray workers) both run their episodes through it. An
``envkit.AgentEnv``'s episodes are played by an ``envkit.agent_runner.AgentRunner`` (the agent
calls the policy through a gateway), made on the first such episode; ``aclose`` closes it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from envkit.agent_runner import AgentRunner
from envkit.env import ChatEnv
from envkit.env_pool import EnvPool
from envkit.environments.agent import AgentEnv
from envkit.errors import InfraError
from envkit.policies.base import Policy
from envkit.types import Completion, GenerationRequest, Message, Trajectory, Usage

__all__ = ["EpisodeRunner"]

_SCALARS = (str, int, float, bool, type(None))


def _jsonable(value: Any) -> Any:
    """Converts info values to plain JSON (numpy scalars, tuples...); unknown objects to str."""
    if type(value) is dict and all(
        type(k) is str and type(v) in _SCALARS for k, v in value.items()
    ):
        return dict(value)  # the common case: a flat dict of JSON scalars, no round trip
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist") and callable(o.tolist):  # numpy arrays and scalars, torch tensors
        return o.tolist()
    if hasattr(o, "item") and callable(o.item):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    return repr(o)


class EpisodeRunner:
    """Plays episodes on envs from ``pool`` against ``policy`` (see the module docstring).

    Args:
        pool: Where the envs come from.
        policy: Samples the assistant turns.
        options: Passed to every ``env.reset``.
        episode_timeout: Seconds after which an episode is stopped (``None``: never).
        gateway: For ``AgentEnv`` episodes: the ``envkit.gateway.Gateway`` the agents call
            (kept open by ``aclose``); ``None``: one over ``policy``, made on the first agent
            episode and closed by ``aclose``.
        gateway_log_dir: Where a gateway made here writes its session files (``None``: a temp
            dir, removed by ``aclose``).
    """

    def __init__(
        self,
        pool: EnvPool,
        policy: Policy,
        options: dict[str, Any] | None,
        episode_timeout: float | None,
        *,
        gateway: Any = None,
        gateway_log_dir: Any = None,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.options = options
        self.episode_timeout = episode_timeout
        self._gateway = gateway
        self._gateway_log_dir = gateway_log_dir
        self._agents: AgentRunner | None = None

    async def aclose(self) -> None:
        """Closes what agent episodes opened (the gateway made here; a passed one stays)."""
        agents, self._agents = self._agents, None
        if agents is not None:
            await agents.aclose()

    async def episode(self, seed: int | None, group_index: int) -> Trajectory:
        traj = Trajectory(env_id=self.pool.env_id, seed=seed, group_index=group_index)
        start = time.perf_counter()
        try:
            env = await self.pool.acquire()
        except Exception as e:
            traj.outcome, traj.error = _classify(e, "making the env")
            traj.timings.total_s = time.perf_counter() - start
            return traj
        if isinstance(env, AgentEnv):
            return await self._agent_episode(env, traj, start)
        broken = True
        try:
            await asyncio.wait_for(self._play(env, traj), self.episode_timeout)
            broken = traj.failed
        except asyncio.TimeoutError:
            traj.outcome = "timeout"
            traj.error = (
                f"the episode did not finish within episode_timeout={self.episode_timeout} s"
            )
        except Exception as e:  # e.g. a step result of the wrong shape: this episode failed
            traj.outcome, traj.error = _classify(e, "handling the env's output")
        finally:
            self.pool.release(env, broken=broken)
            traj.timings.total_s = time.perf_counter() - start
        if not traj.failed:
            traj.reward = math.fsum(traj.step_rewards)
        return traj

    async def _agent_episode(self, env: AgentEnv, traj: Trajectory, start: float) -> Trajectory:
        if self._agents is None:
            self._agents = AgentRunner(
                self.policy, gateway=self._gateway, log_dir=self._gateway_log_dir
            )
        broken = True
        try:
            await self._agents.play(env, traj, self.options, self.episode_timeout)
            broken = traj.failed
        except Exception as e:  # a bug in the runner: this episode failed, not the batch
            traj.outcome, traj.error = _classify(e, "playing the agent episode")
        finally:
            self.pool.release(env, broken=broken)
            traj.timings.total_s = time.perf_counter() - start
        return traj

    async def _play(self, env: ChatEnv, traj: Trajectory) -> None:
        # The loop keeps its bookkeeping in locals and writes it to ``traj`` once, at the end
        # (also when the episode times out): a pydantic attribute assignment costs microseconds.
        clock = time.perf_counter
        env_s = policy_s = 0.0
        usage: Usage | None = None
        info: Any = None
        t = clock()
        try:
            obs, _ = await env.areset(seed=traj.seed, options=self.options)
        except Exception as e:
            traj.outcome, traj.error = _classify(e, "env.reset")
            return
        finally:
            traj.timings.env_s += clock() - t
        task = env.task
        traj.task_id = task.id if task is not None else None
        traj.reference = _jsonable(task.reference) if task is not None else None
        tools = env.tool_schemas or None
        traj.tools = tools
        messages = traj.messages = [Message.coerce(m) for m in obs]
        completions, step_rewards = traj.completions, traj.step_rewards
        counters: Counter[str] = Counter()
        try:
            while True:
                # model_construct: the messages are validated Message objects already.
                request = GenerationRequest.model_construct(messages=list(messages), tools=tools)
                t = clock()
                try:
                    completion = _single(await self.policy.agenerate([request]))
                except Exception as e:
                    traj.outcome, traj.error = "policy_error", _describe(e, "policy.agenerate")
                    return
                finally:
                    policy_s += clock() - t
                completions.append(completion)
                if completion.usage is not None:
                    usage = completion.usage if usage is None else usage + completion.usage
                t = clock()
                try:
                    new_obs, reward, terminated, truncated, info = await env.astep(
                        completion.message
                    )
                except Exception as e:
                    messages.append(completion.message)
                    traj.outcome, traj.error = _classify(e, "env.step")
                    return
                finally:
                    env_s += clock() - t
                messages = _update_messages(messages, obs, new_obs)
                obs = new_obs
                step_rewards.append(float(reward))
                for key, value in info.items():
                    if key.startswith("tool_") and isinstance(value, int):
                        counters[key] += value
                if terminated or truncated:
                    traj.outcome = "ok" if terminated else "truncated"
                    turns = sum(1 for m in messages if m.role == "assistant")
                    traj.metrics.update({"turns": turns, **counters})
                    return
        finally:
            traj.messages = messages
            traj.timings.env_s += env_s
            traj.timings.policy_s += policy_s
            if usage is not None:
                traj.usage = usage
            if info is not None:
                traj.info = _jsonable(info)


def _update_messages(
    messages: list[Message], last_obs: Sequence[Any], obs: Sequence[Any]
) -> list[Message]:
    """``obs`` as ``Message`` objects, reusing those of the unchanged prefix of ``last_obs``.

    Usually the env appended to the conversation: ``messages`` (which shows ``last_obs``) is
    extended in place with the new messages only. A ``ChatEnv`` shares its read-only message
    dicts between observations, so checking the prefix is a pointer comparison per message and
    the new ones carry their ``Message`` (``MessageDict.message``): a step costs the same at
    turn 100 as at turn 1. An env that rewrites earlier messages still gets them re-read.
    """
    k = len(last_obs)
    if len(messages) == k and len(obs) >= k and obs[:k] == last_obs:
        messages.extend([Message.coerce(m) for m in obs[k:]])
        return messages
    n, limit = 0, min(k, len(obs), len(messages))
    while n < limit and obs[n] == last_obs[n]:
        n += 1
    return messages[:n] + [Message.coerce(m) for m in obs[n:]]


def _single(completions: Sequence[Completion]) -> Completion:
    if len(completions) != 1 or not isinstance(completions[0], Completion):
        raise TypeError(
            f"the policy returned {len(completions)} items for 1 request; agenerate must return "
            "exactly one envkit.Completion per request"
        )
    return completions[0]


def _describe(e: BaseException, where: str) -> str:
    text = str(e) or repr(e)
    return f"{type(e).__name__} in {where}: {text}"


def _classify(e: BaseException, where: str) -> tuple[Any, str]:
    if isinstance(e, InfraError):
        return "infra_error", _describe(e, where)
    return "env_error", _describe(e, where)
