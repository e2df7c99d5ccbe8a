"""Playing one agent episode: an ``AgentEnv``'s agent against the policy, through the gateway.

``EpisodeRunner`` hands every episode of an ``envkit.AgentEnv`` to an ``AgentRunner``, which

1. resets the env for the seed (its task);
2. opens a session on a ``envkit.gateway.Gateway`` over the rollout's policy (one gateway per
   runner, started on the first agent episode and closed by ``aclose``; or a long-lived one the
   caller passes, e.g. the trainer's) and builds ``openai.AsyncOpenAI(base_url=session.base_url,
   api_key="envkit", max_retries=0)``;
3. awaits ``agent(client, task)`` under the episode timeout;
4. links the session's recorded calls by token prefix (``envkit.gateway.linking.link_calls``):
   the branch holding the agent's last trainable call is the main one (``Trajectory.completions``
   and ``messages``: that conversation and its final answer), the others go to
   ``Trajectory.branches``; the linking counts to ``metrics``, the session file to
   ``info["gateway_session"]``;
5. scores the answer with ``env.astep(answer, trajectory=traj)``.

A failure is recorded on the trajectory, never raised:

* ``agent_error``: the agent raised (``error`` holds the traceback; an agent that sent another
  model name got a 404 naming the model it must send, and usually raised that), returned
  something that is not an answer (the type is named), or made no model call at all (metric
  ``agent/no_model_calls``: a harness that never reaches the model trains on nothing);
* ``timeout``: the agent did not return within ``episode_timeout`` (the calls made so far are
  kept);
* ``infra_error``: a call failed in the upstream (the gateway answered 502; whether or not the
  agent caught the error, its episode was shaped by it), the gateway could not be reached or
  started, or the agent raised ``envkit.InfraError``;
* ``env_error``: the env's reset or the scoring failed.

Without token ids (a hosted API upstream) nothing can be linked: ``completions`` then holds
every answered call in order, without ids, and ``messages`` the last call's conversation; such
trajectories can be evaluated, not trained on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
import traceback
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.environments.agent import AgentEnv
from envkit.errors import InfraError
from envkit.types import Completion, Message, Trajectory, Usage

if TYPE_CHECKING:
    from envkit.gateway.records import CallRecord
    from envkit.gateway.server import Gateway

__all__ = ["AgentRunner", "answer_message"]

_MAX_TRACEBACK = 8000
"""Characters of an agent's traceback kept in ``Trajectory.error`` (its end)."""
_CANCEL_GRACE_S = 5.0
"""Seconds a timed-out agent gets to finish its cancellation before it is left behind."""


def answer_message(answer: Any) -> Message:
    """The agent's return value as the assistant message that answers the task.

    Accepted: a string; an ``envkit.Message`` or a dict in the OpenAI message format (role
    ``assistant``, which may be left out) with ``content`` and/or ``tool_calls``; an object
    with ``role`` and ``content`` attributes, such as the ``openai`` SDK's
    ``ChatCompletionMessage`` (``response.choices[0].message``).

    Raises:
        TypeError: anything else (the message names the type and what to return).

    Example:
        >>> answer_message("42").content, answer_message({"content": "42"}).role
        ('42', 'assistant')
        >>> answer_message(42)
        Traceback (most recent call last):
        ...
        TypeError: the agent returned int (42); return the answer as a string...
    """
    from envkit.spaces import validate_assistant_turn

    if isinstance(answer, (str, Message, Mapping)):
        data: Any = dict(answer) if isinstance(answer, Mapping) else answer
    elif hasattr(answer, "role") and hasattr(answer, "content"):  # openai's message objects
        data = {"role": answer.role, "content": answer.content}
        calls = getattr(answer, "tool_calls", None)
        if calls:
            data["tool_calls"] = [
                c.model_dump() if hasattr(c, "model_dump") else dict(c) for c in calls
            ]
    else:
        data = None
    if data is not None:
        try:
            return validate_assistant_turn(data)
        except ValueError as e:
            raise TypeError(f"the agent's answer is not an assistant message: {e}") from None
    raise TypeError(
        f"the agent returned {type(answer).__name__} ({answer!r:.100}); return the answer as a "
        "string, an assistant message dict ({'role': 'assistant', 'content': ...}) or the "
        "openai SDK's message (response.choices[0].message)"
    )


