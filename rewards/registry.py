"""Named rewards: ``@reward`` registers a function, ``get(name)`` finds it again.

A *per-trajectory* reward is ``fn(trajectory, **kwargs) -> float | None``; a *group* reward
(``@reward(group=True)``) is ``fn(group) -> list[float | None]``. Both may be ``async``.
``None`` means "unknown / not applicable", never 0. The keyword arguments a per-trajectory reward
declares are filled from, in order of precedence, the options bound with ``Reward.bind`` and the
trajectory: a parameter named ``answer`` (the reference answer) from ``Trajectory.reference``
only (the task's reference, or a TRL dataset's ``answer`` column), any other from the
trajectory's ``info`` (the env's last info and the other TRL columns). ``info["answer"]`` is never
read as the reference: an env may put the model's own answer there.

``@reward`` returns the function itself (so it stays a plain, testable function); the registry
holds a ``Reward`` wrapper that ``get(name)`` returns.

Example:
    >>> from envkit.rewards import reward, get
    >>> from envkit.types import Message, Trajectory
    >>> @reward(name="doc_says_hi", override=True)
    ... def says_hi(trajectory, greeting: str = "hi") -> float:
    ...     return float(greeting in (trajectory.messages[-1].content or ""))
    >>> traj = Trajectory(env_id="x", messages=[Message(role="assistant", content="hi!")])
    >>> get("doc_says_hi").score_trajectory_sync(traj)
    1.0
    >>> get("doc_says_hi").bind(greeting="bye").score_trajectory_sync(traj)
    0.0
    >>> unregister("doc_says_hi")
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import importlib
import importlib.metadata
import inspect
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

from envkit._async import run_sync, to_thread
from envkit.rewards.base import BaseScorer
from envkit.rewards.result import GroupScores, describe_error
from envkit.types import Trajectory, TrajectoryGroup

if TYPE_CHECKING:
    from envkit.rewards.scoring import Scorer

__all__ = [
    "ENTRY_POINT_GROUP",
    "Reward",
    "default_reward_for",
    "get",
    "list_rewards",
    "register",
    "reward",
    "set_default_reward",
    "unregister",
]

REFERENCE_PARAM = "answer"
"""The reward parameter filled from ``Trajectory.reference`` (never from ``info``)."""

ENTRY_POINT_GROUP = "envkit.rewards"
"""Entry-point group through which installed packages add rewards (name -> ``module:attr``)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")
_REGISTRY: dict[str, Scorer] = {}
_ENV_DEFAULTS: dict[str, str] = {}
_ATTR = "__envkit_reward__"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid reward name {name!r}: use 1-128 characters of letters, digits and _ . : / - "
            "(starting with a letter, digit or _)"
        )
    return name


def _is_async(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with an async __call__
    )


