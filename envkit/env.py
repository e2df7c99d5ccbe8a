"""``ChatEnv``: a true ``gymnasium.Env`` whose observations are chat conversations.

The observation is the conversation so far, a list of OpenAI-format message dicts; the action is
the assistant's next turn, a string or a message dict with ``content`` and/or ``tool_calls``.
A subclass writes two methods:

* ``make_task(options)``: draw a task with ``self.np_random`` and return its opening messages;
* ``respond(message)``: judge an assistant turn and return a ``Feedback`` (reward, done, replies).

Tool calls are dispatched to the env's ``ToolBox`` (see ``envkit.tools``) when it has one.

Example:
    >>> from envkit.env import ChatEnv, Feedback, Task
    >>> class Echo(ChatEnv):
    ...     def make_task(self, options):
    ...         word = ["cat", "dog"][int(self.np_random.integers(2))]
    ...         return Task(messages=[{"role": "user", "content": f"Say {word}."}], answer=word)
    ...     def respond(self, message):
    ...         ok = (message.content or "").strip() == self.task.answer
    ...         return Feedback(reward=float(ok), done=ok, messages=[] if ok else
    ...                         [{"role": "user", "content": "No, try again."}])
    >>> env = Echo(max_turns=2)
    >>> obs, info = env.reset(seed=1)
    >>> obs[-1]["content"]
    'Say cat.'
    >>> obs, reward, terminated, truncated, info = env.step("cat")
    >>> reward, terminated, truncated
    (1.0, True, False)
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, SupportsFloat, TypeVar

import gymnasium as gym

from envkit._async import to_thread
from envkit.canary import Canary
from envkit.errors import EpisodeOverError
from envkit.spaces import AssistantTurn, Conversation, validate_assistant_turn
from envkit.tools import ToolBox, ToolCallStats
from envkit.types import Message, MessageDict

try:  # voluntary context switches of this thread: did a slow call block, or was it preempted?
    import resource

    _RUSAGE_THREAD: int | None = resource.RUSAGE_THREAD  # Linux
except (ImportError, AttributeError):
    _RUSAGE_THREAD = None

__all__ = ["ChatEnv", "Feedback", "Task"]

MessageLike = Message | Mapping[str, Any]
T = TypeVar("T")
logger = logging.getLogger("envkit")


@dataclass
class Task:
    """One task of an environment: the opening messages and what is needed to check answers.

    Attributes:
        messages: The conversation the model starts from (system and user messages).
        id: A stable identifier of the task (defaults to ``"seed-<seed>"``).
        answer: The reference answer, private to the env (never shown to the model).
        info: JSON-serializable facts about the task, returned in ``reset``'s info.
        reference: The reference answer rewards compare against (JSON: a string, number, list
            ...; ``None``: none). A rollout copies it to ``Trajectory.reference``; the env's
            step info never sets it. ``answer`` stays the env's own (any object).
    """

    messages: Sequence[MessageLike]
    id: str | None = None
    answer: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    reference: Any = None


@dataclass
class Feedback:
    """The env's answer to one assistant turn.

    Attributes:
        reward: The reward of this step.
        done: Whether the episode ended (``terminated=True``).
        messages: Messages the env adds to the conversation (user feedback, tool results).
        info: JSON-serializable facts to return in ``step``'s info.
    """

    reward: float = 0.0
    done: bool = False
    messages: Sequence[MessageLike] = ()
    info: dict[str, Any] = field(default_factory=dict)


class ChatEnv(gym.Env[list[dict[str, Any]], Any]):
    """Base class of multi-turn chat environments.

    Args:
        max_turns: The number of assistant turns after which the episode is truncated. With
            ``max_turns=1`` the env is single-turn: the episode terminates after the answer.
        system_prompt: If given, replaces (or adds) the system message of every task.
        render_mode: ``"ansi"`` (``render()`` returns the conversation as text) or ``"human"``
            (prints it).

    Attributes:
        toolbox: The tools the model may call (empty by default).
        task: The current task (after ``reset``).
        messages: The current conversation as ``Message`` objects.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}
    default_reward: ClassVar[str | None] = None
    """Name of a registered reward (``envkit.rewards``) to score this env with by default;
    ``None`` means the env's own step rewards."""
    step_in_thread: ClassVar[bool | Literal["auto"]] = "auto"
    """Where ``areset``/``astep`` (what rollouts call) run the env's own code.

    * ``"auto"`` (the default): in a worker thread at first, so a blocking env never stalls the
      event loop; once 16 calls in a row did not block, the env class's calls run on the event
      loop, which saves a thread hop (about 0.1 ms) per step. A call blocks when it takes over
      1 ms and waits meanwhile (I/O, a sandbox, a sleep, a lock). One that blocks on the loop
      sends its env class back to worker threads, with a warning, until 4x as many calls in a
      row (64, then 256 ...) did not block. ``reset`` and ``step`` are judged apart; tool calls
      are awaited natively (sync tools in threads); an env that overrides ``step`` itself has
      it run in a thread.
    * ``True``: always in a worker thread (envs that block, such as the sandboxed ones).
    * ``False``: always on the event loop (quick, non-blocking Python)."""

    canaries: ClassVar[tuple[Canary, ...]] = ()
    """Known hacks of this env's kind (``envkit.canary.Canary``): scripted turns that must earn
    no more than the floor. ``envkit validate`` plays each one (see docs/validate.md)."""
    reward_range: ClassVar[tuple[float, float] | None] = None
    """The lowest and highest episode reward, when declared (``envkit validate`` checks that
    rewards stay inside and that the golden path reaches the top; ``None``: 0 to 1)."""

    def __init__(
        self,
        *,
        max_turns: int = 1,
        system_prompt: str | None = None,
        render_mode: str | None = None,
        toolbox: ToolBox | None = None,
    ) -> None:
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive int, got {max_turns!r}")
        if self.step_in_thread not in (True, False, "auto"):
            raise ValueError(
                f"{type(self).__name__}.step_in_thread must be True, False or 'auto', got "
                f"{self.step_in_thread!r}"
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; use one of "
                f"{self.metadata['render_modes']} or None"
            )
        self.max_turns = max_turns
        self.system_prompt = system_prompt
        self.render_mode = render_mode
        self.toolbox = toolbox if toolbox is not None else ToolBox()
        self.observation_space = Conversation()
        self.action_space = AssistantTurn(tool_names=list(self.toolbox.tools))
        self.task: Task | None = None
        self.messages: list[Message] = []
        self._shown: list[MessageDict] = []  # read-only dicts of ``messages``, built once each
        self._shown_of: list[Message] | None = None  # the ``messages`` list they show
        self.turn = 0
        self._done: str | None = None  # why the episode is over, or None while it runs
        self._closed = False

    # ----------------------------------------------------------------- to override
    def make_task(self, options: dict[str, Any] | None) -> Task:
        """Draws a task with ``self.np_random`` and returns it. Subclasses must implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_task(options)")

    def respond(self, message: Message) -> Feedback:
        """Judges an assistant turn without tool calls. Subclasses must implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement respond(message)")

    def after_tools(self, message: Message, results: list[Message]) -> Feedback:
        """Judges a turn whose tool calls were answered by ``results``.

        The default continues the episode with the tool results and reward 0. Override to end
        the episode on a special tool (``submit``) or to shape rewards.
        """
        return Feedback(messages=results)

    def golden(self) -> list[MessageLike] | None:
        """Assistant turns that solve the current task (after ``reset``), or ``None``.

        ``envkit validate`` plays them and expects the env's maximum reward. The default is the
        task's ``reference`` as the reply when it is a string or a number; ``None`` (no golden
        path known) otherwise. Override it when a solution needs another form (a code block,
        a tool call).

        Example:
            >>> import envkit
            >>> env = envkit.make("Arithmetic-v0").unwrapped
            >>> _ = env.reset(seed=0)
            >>> env.golden() == [{"role": "assistant", "content": str(env.task.reference)}]
            True
        """
        ref = self.task.reference if self.task is not None else None
        if isinstance(ref, bool) or not isinstance(ref, (str, int, float)):
            return None
        return [{"role": "assistant", "content": str(ref)}]

    # ----------------------------------------------------------------- properties
    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        """The OpenAI schemas of the tools the model may call (empty if none)."""
        return self.toolbox.schemas

    def observation(self) -> list[dict[str, Any]]:
        """The conversation so far: a new list of read-only OpenAI-format message dicts.

        The list is the caller's; its dicts (``envkit.types.MessageDict``) are shared with the
        later observations of the episode, so they cannot be changed (``dict(m)`` or
        ``copy.deepcopy(obs)`` give mutable copies). Each message is converted once, so a step
        costs the same at turn 100 as at turn 1. ``messages`` only grows during an episode; a
        subclass that rewrites earlier messages assigns a new list to ``self.messages``.
        """
        messages, shown = self.messages, self._shown
        if self._shown_of is not messages or len(shown) > len(messages):
            shown = self._shown = []
            self._shown_of = messages
        if len(shown) < len(messages):
            shown.extend(MessageDict(m) for m in messages[len(shown) :])
        return list(shown)

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Starts an episode on a task drawn from ``seed`` (the same seed gives the same task)."""
        super().reset(seed=seed)
        task = self.make_task(options)
        if not isinstance(task, Task):
            raise TypeError(
                f"{type(self).__name__}.make_task must return an envkit.Task, got "
                f"{type(task).__name__}"
            )
        messages = [Message.coerce(m) for m in task.messages]
        if self.system_prompt is not None:
            messages = [m for m in messages if m.role != "system"]
            messages.insert(0, Message(role="system", content=self.system_prompt))
        if task.id is None:
            task.id = f"seed-{seed}" if seed is not None else None
        self.task = task
        self.messages = messages
        self.turn = 0
        self._done = None
        info = {"task_id": task.id, "turn": 0, **task.info}
        return self.observation(), info

    def step(
        self, action: Any
    ) -> tuple[list[dict[str, Any]], SupportsFloat, bool, bool, dict[str, Any]]:
        """Adds the assistant's turn, lets the env answer, and returns the gymnasium 5-tuple.

        Raises:
            InvalidActionError: the action is not an assistant turn.
            EpisodeOverError: the episode already ended; call ``reset()``.
        """
        message = self._start_step(action)
        stats: ToolCallStats | None = None
        if message.tool_calls:
            results, stats = self.toolbox.call_sync(message.tool_calls)
            feedback = self.after_tools(message, results)
        else:
            feedback = self.respond(message)
        return self._finish_step(feedback, stats)

    def _start_step(self, action: Any) -> Message:
        if self.task is None:
            raise gym.error.ResetNeeded("Call env.reset() before env.step().")
        if self._done is not None:
            raise EpisodeOverError(
                f"The episode is over ({self._done} at turn {self.turn}); call env.reset() to "
                "start a new one."
            )
        message = validate_assistant_turn(action)
        self.messages.append(message)
        self.turn += 1
        return message

    def _finish_step(
        self, feedback: Feedback, stats: ToolCallStats | None
    ) -> tuple[list[dict[str, Any]], float, bool, bool, dict[str, Any]]:
        if not isinstance(feedback, Feedback):
            raise TypeError(
                f"{type(self).__name__} must return an envkit.Feedback from respond/after_tools, "
                f"got {type(feedback).__name__}"
            )
        reward = float(feedback.reward)
        if not math.isfinite(reward):
            raise ValueError(f"{type(self).__name__} returned a non-finite reward {reward}")
        self.messages.extend(Message.coerce(m) for m in feedback.messages)
        out_of_turns = self.turn >= self.max_turns
        # A single-turn env (max_turns=1) is a bandit: its one answer is the whole episode, so it
        # terminates. A multi-turn env that runs out of turns is cut short: truncated.
        terminated = bool(feedback.done) or (out_of_turns and self.max_turns == 1)
        truncated = not terminated and out_of_turns
        if terminated:
            self._done = "terminated"
        elif truncated:
            self._done = "truncated"
        info: dict[str, Any] = {"turn": self.turn, **(stats.as_info() if stats else {})}
        info.update(feedback.info)
        if self.render_mode == "human":
            print(self.render_text())
        return self.observation(), reward, terminated, truncated, info

    async def areset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Async ``reset``: in a worker thread or on the event loop (see ``step_in_thread``)."""
        where = self.step_in_thread
        if where is False:
            return self.reset(seed=seed, options=options)
        if where is True:
            return await to_thread(self.reset, seed=seed, options=options)
        return await _placement(type(self), "reset").run(self.reset, seed=seed, options=options)

    async def astep(
        self, action: Any
    ) -> tuple[list[dict[str, Any]], SupportsFloat, bool, bool, dict[str, Any]]:
        """Async ``step``: in a worker thread or on the event loop (see ``step_in_thread``).

        Off the thread, tool calls are awaited natively (sync tools still run in threads).
        """
        where = self.step_in_thread
        if where is True or (where is not False and type(self).step is not ChatEnv.step):
            return await to_thread(self.step, action)
        message = self._start_step(action)
        stats: ToolCallStats | None = None
        judge: Callable[..., Feedback]
        if message.tool_calls:
            results, stats = await self.toolbox.call(message.tool_calls)
            judge, args = self.after_tools, (message, results)
        else:
            judge, args = self.respond, (message,)
        if where is False:
            feedback = judge(*args)
        else:
            feedback = await _placement(type(self), "step").run(judge, *args)
        return self._finish_step(feedback, stats)

    def render_text(self) -> str:
        """The conversation as readable text."""
        lines = []
        for m in self.messages:
            body = m.content or ""
            if m.tool_calls:
                calls = ", ".join(
                    f"{c.function.name}({c.function.arguments})" for c in m.tool_calls
                )
                body = f"{body}\n  -> {calls}".strip()
            lines.append(f"[{m.role}] {body}")
        return "\n".join(lines)

    def render(self) -> str | None:  # type: ignore[override]
        """Renders per ``render_mode``: ``"ansi"`` returns text, ``"human"`` prints it."""
        if self.render_mode == "ansi":
            return self.render_text()
        if self.render_mode == "human":
            print(self.render_text())
        return None

    @property
    def episode_over(self) -> bool:
        """True once the episode terminated or was truncated."""
        return self._done is not None

    def close(self) -> None:
        """Releases resources; calling it again does nothing."""
        self._closed = True
        super().close()


