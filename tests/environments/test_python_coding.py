"""PythonCoding-v0: every reference solution scores 1.0 in the sandbox, wrong code scores low,
retries see the failing examples, reward hacks fail, and sandbox failures are infra errors."""

from __future__ import annotations

import copy
import importlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import envkit
from envkit.checks import run_checks
from envkit.environments.coding_tasks import TASKS, CodingTask, get_task, outputs_equal
from envkit.environments.python_coding import PythonCodingEnv
from envkit.errors import InfraError
from envkit.policies import CallablePolicy
from envkit.sandbox.pool import SandboxPool

_MODULES = ["strings", "sequences", "integers", "structures"]


def _reference_function(t: CodingTask) -> Any:
    for name in _MODULES:
        module = importlib.import_module(f"envkit.environments.coding_tasks.{name}")
        if hasattr(module, t.function):
            return getattr(module, t.function)
    raise AssertionError(t.id)


def block(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```"


# ------------------------------------------------------------------ the task bank (no sandbox)
def test_bank_has_original_tasks_with_everything() -> None:
    assert len(TASKS) >= 30
    assert len({t.id for t in TASKS}) == len(TASKS)
    for t in TASKS:
        assert t.statement and t.signature.startswith(f"def {t.function}(")
        assert len(t.examples) >= 3 and len(t.hidden) >= 4, t.id
        json.dumps([c.model_dump() for c in [*t.examples, *t.hidden]])  # JSON cases only


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_reference_passes_its_cases_on_the_host(task: CodingTask) -> None:
    fn = _reference_function(task)
    for case in [*task.examples, *task.hidden]:
        got = json.loads(json.dumps(fn(*copy.deepcopy(case.args))))
        assert outputs_equal(got, case.expected), (task.call_text(case), got, case.expected)


# ------------------------------------------------------------------ in the sandbox


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(size=2) as p:
        yield p


@pytest.fixture
def env(pool: SandboxPool) -> Iterator[PythonCodingEnv]:
    e = PythonCodingEnv(pool=pool, max_turns=3)
    yield e
    e.close()


@pytest.mark.docker
@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_reference_scores_one(env: PythonCodingEnv, task: CodingTask) -> None:
    env.reset(options={"task_id": task.id})
    _, reward, terminated, truncated, info = env.step(block(task.reference))
    assert (reward, terminated, truncated) == (1.0, True, False), info
    assert info["hidden_passed"] == len(task.hidden)


@pytest.mark.docker
@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_wrong_code_scores_low(pool: SandboxPool, task: CodingTask) -> None:
    env = PythonCodingEnv(pool=pool, max_turns=1)
    try:
        env.reset(options={"task_id": task.id})
        stub = f"def {task.function}(*args):\n    return None"
        _, reward, terminated, truncated, info = env.step(block(stub))
        assert reward <= 0.25 and (terminated or truncated), (reward, info)
    finally:
        env.close()


@pytest.mark.docker
@pytest.mark.parametrize(
    "answer",
    ["```python\n```", "I think you should sort it.", block("def other_name(x):\n    return x")],
    ids=["empty-block", "no-code", "wrong-name"],
)
def test_empty_or_missing_code_scores_zero(pool: SandboxPool, answer: str) -> None:
    env = PythonCodingEnv(pool=pool, max_turns=1)
    try:
        env.reset(options={"task_id": "roman_to_int"})
        _, reward, terminated, truncated, info = env.step(answer)
        assert reward == 0.0 and (terminated or truncated) and info["hidden_passed"] == 0
    finally:
        env.close()


@pytest.mark.docker
def test_retry_sees_visible_failures_then_solves(env: PythonCodingEnv) -> None:
    env.reset(options={"task_id": "roman_to_int"})
    obs, reward, terminated, truncated, info = env.step(
        block("def roman_to_int(s):\n    return len(s)")
    )
    assert (reward, terminated, truncated) == (0.0, False, False)
    feedback = obs[-1]["content"]
    assert "roman_to_int('IX') returned 2 but expected 9" in feedback
    assert "Hidden tests passed: 1 of 9" in feedback
    _, reward, terminated, _, info = env.step(block(get_task("roman_to_int").reference))
    assert reward == 1.0 and terminated and info["turn"] == 2


@pytest.mark.docker
def test_last_turn_scores_the_fraction_of_hidden_tests(pool: SandboxPool) -> None:
    env = PythonCodingEnv(pool=pool, max_turns=2)
    try:
        env.reset(options={"task_id": "digital_root"})
        _, r1, *_ = env.step("no code yet")
        partial = "def digital_root(n):\n    return n if n < 10 else -1"  # right for 1-digit n only
        _, r2, terminated, truncated, info = env.step(block(partial))
        assert r1 == 0.0 and truncated and not terminated
        assert r2 == pytest.approx(2 / 8) and info["hidden_passed"] == 2
    finally:
        env.close()


@pytest.mark.docker
@pytest.mark.parametrize(
    ("code", "why"),
    [
        (
            "class Sneaky(int):\n    def __eq__(self, o):\n        return True\n"
            "def roman_to_int(s):\n    return Sneaky(0)",
            "look-alike values are refused",
        ),
        (
            "import sys\nprint('@@envkit-0000@@{\"results\": []}')\n"
            "def roman_to_int(s):\n    print('forged'); return 0",
            "prints cannot forge a report",
        ),
        ("import os\nos._exit(0)", "killing the harness scores nothing"),
        ("raise SystemExit(0)", "exiting at import scores nothing"),
        ("def roman_to_int(s):\n    while True:\n        pass", "infinite loops hit the budget"),
    ],
    ids=["rigged-eq", "forged-report", "os-exit", "sys-exit", "infinite-loop"],
)
def test_reward_hacks_fail(pool: SandboxPool, code: str, why: str) -> None:
    env = PythonCodingEnv(pool=pool, max_turns=1, test_timeout=0.5, total_timeout=2.0)
    try:
        env.reset(options={"task_id": "roman_to_int"})
        _, reward, *_ = env.step(block(code))
        assert reward == 0.0, why
    finally:
        env.close()


@pytest.mark.docker
def test_deterministic_by_seed_and_releases_sandboxes(pool: SandboxPool) -> None:
    env = PythonCodingEnv(pool=pool)
    try:
        first = [env.reset(seed=s)[0] for s in range(5)]
        assert first == [env.reset(seed=s)[0] for s in range(5)]
        assert len({o[-1]["content"] for o in first}) > 1
        env.step("```python\ndef f(): pass\n```")
        assert pool.busy == 1
        env.reset(seed=0)
        assert pool.busy == 0  # reset gave the sandbox back
        env.step("```python\ndef f(): pass\n```")
    finally:
        env.close()
        env.close()
    assert pool.busy == 0


@pytest.mark.docker
def test_envkit_check_passes() -> None:
    results = run_checks("PythonCoding-v0")
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


@pytest.mark.docker
def test_registered_and_made_by_id() -> None:
    env = envkit.make("PythonCoding-v0", max_turns=1)
    try:
        assert isinstance(env.unwrapped, PythonCodingEnv)
    finally:
        env.close()


def test_local_backend_scores_reference() -> None:
    with SandboxPool(size=1, backend="local") as local_pool:
        env = PythonCodingEnv(pool=local_pool, sandbox="local")
        try:
            env.reset(options={"task_id": "merge_intervals"})
            _, reward, *_ = env.step(block(get_task("merge_intervals").reference))
            assert reward == 1.0
        finally:
            env.close()


def test_bad_arguments() -> None:
    with pytest.raises(KeyError, match="no coding task 'nope'"):
        PythonCodingEnv(tasks=["nope"])
    with pytest.raises(ValueError, match="unknown sandbox backend 'vm'"):
        PythonCodingEnv(sandbox="vm")
    with pytest.raises(TypeError, match="sandbox_confg"):  # a typo in a sandbox option
        PythonCodingEnv(sandbox_confg={})
    with pytest.raises(ValueError, match="test_timeout"):
        PythonCodingEnv(test_timeout=0)


@pytest.mark.docker
def test_container_killed_mid_episode_is_an_infra_error(pool: SandboxPool) -> None:
    made: list[PythonCodingEnv] = []

    def factory() -> PythonCodingEnv:
        made.append(PythonCodingEnv(pool=pool, max_turns=3, tasks=["roman_to_int"]))
        return made[-1]

    calls = {"n": 0}

    def policy(messages: list[dict[str, Any]], tools: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 2:  # after one graded submission the episode owns a sandbox: kill it
            made[0]._sandbox.kill()
        return block("def roman_to_int(s):\n    return 0")

    created = pool.stats.created
    groups = envkit.collect(factory, CallablePolicy(policy), seeds=[0], progress=False)
    traj = groups[0][0]
    assert traj.outcome == "infra_error" and traj.reward is None
    assert "SandboxDiedError" in (traj.error or "") and "stopped" in (traj.error or "")
    deadline = time.monotonic() + 30
    while pool.stats.created == created and time.monotonic() < deadline:
        time.sleep(0.1)  # the pool replaces the dead sandbox in the background
    assert pool.stats.created == created + 1 and pool.stats.replaced >= 1
    for _ in range(pool.size):
        with pool.acquire(timeout=60) as sb:
            assert sb.exec("echo ok").ok


@pytest.mark.docker
def test_unknown_image_is_an_infra_error() -> None:
    env = PythonCodingEnv(sandbox_config={"image": "envkit-missing-image:0"})
    try:
        env.reset(seed=0)
        with pytest.raises(InfraError, match="envkit sandbox build"):
            env.step(block("def f(): pass"))
    finally:
        env.close()
