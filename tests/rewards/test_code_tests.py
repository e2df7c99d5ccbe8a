"""``code_tests``: unit tests of the model's code, run in a real Docker sandbox."""

from __future__ import annotations

import os

import pytest

from envkit.rewards import get, score_groups
from envkit.types import Message, Trajectory, TrajectoryGroup

pytestmark = pytest.mark.docker

TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add(10, 5) == 15"]


def solution(code: str) -> Trajectory:
    text = f"Here is my solution:\n```python\n{code}\n```\nIt works."
    return Trajectory(env_id="e", messages=[Message(role="assistant", content=text)])


@pytest.fixture(scope="module")
def sandbox():
    from envkit.sandbox import DockerSandbox

    sb = DockerSandbox()
    yield sb
    sb.close()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("def add(a, b):\n    return a + b", 1.0),
        ("def add(a, b):\n    return a + b if a > 0 else 99", 2 / 3),
        ("def add(a, b):\n    return None", 0.0),
        ("import os\nos._exit(0)", 0.0),  # exiting 0 before the tests run passes nothing
        ("import sys\nsys.exit(0)", 0.0),
        ("def add(a, b):\n    while True: pass", 0.0),  # each test times out
        ("syntax error here(", 0.0),
    ],
)
def test_pass_fraction(sandbox, code: str, expected: float) -> None:
    r = get("code_tests").bind(sandbox=sandbox, tests=TESTS, timeout_s=1.0)
    assert r.score_trajectory_sync(solution(code)) == pytest.approx(expected)


def test_tests_from_info_and_missing_tests_is_an_error(sandbox) -> None:
    good = solution("def add(a, b):\n    return a + b")
    good.info = {"tests": TESTS[:1]}
    bare = solution("def add(a, b):\n    return a + b")
    g = TrajectoryGroup(env_id="e", trajectories=[good, bare])
    report = score_groups(g, get("code_tests").bind(sandbox=sandbox))
    assert g.rewards == [1.0, None] and report.errors == 1
    assert "needs a list of test snippets" in g[1].metrics["reward_errors"]["code_tests"]


def test_own_sandbox_is_started_and_removed() -> None:
    import docker

    client = docker.from_env()
    mine = {"label": f"envkit.owner_pid={os.getpid()}"}  # other processes use the daemon too
    before = {c.id for c in client.containers.list(all=True, filters=mine)}
    traj = solution("def add(a, b):\n    return a + b")
    r = get("code_tests").bind(tests=TESTS)
    assert r.score_trajectory_sync(traj) == 1.0
    after = {c.id for c in client.containers.list(all=True, filters=mine)}
    assert after <= before  # no leaked container