_QUICK_S = 0.001
"""Under ``step_in_thread="auto"``, a call of the env's code blocks when it takes longer than
this and waits (I/O, a sleep, a lock) meanwhile; without a way to tell, when it takes longer."""
_PROMOTE_AFTER = 16
"""Calls in a row that did not block, in a worker thread, before an env class's calls run on
the event loop."""
_BACKOFF = 4
"""After a call blocked on the loop, this many times more quick calls are needed to go back."""


def _voluntary_switches() -> int:
    """How often this thread waited (I/O, sleep, a lock): 0 where the OS cannot tell."""
    if _RUSAGE_THREAD is None:
        return 0
    return resource.getrusage(_RUSAGE_THREAD).ru_nvcsw


class _Placement:
    """Where one method kind (``reset`` or ``step``) of one env class runs under ``"auto"``."""

    def __init__(self, cls: type, kind: str) -> None:
        self.name = f"{cls.__qualname__}.{kind}"
        self.on_loop = False
        self.needed = _PROMOTE_AFTER  # calls in a row that did not block, before the loop
        self.in_a_row = 0
        self.demotions = 0

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the loop or in a worker thread; learns from its time."""
        if self.on_loop:
            result, blocked, seconds = _timed(fn, *args, **kwargs)
            if blocked:
                self._demote(seconds)
            return result
        result, blocked, seconds = await to_thread(_timed, fn, *args, **kwargs)
        self.in_a_row = 0 if blocked else self.in_a_row + 1
        self.on_loop = self.in_a_row >= self.needed
        return result

    def _demote(self, seconds: float) -> None:
        # Back to threads; a class that blocks now and then (or a loaded machine's stall taken
        # for a block) gets back to the loop after 4x as many quick calls as the last time.
        self.on_loop, self.in_a_row = False, 0
        self.needed *= _BACKOFF
        self.demotions += 1
        logger.log(
            logging.WARNING if self.demotions == 1 else logging.DEBUG,
            "%s blocked the event loop for %.1f ms; it runs in worker threads until %d calls "
            "in a row do not block. Set step_in_thread = True on the env class to always run "
            "it there (or False if it never blocks).",
            self.name,
            seconds * 1e3,
            self.needed,
        )


def _timed(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> tuple[T, bool, float]:
    """``fn()``, whether it blocked (took over ``_QUICK_S`` and waited) and its seconds."""
    waits = _voluntary_switches()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    blocked = seconds > _QUICK_S and (_RUSAGE_THREAD is None or _voluntary_switches() > waits)
    return result, blocked, seconds


_placements: weakref.WeakKeyDictionary[type, dict[str, _Placement]] = weakref.WeakKeyDictionary()


def _placement(cls: type, kind: str) -> _Placement:
    """The placement of ``cls``'s ``kind`` calls (classes made at run time are not kept)."""
    kinds = _placements.get(cls)
    if kinds is None:
        kinds = _placements.setdefault(cls, {})
    placement = kinds.get(kind)
    if placement is None:
        placement = kinds[kind] = _Placement(cls, kind)
    return placement