class AgentRunner:
    """Plays ``AgentEnv`` episodes through a gateway over ``policy`` (see the module doc).

    Args:
        policy: The rollout's policy (the gateway's upstream when ``gateway`` is ``None``).
        gateway: A started or unstarted ``Gateway`` to use (kept open by ``aclose``); ``None``:
            one is made over ``policy`` on the first episode and closed by ``aclose``.
        log_dir: Where a gateway made here writes its session files (``None``: a temp dir,
            removed by ``aclose``).
    """

    def __init__(
        self,
        policy: Any,
        *,
        gateway: Gateway | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        self.policy = policy
        self._gateway = gateway
        self._owned = gateway is None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._stops: set[int] | None = None
        self._transport: Any = None

    @property
    def gateway(self) -> Gateway:
        """The gateway (made and started on first use when none was passed)."""
        if self._gateway is None:
            from envkit.gateway.server import Gateway

            self._gateway = Gateway(self.policy, log_dir=self.log_dir)
        return self._gateway.start()

    def _client(self, base_url: str) -> Any:
        """An ``openai.AsyncOpenAI`` on ``base_url``, sharing this runner's connection pool.

        A client of its own per episode (an agent may close it), over one transport: making an
        httpx transport loads the CA bundle (~0.1 s of CPU each), once here. Proxy variables
        are ignored: the gateway is on this machine.
        """
        import openai

        if self._transport is None:
            self._transport = _SharedTransport.make()
        http_client = openai.DefaultAsyncHttpxClient(transport=self._transport, trust_env=False)
        return openai.AsyncOpenAI(
            base_url=base_url, api_key="envkit", max_retries=0, http_client=http_client
        )

    def stop_token_ids(self) -> set[int]:
        """The model's end-of-turn ids, for linking: the upstream policy's ``stop_token_ids``."""
        if self._stops is None:
            policy = getattr(self.gateway.upstream, "policy", self.policy)
            self._stops = {int(t) for t in getattr(policy, "stop_token_ids", None) or []}
        return self._stops

    async def aclose(self) -> None:
        """Closes the gateway made here (a passed one stays open)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.inner.aclose()
        gateway, self._gateway = self._gateway, (None if self._owned else self._gateway)
        if self._owned and gateway is not None:
            from envkit._async import to_thread

            await to_thread(gateway.close)

    async def play(
        self,
        env: AgentEnv,
        traj: Trajectory,
        options: dict[str, Any] | None,
        timeout: float | None,
    ) -> None:
        """Plays one episode of ``env`` into ``traj`` (seed and group index set); never raises
        for the episode's own failures (see the module doc)."""
        clock = time.perf_counter
        t = clock()
        try:
            obs, _ = await env.areset(seed=traj.seed, options=options)
        except Exception as e:
            traj.outcome, traj.error = _classify(e, "env.reset")
            return
        finally:
            traj.timings.env_s += clock() - t
        task = env.task
        assert task is not None
        traj.task_id = task.id
        traj.reference = _jsonable(task.reference)
        traj.messages = [Message.coerce(m) for m in obs]
        traj.info = {str(k): _jsonable(v) for k, v in task.info.items()}
        try:
            gateway = self.gateway
            stops = self.stop_token_ids()
            session = gateway.open_session(_session_id(traj), model=env.model)
        except Exception as e:
            traj.outcome = "infra_error"
            traj.error = f"{type(e).__name__} starting the gateway: {e}"
            return
        answer: Any = None
        try:
            answer = await self._run_agent(env, task, session.base_url, timeout, traj)
        finally:
            session.close()
        records = sorted(session.records, key=lambda r: r.index)
        self._record(traj, records, stops, session)
        traj.timings.policy_s += math.fsum(r.duration_s for r in records)
        _check_calls(traj, records)
        if traj.failed:
            return
        try:
            message = answer_message(answer)
        except TypeError as e:
            traj.outcome, traj.error = "agent_error", str(e)
            return
        traj.info["submitted"] = message.content or ""
        t = clock()
        try:
            await asyncio.wait_for(env.astep(message, trajectory=traj), timeout)
        except asyncio.TimeoutError:
            traj.outcome = "timeout"
            traj.error = f"scoring the answer took longer than episode_timeout={timeout} s"
        except Exception as e:
            traj.outcome, traj.error = _classify(e, "scoring the answer")
        finally:
            traj.timings.env_s += clock() - t

    async def _run_agent(
        self, env: AgentEnv, task: Any, base_url: str, timeout: float | None, traj: Trajectory
    ) -> Any:
        """The agent's answer; a failure is written to ``traj`` (and ``None`` returned)."""
        client = self._client(base_url)
        running: asyncio.Task[Any] | None = None
        try:
            call = env.agent(client, _agent_task(task))
            if not inspect.isawaitable(call):
                traj.outcome = "agent_error"
                traj.error = (
                    f"the agent returned {type(call).__name__} instead of a coroutine; write it "
                    "as 'async def agent(client, task)'"
                )
                return None
            running = asyncio.ensure_future(call)
            done, _ = await asyncio.wait({running}, timeout=timeout)
            if not done:
                traj.outcome = "timeout"
                traj.error = f"the agent did not return within episode_timeout={timeout} s"
                return None
            if running.cancelled():  # the agent cancelled its own task, not the rollout
                traj.outcome = "agent_error"
                traj.error = "the agent's task was cancelled before it returned an answer"
                return None
            return running.result()
        except Exception as e:
            traj.outcome, traj.error = _agent_failure(e)
            return None
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.wait({running}, timeout=_CANCEL_GRACE_S)
            with contextlib.suppress(Exception):
                await client.close()

    def _record(
        self, traj: Trajectory, records: list[CallRecord], stops: set[int], session: Any
    ) -> None:
        """Fills ``traj`` from the session's calls: conversation, completions, branches,
        metrics, usage and where the session file is."""
        from envkit.gateway.linking import link_calls

        linked = link_calls(records, stop_token_ids=stops)
        ok = [r for r in records if r.ok]
        if linked.branches:
            main = max(linked.branches, key=lambda b: b.calls[-1])
            traj.completions = list(main.completions)
            traj.messages = list(main.messages)
            traj.tools = main.tools
            traj.branches = [list(b.completions) for b in linked.branches if b is not main]
        elif ok:  # no token ids (a hosted API): every answered call, for eval only
            last = ok[-1]
            assert last.message is not None
            traj.messages = [*last.messages, last.message]
            traj.tools = last.tools
            traj.completions = [
                Completion(message=r.message, finish_reason=r.finish_reason)
                for r in ok
                if r.message is not None and r.message.role == "assistant"
            ]
        metrics: dict[str, Any] = dict(linked.metrics())
        metrics["agent/no_model_calls"] = float(not records)
        metrics["agent/failed_calls"] = float(sum(1 for r in records if not r.ok))
        metrics["turns"] = sum(1 for m in traj.messages if m.role == "assistant")
        traj.metrics.update(metrics)
        traj.info["gateway_session"] = str(session.path)
        if linked.untrainable:
            traj.info["untrainable_calls"] = [[i, why] for i, why in linked.untrainable]
        counted = [r for r in ok if r.has_token_ids]
        if counted:
            traj.usage = Usage(
                prompt_tokens=sum(len(r.prompt_token_ids or []) for r in counted),
                completion_tokens=sum(len(r.token_ids or []) for r in counted),
            )


class _SharedTransport:
    """The runner's httpx transport, handed to every episode's client; closing a client leaves
    it open (``AgentRunner.aclose`` closes ``inner``)."""

    @staticmethod
    def make() -> Any:
        import importlib

        import openai

        # openai's own httpx flavour (``httpx``, or ``httpx2`` in newer releases)
        base = openai.DefaultAsyncHttpxClient.__mro__[1]
        httpx = importlib.import_module(base.__module__.partition(".")[0])
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        inner = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)

        class Shared(httpx.AsyncBaseTransport):  # type: ignore[misc,name-defined]
            async def handle_async_request(self, request: Any) -> Any:
                return await inner.handle_async_request(request)

            async def aclose(self) -> None:
                pass

        shared = Shared()
        shared.inner = inner
        return shared


