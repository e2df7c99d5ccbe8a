"""Every bundled env holds under ``envkit validate`` (fast settings), and a few reasoning-gym ids.

The sandboxed envs (PythonCoding, PythonTools) run their probes in Docker sandboxes.
"""

from __future__ import annotations

from typing import Any

import pytest

import envkit
from envkit.environments._sandboxed import SandboxedEnv
from envkit.registration import BUNDLED, full_id
from envkit.testing import assert_env_holds

FAST: dict[str, dict[str, Any]] = {
    "PythonCoding-v0": {"max_turns": 1},  # the golden path and every hack need one turn
    "PythonTools-v0": {"max_turns": 4},  # tool abuse plays 4 stages; golden needs 2 turns
}
"""Env kwargs that keep the validation fast (the reward logic is unchanged)."""

RG_IDS = [
    "rg-basic_arithmetic-v0",
    "rg-chain_sum-v0",
    "rg-leg_counting-v0",
    "rg-word_sorting-v0",
    # found by validate: reasoning-gym's scorer paid any non-empty answer / raised on malformed
    "rg-game_of_life_halting-v0",
    "rg-prime_factorization-v0",
]


def _sandboxed(env_id: str) -> bool:
    module, _, name = BUNDLED[env_id][0].partition(":")
    import importlib

    return issubclass(getattr(importlib.import_module(module), name), SandboxedEnv)


def _params() -> list[Any]:
    out = []
    for env_id in sorted(BUNDLED):
        marks = [pytest.mark.docker] if _sandboxed(env_id) else []
        out.append(pytest.param(env_id, marks=marks, id=env_id))
    return out


@pytest.mark.parametrize("env_id", _params())
def test_bundled_env_holds(env_id: str) -> None:
    sandboxed = _sandboxed(env_id)
    report = assert_env_holds(
        env_id, env_kwargs=FAST.get(env_id), episodes=2 if sandboxed else 4, require_golden=True
    )
    assert report.golden_status == "reaches max"
    names = {p.name for p in report.probes}
    assert {"hygiene:leak", "hygiene:determinism", "hygiene:range", "hygiene:isolation"} <= names
    canaries = type(envkit.make_chat_env(full_id(env_id), **FAST.get(env_id, {}))).canaries
    assert {f"canary:{c.name}" for c in canaries} <= names
    if sandboxed:  # the known hacks of its kind are declared, and each earned nothing
        assert canaries
        assert all(p.status == "pass" for p in report.probes if p.kind == "canary")


@pytest.mark.parametrize("env_id", RG_IDS)
def test_reasoning_gym_envs_hold(env_id: str) -> None:
    report = assert_env_holds(env_id, episodes=3, require_golden=True)
    assert report.golden == 1.0
