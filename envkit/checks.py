"""``envkit check``: gymnasium's ``check_env`` plus envkit's own contract checks.

Example:
    >>> from envkit.checks import run_checks
    >>> results = run_checks("Arithmetic-v0")
    >>> all(r.passed for r in results)
    True
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any

from envkit.env import ChatEnv
from envkit.errors import EpisodeOverError, InvalidActionError
from envkit.registration import full_id, make, spec

__all__ = ["CheckResult", "run_checks"]

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class CheckResult:
    """The outcome of one check."""

    name: str
    passed: bool
    detail: str = ""


class _Failed(Exception):
    pass


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _Failed(message)


def _json_ok(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise _Failed(f"{what} is not JSON-serializable: {e}") from e


def _make(env_id: str, kwargs: dict[str, Any]) -> ChatEnv:
    env = make(env_id, **kwargs).unwrapped
    _require(isinstance(env, ChatEnv), f"{env_id} makes a {type(env).__name__}, not a ChatEnv")
    return env  # type: ignore[return-value]


@contextmanager
def _recording_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Records the warnings raised inside, but not ``ResourceWarning``: those are raised when the
    garbage collector happens to free an unclosed socket or file, which may be garbage left by
    any earlier code, so they cannot be blamed on the env (collecting first would cost ~1 s a
    check in a large process)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)
        yield caught


def _check_make(env_id: str, kwargs: dict[str, Any], seeds: list[int]) -> str:
    with _recording_warnings() as caught:
        env = make(env_id, **kwargs)
        try:
            env.reset(seed=seeds[0])
            env.step(env.action_space.sample())
        finally:
            env.close()
    messages = [str(w.message) for w in caught]
    _require(not messages, "gymnasium.make / passive checker warned: " + " | ".join(messages))
    return "no passive-checker warnings"


def _check_env(env_id: str, kwargs: dict[str, Any], seeds: list[int]) -> str:
    from gymnasium.utils.env_checker import check_env

    env = _make(env_id, kwargs)
    try:
        # check_env renders in every render mode; "human" would print into our report.
        with _recording_warnings() as caught, redirect_stdout(io.StringIO()):
            check_env(env, skip_render_check=False)
    finally:
        env.close()
    messages = [str(w.message) for w in caught]
    _require(not messages, "check_env warned: " + " | ".join(messages))
    return "gymnasium.utils.env_checker.check_env passed"


def _check_determinism(env_id: str, kwargs: dict[str, Any], seeds: list[int]) -> str:
    a, b = _make(env_id, kwargs), _make(env_id, kwargs)
    try:
        for seed in seeds:
            obs_a, info_a = a.reset(seed=seed)
            obs_b, info_b = b.reset(seed=seed)
            _require(obs_a == obs_b, f"seed {seed}: two resets gave different observations")
            _require(info_a == info_b, f"seed {seed}: two resets gave different infos")
            action = "I am not sure."
            step_a, step_b = a.step(action), b.step(action)
            _require(step_a == step_b, f"seed {seed}: the same action gave different step results")
    finally:
        a.close()
        b.close()
    return f"same seed -> same task, observation and step for seeds {seeds}"


def _check_json(env_id: str, kwargs: dict[str, Any], seeds: list[int]) -> str:
    env = _make(env_id, kwargs)
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            _json_ok(obs, f"reset observation (seed {seed})")
            _json_ok(info, f"reset info (seed {seed})")
            env.action_space.seed(seed)
            out = env.step(env.action_space.sample())
            _json_ok(out[0], f"step observation (seed {seed})")
            _json_ok(out[4], f"step info (seed {seed})")
    finally:
        env.close()
    return "observations and infos are JSON-serializable"


def _check_tools(env_id: str, kwargs: dict[str, Any], seeds: list[int]) -> str:
    env = _make(env_id, kwargs)
    try:
        schemas = env.tool_schemas
    finally:
        env.close()
    names = set()
    for s in schemas:
        _require(s.get("type") == "function", f"tool schema without type=function: {s}")
        fn = s.get("function", {})
        name = fn.get("name", "")
        _require(bool(_TOOL_NAME.match(name)), f"tool name {name!r} is not valid for the API")
        _require(name not in names, f"two tools are named {name!r}")
        names.add(name)
        _require(bool(fn.get("description")), f"tool {name!r} has no description")
        params = fn.get("parameters", {})
        _require(params.get("type") == "object", f"tool {name!r}: parameters must be an object")
        try:
            import jsonschema

            jsonschema.Draft202012Validator.check_schema(params)
        except ImportError:
            pass
        except Exception as e:
            raise _Failed(f"tool {name!r}: parameters are not a valid JSON schema: {e}") from e
        _json_ok(s, f"tool {name!r} schema")
    return f"{len(schemas)} valid tool schema(s)" if schemas else "no tools"


_MAX_CHECK_TURNS = 100


def _check_errors(env_id: str, kwargs: dict[str, Any], seeds: list[int]) -> str:
    env = _make(env_id, kwargs)
    try:
        env.reset(seed=seeds[0])
        try:
            env.step(12345)
            raise _Failed("step(12345) did not raise InvalidActionError")
        except InvalidActionError:
            pass
        turns = min(env.max_turns, _MAX_CHECK_TURNS)
        for _ in range(turns):
            *_, terminated, truncated, _info = env.step("I am not sure.")
            if terminated or truncated:
                break
        if not (terminated or truncated) and env.max_turns > _MAX_CHECK_TURNS:
            return (
                f"bad actions raise InvalidActionError; stepping after the end was not tried "
                f"(max_turns={env.max_turns} > {_MAX_CHECK_TURNS})"
            )
        _require(terminated or truncated, f"not over after max_turns={env.max_turns} turns")
        try:
            env.step("again")
            raise _Failed("stepping after the episode ended did not raise EpisodeOverError")
        except EpisodeOverError:
            pass
    finally:
        env.close()
    return "bad actions and steps after the end raise errors that say what to do"


def _check_close(env_id: str, kwargs: dict[str, Any], seeds: list[int]) -> str:
    env = _make(env_id, kwargs)
    env.reset(seed=seeds[0])
    env.close()
    env.close()
    return "close() twice is fine"


CHECKS: dict[str, Callable[[str, dict[str, Any], list[int]], str]] = {
    "make without warnings": _check_make,
    "gymnasium check_env": _check_env,
    "determinism by seed": _check_determinism,
    "JSON-serializable": _check_json,
    "tool schemas": _check_tools,
    "error messages": _check_errors,
    "close idempotent": _check_close,
}


def run_checks(
    env_id: str, env_kwargs: dict[str, Any] | None = None, seeds: list[int] | None = None
) -> list[CheckResult]:
    """Runs every check on a registered env and returns one result per check.

    Raises:
        gymnasium.error.Error: the id is not registered (with suggestions of close names).
    """
    fid = full_id(env_id)
    spec(fid)  # unknown ids fail here, with gymnasium's suggestions
    kwargs = dict(env_kwargs or {})
    seeds = list(seeds or [0, 1, 2])
    results = []
    for name, fn in CHECKS.items():
        try:
            results.append(CheckResult(name, True, fn(fid, kwargs, seeds)))
        except _Failed as e:
            results.append(CheckResult(name, False, str(e)))
        except Exception as e:
            results.append(CheckResult(name, False, f"{type(e).__name__}: {e}"))
    return results