def _agent_task(task: Any) -> Any:
    import copy

    return copy.deepcopy(task)


def _session_id(traj: Trajectory) -> str:
    seed = "x" if traj.seed is None else str(traj.seed).replace("-", "m")
    return f"s{seed}-g{traj.group_index}-{uuid.uuid4().hex[:12]}"


def _check_calls(traj: Trajectory, records: list[CallRecord]) -> None:
    """Upstream failures make the episode ``infra_error``; no call at all, ``agent_error``."""
    upstream = [r for r in records if r.status >= 500]
    if upstream:
        first = upstream[0]
        detail = f"call {first.index} was answered {first.status}: {first.error}"
        was = f" (the agent then failed: {traj.error})" if traj.error else ""
        traj.outcome = "infra_error"
        traj.error = f"the upstream failed during the episode; {detail}{was}"
        return
    if not records and traj.outcome in ("ok", "agent_error"):
        why = (
            "the agent made no model call through its client: an episode that never reaches "
            "the model has nothing to train on. Call the model with the client the agent is "
            "given (await client.chat.completions.create(model=..., messages=...))"
        )
        traj.outcome = "agent_error"
        traj.error = why if traj.error is None else f"{why}; the agent also failed: {traj.error}"


def _agent_failure(e: BaseException) -> tuple[Any, str]:
    """The outcome and error text of an exception the agent raised."""
    import openai

    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    if len(text) > _MAX_TRACEBACK:
        text = "...\n" + text[-_MAX_TRACEBACK:]
    if isinstance(e, InfraError):
        return "infra_error", f"{type(e).__name__} in the agent: {e}\n\n{text}"
    if isinstance(e, openai.APIConnectionError):
        return "infra_error", (
            f"{type(e).__name__} in the agent: the gateway could not be reached ({e})\n\n{text}"
        )
    return "agent_error", f"{type(e).__name__} in the agent: {e}\n\n{text}"


def _classify(e: BaseException, where: str) -> tuple[Any, str]:
    text = str(e) or repr(e)
    kind = "infra_error" if isinstance(e, InfraError) else "env_error"
    return kind, f"{type(e).__name__} in {where}: {text}"


def _jsonable(value: Any) -> Any:
    import json

    if value is None:
        return None
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)
