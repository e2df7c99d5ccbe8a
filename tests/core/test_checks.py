"""``envkit.checks.run_checks``: passes on good envs, fails with a useful detail on broken ones."""

from __future__ import annotations

from typing import Any

import pytest
from core_support import (
    BadToolSchemaEnv,
    CloseTwiceFailsEnv,
    EchoEnv,
    GlobalRandomEnv,
    NonJsonInfoEnv,
    ToolEnv,
)

import envkit
from envkit.checks import CHECKS, run_checks


def _results(env_id: str, **kwargs: Any) -> dict[str, tuple[bool, str]]:
    return {r.name: (r.passed, r.detail) for r in run_checks(env_id, **kwargs)}


@pytest.mark.parametrize("env_id", ["Arithmetic-v0", "envkit/Arithmetic-v0"])
def test_arithmetic_passes_every_check(env_id: str) -> None:
    results = _results(env_id)
    assert list(results) == list(CHECKS)
    assert {name: passed for name, (passed, _) in results.items()} == dict.fromkeys(CHECKS, True)
    assert "check_env passed" in results["gymnasium check_env"][1]


@pytest.mark.parametrize("env_cls", [EchoEnv, ToolEnv], ids=["echo", "tools"])
def test_good_test_envs_pass(clean_registry: None, env_cls: type) -> None:
    envkit.register("GoodTest-v0", entry_point=env_cls)
    results = _results("GoodTest-v0", seeds=[3, 4])
    assert [n for n, (ok, _) in results.items() if not ok] == []
    if env_cls is ToolEnv:
        assert results["tool schemas"][1] == "4 valid tool schema(s)"


@pytest.mark.parametrize(
    ("env_cls", "check", "needle"),
    [
        (GlobalRandomEnv, "determinism by seed", "seed 0: two resets gave different observations"),
        (NonJsonInfoEnv, "JSON-serializable", "step info (seed 0) is not JSON-serializable"),
        (BadToolSchemaEnv, "tool schemas", "tool name 'look up!' is not valid"),
        (CloseTwiceFailsEnv, "close idempotent", "RuntimeError: already closed"),
    ],
    ids=["global-random", "non-json-info", "bad-tool-schema", "close-twice"],
)
def test_broken_envs_fail_with_a_useful_detail(
    clean_registry: None, env_cls: type, check: str, needle: str
) -> None:
    envkit.register("Broken-v0", entry_point=env_cls)
    results = _results("Broken-v0")
    passed, detail = results[check]
    assert not passed
    assert needle in detail
    # The other contract checks are independent of this defect.
    assert results["error messages"][0]


@pytest.mark.parametrize(
    ("schema_patch", "needle"),
    [
        ({"type": "tool"}, "without type=function"),
        ({"function": {"name": "f", "parameters": {"type": "object"}}}, "'f' has no description"),
        (
            {"function": {"name": "f", "description": "d", "parameters": {"type": "array"}}},
            "parameters must be an object",
        ),
        (
            {
                "function": {
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object", "properties": 3},
                }
            },
            "not a valid JSON schema",
        ),
    ],
)
def test_tool_schema_defects(
    clean_registry: None, schema_patch: dict[str, Any], needle: str
) -> None:
    base = {
        "type": "function",
        "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
    }

    class Env(EchoEnv):
        @property
        def tool_schemas(self) -> list[dict[str, Any]]:
            return [{**base, **schema_patch}]

    envkit.register("BadSchema-v0", entry_point=Env)
    passed, detail = _results("BadSchema-v0")["tool schemas"]
    assert not passed and needle in detail


def test_env_that_ignores_max_turns_fails_the_error_check(clean_registry: None) -> None:
    class Endless(EchoEnv):
        def step(self, action: Any) -> Any:
            obs, reward, _, _, info = super().step(action)
            self._done = None
            return obs, reward, False, False, info

    envkit.register("Endless-v0", entry_point=Endless)
    passed, detail = _results("Endless-v0")["error messages"]
    assert not passed and "not over after max_turns=3 turns" in detail


def test_very_long_episodes_do_not_hang_the_checks(clean_registry: None) -> None:
    envkit.register("Long-v0", entry_point=EchoEnv, kwargs={"max_turns": 10**6})
    passed, detail = _results("Long-v0")["error messages"]
    assert passed and "stepping after the end was not tried (max_turns=1000000 > 100)" in detail


def test_env_kwargs_reach_the_checks(clean_registry: None) -> None:
    envkit.register("Kw-v0", entry_point=CloseTwiceFailsEnv)
    assert _results("Kw-v0", env_kwargs={"max_turns": 2})["error messages"][0]


def test_unknown_id_raises_with_suggestion() -> None:
    import gymnasium as gym

    with pytest.raises(gym.error.NameNotFound, match="Did you mean: `Arithmetic`"):
        run_checks("Arithmetc-v0")


def test_garbage_left_by_earlier_code_is_not_blamed_on_the_env(clean_registry: None) -> None:
    """An unclosed socket that earlier code dropped in a reference cycle warns
    (``ResourceWarning``) whenever the garbage collector happens to run: not inside a check."""
    import gc
    import socket

    from envkit.environments.arithmetic import ArithmeticEnv

    class CollectingEnv(ArithmeticEnv):
        def __init__(self, **kwargs: Any) -> None:
            gc.collect()  # the collector runs while the checks record warnings
            super().__init__(**kwargs)

    envkit.register("CollectsGarbage-v0", CollectingEnv)

    class Holder:
        pass

    gc.disable()  # keep the garbage for the env's collection
    try:
        holder = Holder()
        holder.me = holder  # type: ignore[attr-defined]  # a cycle: only gc frees it
        holder.sock = socket.socket()  # type: ignore[attr-defined]  # never closed
        del holder
        results = run_checks("CollectsGarbage-v0", seeds=[0])
    finally:
        gc.enable()
    failed = [(r.name, r.detail) for r in results if not r.passed]
    assert not failed, failed
