"""``run_calls``: the one sandbox-side grading harness behind ``code_tests`` and
``PythonCoding-v0``, in both of its runner modes (a fresh interpreter per test, or with
``reuse_runner`` one forked runner that takes the call tests in turn).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from envkit.rewards.verifiable.code import CodeTest, _script, run_calls

pytestmark = pytest.mark.docker

# A counter in the module: 1, 2, 3... when one process answers every call.
COUNTER = "calls = []\ndef count():\n    calls.append(1)\n    return len(calls)\n"
SLOW_ONCE = COUNTER + "def slow():\n    while True:\n        pass\n"
# Tries to read the grader's stdin, where the later tests' inputs wait.
PROBE = (
    "import os\ndef probe():\n    try:\n"
    "        fd = os.open('/proc/%d/fd/0' % os.getppid(), os.O_RDONLY)\n"
    "        return 'read: ' + os.read(fd, 1 << 20).decode('utf-8', 'replace')\n"
    "    except OSError as e:\n        return 'denied: ' + type(e).__name__\n"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    from envkit.sandbox import DockerSandbox

    sb = DockerSandbox()
    yield sb
    sb.close()


def count(n: int = 1) -> list[CodeTest]:
    return [CodeTest(call="count", expected=1)] * n


@pytest.mark.parametrize(("reuse", "values"), [(True, [1, 2, 3]), (False, [1, 1, 1])])
def test_reuse_runner_keeps_one_process(sandbox: Any, reuse: bool, values: list[int]) -> None:
    results = run_calls(sandbox, COUNTER, count(3), test_timeout=2.0, reuse_runner=reuse)
    assert [r.value for r in results] == values
    assert [r.passed for r in results] == [v == 1 for v in values]


def test_a_runner_that_times_out_is_replaced(sandbox: Any) -> None:
    tests = [*count(2), CodeTest(call="slow", expected=0), *count()]
    results = run_calls(sandbox, SLOW_ONCE, tests, test_timeout=0.5, reuse_runner=True)
    assert [r.value for r in results[:2]] == [1, 2]
    assert results[2].error == "timed out" and not results[2].load_error
    assert results[3].passed and results[3].value == 1  # a fresh runner, the code reloaded


@pytest.mark.parametrize("reuse", [True, False])
def test_load_errors_are_marked(sandbox: Any, reuse: bool) -> None:
    broken = run_calls(sandbox, "def count(:\n", count(2), test_timeout=2.0, reuse_runner=reuse)
    assert all(r.load_error and "SyntaxError" in (r.error or "") for r in broken), broken
    tests = [CodeTest(call="missing", expected=1), *count()]
    missing, ok = run_calls(sandbox, COUNTER, tests, test_timeout=2.0, reuse_runner=reuse)
    assert (
        missing.load_error and missing.error == "the code does not define a function named missing"
    )
    assert ok.passed and not ok.load_error


def test_a_kept_runner_cannot_read_the_later_inputs(sandbox: Any) -> None:
    tests = [CodeTest(call="probe", expected=""), CodeTest(call="probe", args=[], expected="")]
    results = run_calls(sandbox, PROBE, tests, test_timeout=2.0, reuse_runner=True)
    assert [r.value for r in results] == ["denied: PermissionError"] * 2, results


def test_snippets_after_kept_calls_get_a_fresh_interpreter(sandbox: Any) -> None:
    tests: list[str | CodeTest] = [*count(2), "assert count() == 1", *count()]
    results = run_calls(sandbox, COUNTER, tests, test_timeout=2.0, reuse_runner=True)
    # The second call is the kept runner's second (2); the snippet sees a fresh count, and so
    # does the call after it (no runner is forked once a snippet was read).
    assert [r.passed for r in results] == [True, False, True, True], results
    assert results[1].value == 2 and results[3].value == 1


def test_scripts_are_self_contained() -> None:
    for name in ("_code_calls.py", "_code_snippets.py"):
        source = _script(name)
        assert not re.search(r"^from \.|^import envkit|^from envkit", source, re.M), name
        assert "def _prctl(" in source and "def _kill_all(" in source
        compile(source, name, "exec")