def check_value(value: Any, name: str) -> tuple[float | None, str | None]:
    """A reward's value as ``(float or None, error or None)``; NaN, inf, non-numbers are errors."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return float(value), None
    if isinstance(value, (int, float)) or hasattr(value, "__float__"):
        try:
            v = float(value)
        except (TypeError, ValueError) as e:
            return None, f"reward {name!r} returned {value!r}, not a number: {e}"
        if math.isfinite(v):
            return v, None
        return None, f"reward {name!r} returned {v}; return None when the reward is unknown"
    return None, (
        f"reward {name!r} returned {value!r} ({type(value).__name__}); a reward must return a "
        "float or None"
    )


class Reward(BaseScorer):
    """A named reward function with options bound to it.

    Args:
        fn: ``fn(trajectory, **kwargs) -> float | None`` (or, with ``group=True``,
            ``fn(group) -> list[float | None]``); sync or async.
        name: Registry and breakdown name (default: the function's name).
        group: Whether ``fn`` scores a whole ``TrajectoryGroup`` at once.
        inline: Run a sync ``fn`` directly on the event loop instead of in a worker thread
            (for fast, pure functions; the bundled verifiable rewards use it).
        timeout_s: Seconds after which one call is abandoned and recorded as an error.
        options: Keyword arguments bound to every call.

    Raises:
        TypeError: ``fn`` is not callable, takes no positional argument, or an option is not one
            of its parameters.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        group: bool = False,
        inline: bool = False,
        timeout_s: float | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"a reward must be callable, got {type(fn).__name__}")
        base = fn.func if isinstance(fn, functools.partial) else fn
        self.fn = fn
        if name is None:  # a default from the function's name ("<lambda>" -> "lambda")
            name = re.sub(r"[^A-Za-z0-9_.:/-]", "", getattr(base, "__name__", "")) or "reward"
        self.name = _check_name(name)
        self.group = bool(group)
        self.inline = bool(inline)
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.is_async = _is_async(fn)
        self.__doc__ = getattr(base, "__doc__", None)
        params = list(inspect.signature(fn).parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not params or params[0].kind not in positional:
            what = "group" if group else "trajectory"
            raise TypeError(
                f"reward {self.name!r}: the first parameter must take the {what} positionally, "
                f"e.g. def {self.name}({what}, ...)"
            )
        self._keywords = {
            p.name
            for p in params[1:]
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        self._var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        self._first = params[0].name
        self.options: dict[str, Any] = {}
        self._set_options(options or {})

    def _set_options(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - self._keywords) if not self._var_kw else []
        if unknown:
            raise TypeError(
                f"reward {self.name!r} has no parameter(s) {unknown}; it accepts "
                f"{sorted(self._keywords) or 'no keyword arguments'}"
            )
        self.options.update(options)

    def bind(self, **options: Any) -> Reward:
        """A copy with ``options`` bound (they override earlier options and the trajectory info)."""
        out = self._copy()
        out._set_options(options)
        return out

    def _check_name(self, name: str) -> str:
        return _check_name(name)

    def _copy(self) -> Reward:
        out: Reward = super()._copy()
        out.options = dict(self.options)
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the function with the bound options (a direct call; errors propagate)."""
        return self.fn(*args, **{**self.options, **kwargs})

    def __repr__(self) -> str:
        kind = "group" if self.group else "trajectory"
        opts = f", options={self.options}" if self.options else ""
        return f"Reward({self.name!r}, {kind}{opts})"

    def kwargs_for(self, trajectory: Trajectory) -> dict[str, Any]:
        """The keyword arguments of a call on ``trajectory``: bound options over its reference
        (as ``answer``) and its info (every other parameter)."""
        data = {k: v for k, v in trajectory.info.items() if k != REFERENCE_PARAM}
        if trajectory.reference is not None:
            data[REFERENCE_PARAM] = trajectory.reference
        wanted = data if self._var_kw else (k for k in self._keywords if k in data)
        kwargs = {k: data[k] for k in wanted if k != self._first}
        kwargs.update(self.options)
        return kwargs

    async def _run(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            call: Any = self.fn(*args, **kwargs)
        elif self.inline:
            return self.fn(*args, **kwargs)
        else:
            call = to_thread(self.fn, *args, **kwargs)
        if self.timeout_s is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"reward {self.name!r} took longer than {self.timeout_s} s"
            ) from None

    async def score_trajectory(self, trajectory: Trajectory) -> float | None:
        """The reward of one trajectory (a per-trajectory reward only); errors propagate."""
        if self.group:
            raise TypeError(f"{self!r} scores whole groups; use score_group")
        value, error = check_value(
            await self._run(trajectory, **self.kwargs_for(trajectory)), self.name
        )
        if error is not None:
            raise ValueError(error)
        return value

    def score_trajectory_sync(self, trajectory: Trajectory) -> float | None:
        """``score_trajectory`` for synchronous code."""
        return run_sync(self.score_trajectory(trajectory))

    async def _one(self, trajectory: Trajectory) -> tuple[float | None, str | None]:
        try:
            raw = await self._run(trajectory, **self.kwargs_for(trajectory))
        except Exception as e:
            return None, describe_error(e, f"reward {self.name!r}")
        return check_value(raw, self.name)

    async def evaluate(self, group: TrajectoryGroup) -> GroupScores:
        """Scores a group without changing it; failed episodes are not scored (``None``)."""
        n = len(group)
        scores = GroupScores.empty(n)
        live = [i for i, t in enumerate(group) if not t.failed]
        if not live:
            return scores
        if self.group:
            values, error = await self._group_values(group)
            scores.group_error = error
            results = [(values[i], error) for i in live]
        else:
            results = await asyncio.gather(*(self._one(group[i]) for i in live))
        for i, (value, error) in zip(live, results, strict=True):
            scores.totals[i] = value
            scores.breakdown[i] = {self.name: value}
            if error is not None:
                scores.errors[i] = {self.name: error}
        return scores

    async def _group_values(self, group: TrajectoryGroup) -> tuple[list[float | None], str | None]:
        n = len(group)
        try:
            raw = await self._run(group, **self.options)
        except Exception as e:
            return [None] * n, describe_error(e, f"group reward {self.name!r}")
        if not isinstance(raw, (list, tuple)) or len(raw) != n:
            got = f"{len(raw)} values" if isinstance(raw, (list, tuple)) else repr(raw)
            return [None] * n, (
                f"group reward {self.name!r} returned {got} for a group of {n}; return one "
                "float or None per trajectory, in the group's order"
            )
        checked = [check_value(v, self.name) for v in raw]
        bad = next((err for _, err in checked if err), None)
        if bad:
            return [None] * n, bad
        return [v for v, _ in checked], None


@overload
def reward(fn: Callable[..., Any], /) -> Callable[..., Any]: ...
@overload
def reward(
    *,
    name: str | None = None,
    group: bool = False,
    inline: bool = False,
    timeout_s: float | None = None,
    override: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...
def reward(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    group: bool = False,
    inline: bool = False,
    timeout_s: float | None = None,
    override: bool = False,
) -> Any:
    """Registers a reward function under ``name`` and returns the function unchanged.

    Use bare (``@reward``) or with options (``@reward(name="x", group=True)``); see ``Reward``
    for the options. ``get(name)`` returns the registered ``Reward``.

    Raises:
        ValueError: another function is already registered under the name (pass
            ``override=True`` to replace it).
    """

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        wrapped = Reward(f, name=name, group=group, inline=inline, timeout_s=timeout_s)
        register(wrapped, override=override)
        with contextlib.suppress(AttributeError, TypeError):  # builtins refuse attributes
            setattr(f, _ATTR, wrapped)
        return f

    return decorate(fn) if fn is not None else decorate


def _same_function(a: Any, b: Any) -> bool:
    fa, fb = getattr(a, "fn", a), getattr(b, "fn", b)
    key = ("__module__", "__qualname__")
    return all(getattr(fa, k, None) == getattr(fb, k, None) for k in key) and (
        getattr(a, "options", None) == getattr(b, "options", None)
    )


def register(scorer: Any, name: str | None = None, *, override: bool = False) -> str:
    """Registers a ``Reward``, ``Rubric``, ``RulerJudge`` or function under ``name``.

    Returns:
        The name it was registered under.

    Raises:
        ValueError: the name is taken by something else and ``override`` is false.
    """
    from envkit.rewards.scoring import as_scorer

    obj = as_scorer(scorer)
    if name is not None and name != obj.name:
        obj = obj.with_name(name)
    key = _check_name(obj.name)
    existing = _REGISTRY.get(key)
    if existing is not None and not override and not _same_function(existing, obj):
        raise ValueError(
            f"a reward named {key!r} is already registered ({existing!r}); pick another name "
            "or pass override=True"
        )
    _REGISTRY[key] = obj
    return key


def unregister(name: str) -> None:
    """Removes a registered reward (``KeyError`` if there is none)."""
    del _REGISTRY[name]


def _from_entry_point(name: str) -> Scorer | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            obj = ep.load()
            register(getattr(obj, _ATTR, obj), name, override=True)
            return _REGISTRY[name]
    return None


def get(name: str) -> Scorer:
    """The reward registered under ``name`` (bundled, ``@reward``-decorated or a plug-in's).

    Raises:
        KeyError: nothing is registered under ``name``; the message lists close names.
    """
    if not isinstance(name, str):
        raise TypeError(f"a reward name must be a string, got {type(name).__name__}")
    found = _REGISTRY.get(name) or _from_entry_point(name)
    if found is None:
        close = difflib.get_close_matches(name, list_rewards(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(
            f"no reward named {name!r}{hint} (envkit.rewards.list_rewards() lists them; "
            "register yours with @envkit.rewards.reward)"
        )
    return found


def list_rewards() -> list[str]:
    """The names of all registered rewards, sorted (plug-ins' entry points included)."""
    names = set(_REGISTRY)
    names.update(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def set_default_reward(env_id: str, reward_name: str | None) -> None:
    """Declares ``reward_name`` the default reward of ``env_id`` (``None`` removes it)."""
    from envkit.registration import full_id

    if reward_name is None:
        _ENV_DEFAULTS.pop(full_id(env_id), None)
    else:
        _ENV_DEFAULTS[full_id(env_id)] = _check_name(reward_name)


def default_reward_for(env: Any) -> str | None:
    """The default reward name of an env id, env class or env instance, or ``None``.

    Looks at ``set_default_reward`` declarations first, then at the env class's
    ``default_reward`` attribute (a registered reward name). An env id's class is imported from
    its entry point but not instantiated.

    Example:
        >>> from envkit.rewards import default_reward_for, set_default_reward
        >>> set_default_reward("MyEnv-v0", "numeric_match")
        >>> default_reward_for("MyEnv-v0")
        'numeric_match'
        >>> set_default_reward("MyEnv-v0", None)
    """
    if isinstance(env, str):
        from envkit.registration import full_id, spec

        fid = full_id(env)
        if fid in _ENV_DEFAULTS:
            return _ENV_DEFAULTS[fid]
        entry = spec(fid).entry_point
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
        env = entry
    spec = getattr(env, "spec", None)
    if not isinstance(env, type):
        env = getattr(env, "unwrapped", env)
    if spec is not None and getattr(spec, "id", None) in _ENV_DEFAULTS:
        return _ENV_DEFAULTS[spec.id]
    name = getattr(env, "default_reward", None)
    return name if isinstance(name, str) and name else None
