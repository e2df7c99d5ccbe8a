"""``code_tests``: the fraction of unit tests the model's code passes, run in an envkit sandbox.

The code is the final response's last Python code block, or the whole response when it is bare
Python code (``envkit.parsing.extract_code``); a response without code scores 0.0. Tests come in
two forms (structured tests and assert snippets, which may be mixed), graded three ways:

* **structured** (sound): ``{"call": "add", "args": [2, 3], "expected": 5}`` (a dict or a
  ``CodeTest``; ``kwargs`` too). Each test starts a fresh interpreter that loads a fresh copy of
  the code with ``/dev/null`` for its stdio, calls the function and sends back the return value,
  which must be plain JSON data (``None``, bool, int, finite float, str, list/tuple, dict with
  str keys: an object with a rigged ``__eq__`` is refused). The comparison with ``expected``
  happens on the host (booleans strictly, floats with a relative tolerance of 1e-6), so the
  expected values never enter the sandbox, and the process that reports the values is one the
  code cannot reach (non-dumpable, see ``_code_calls.py``). Printing, exiting, forging report
  lines, signalling the grader or tampering with files earns nothing: only returning the right
  values does.
* **assert snippets with** ``isolate_snippets=True`` (sound): the snippet (``assert add(2, 3)
  == 5``) runs in that trusted grader, where the names ``from solution import *`` would import
  are proxies: a call sends its arguments to a fresh process running the code and returns the
  result, both only as builtin data (``None``, bool, int, float, str, list, tuple, dict, set,
  frozenset, bytes), so every ``==`` is the builtin one; the code cannot replace a builtin
  (``sorted``, ``len``) in the snippet's namespace. A snippet that gets an object back,
  passes a callable or relies on its arguments being mutated fails.
* **assert snippets**, the default (kept for compatibility; *not* a security boundary): each
  runs in its own process after ``from solution import *``, in a fresh directory, passing when
  the process exits 0 and prints a nonce it reads from a pipe after the snippet. The runner is
  non-dumpable (no forged result lines through ``/proc/<ppid>/fd``) and kills whatever a test
  started, so ``os._exit(0)`` at import and tampering with the runner or with later tests gain
  nothing. But the code runs *in the same process as the assert*, so code written to defeat the
  check always can: return an object whose ``__eq__`` is always true, read the nonce's pipe and
  print it, trace and skip the assert. Use one of the two forms above whenever the code is
  written by a policy under RL pressure.

Pass a ``SandboxPool`` or nothing (a fresh ``DockerSandbox`` per call) for untrusted code: a
``Sandbox`` bound and shared by concurrent calls is shared by their test processes too (one could
kill another's).

Example:
    >>> from envkit.rewards import get
    >>> from envkit.sandbox import DockerSandbox
    >>> from envkit.types import Trajectory
    >>> reply = "```python\\ndef add(a, b):\\n    return a + b\\n```"
    >>> trajectory = Trajectory(env_id="e", messages=[{"role": "assistant", "content": reply}])
    >>> tests = [{"call": "add", "args": [2, 3], "expected": 5}, "assert add(1, 1) == 2"]
    >>> with DockerSandbox() as sb:
    ...     r = get("code_tests").bind(sandbox=sb, tests=tests, isolate_snippets=True)
    ...     r.score_trajectory_sync(trajectory)
    1.0
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from envkit.parsing import extract_code, final_response
from envkit.rewards.registry import reward
from envkit.sandbox.errors import SandboxError
from envkit.types import Trajectory

__all__ = ["CallResult", "CodeTest", "code_tests", "run_calls", "values_equal"]

_CALLS_STARTED = "envkit-code-calls-started"
_SNIPPETS_STARTED = "envkit-code-snippets-started"


class CodeTest(BaseModel):
    """One structured test: ``call(*args, **kwargs)`` must return ``expected`` (JSON data).

    Example:
        >>> CodeTest(call="add", args=(2, 3), expected=5)
        CodeTest(call='add', args=[2, 3], kwargs={}, expected=5)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    call: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    expected: Any

    @field_validator("call")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not v.isidentifier():
            raise ValueError(f"call must be the name of a function, got {v!r}")
        return v

    @field_validator("args", "kwargs", "expected")
    @classmethod
    def _json(cls, v: Any) -> Any:
        try:
            return json.loads(json.dumps(v, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise ValueError(f"must be plain JSON data (finite numbers, str keys): {e}") from e


def values_equal(got: Any, expected: Any) -> bool:
    """Compares JSON values: floats with a relative tolerance of 1e-6, booleans strictly.

    Example:
        >>> values_equal([1, 0.1 + 0.2], [1, 0.3]), values_equal(True, 1), values_equal(2.0, 2)
        (True, False, True)
    """
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, float) or (isinstance(got, float) and isinstance(expected, int)):
        return isinstance(got, (int, float)) and math.isclose(
            got, expected, rel_tol=1e-6, abs_tol=1e-9
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(values_equal(g, e) for g, e in zip(got, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(values_equal(got[k], expected[k]) for k in expected)
        )
    return type(got) is type(expected) and got == expected


# The import of the shared prelude in a sandbox-side script, replaced by the prelude's text.
_PRELUDE_IMPORT = re.compile(r"^from \._sandbox_prelude import \([^)]*\)\n", re.MULTILINE)


@cache
def _script(name: str) -> str:
    """The self-contained source of a sandbox-side script (run as ``python3 -c SOURCE``): the
    file with ``_sandbox_prelude.py``'s text in place of its import of the prelude."""
    here = resources.files(__package__)
    text = (here / name).read_text(encoding="utf-8")
    prelude = (here / "_sandbox_prelude.py").read_text(encoding="utf-8")
    built, n = _PRELUDE_IMPORT.subn(lambda _: prelude, text)
    if n != 1:
        raise RuntimeError(f"{name} must import _sandbox_prelude exactly once, found {n}")
    return built


def _frame(obj: Any) -> bytes:
    data = json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data


def _parse_tests(tests: Any) -> list[str | CodeTest]:
    if not tests or isinstance(tests, (str, Mapping)) or not isinstance(tests, Sequence):
        raise ValueError(
            "code_tests needs a list of test snippets or structured tests: bind tests=[...] "
            "or put them in info['tests'], e.g. [{'call': 'add', 'args': [2, 3], 'expected': 5}]"
        )
    out: list[str | CodeTest] = []
    for i, t in enumerate(tests):
        if isinstance(t, (str, CodeTest)):
            out.append(t)
            continue
        if not isinstance(t, Mapping):
            raise ValueError(
                f"test {i} is a {type(t).__name__}: give a snippet (str), a CodeTest or a dict "
                "like {'call': 'add', 'args': [2, 3], 'expected': 5}"
            )
        try:
            out.append(CodeTest.model_validate(dict(t)))
        except ValidationError as e:
            raise ValueError(f"test {i} is not a valid structured test: {e}") from e
    return out


def _test_frame(t: str | CodeTest) -> dict[str, Any]:
    if isinstance(t, str):
        return {"snippet": t}
    return {"call": t.call, "args": t.args, "kwargs": t.kwargs}


@dataclass(frozen=True)
class CallResult:
    """What one test did in the sandbox (``run_calls``).

    Attributes:
        passed: The call returned the expected value (a snippet: it raised nothing).
        value: What the call returned (JSON data), ``None`` when it failed to.
        error: Why it did not pass, short (``None`` when it passed or returned a wrong value).
        load_error: ``error`` says the code could not be run at all: it does not load, does
            not define the function called, or the grader was stopped.
    """

    passed: bool
    value: Any = None
    error: str | None = None
    load_error: bool = False


def _calls_request(
    code: str,
    tests: Sequence[str | CodeTest],
    test_timeout: float,
    total_timeout: float | None,
    reuse_runner: bool,
) -> tuple[list[str], bytes, float, str]:
    """(command, stdin, exec timeout, report marker) of a ``run_calls`` run."""
    if not tests:
        raise ValueError("run_calls needs at least one test")
    if not test_timeout > 0 or not (total_timeout is None or total_timeout > 0):
        raise ValueError(f"timeouts must be positive, got {test_timeout}, {total_timeout}")
    total = test_timeout * len(tests) if total_timeout is None else total_timeout
    marker = f"@@envkit-{secrets.token_hex(16)}@@"
    source = _script("_code_calls.py")
    header = {
        "code": code,
        "source": source,
        "test_timeout": test_timeout,
        "total_timeout": total,
        "reuse_runner": reuse_runner,
    }
    frames = [header, *(_test_frame(t) for t in tests), {"marker": marker}]
    payload = b"".join(_frame(f) for f in frames)
    # Every test at its limit, one over the budget, and slack for the sandbox round trip.
    return ["python3", "-I", "-S", "-c", source], payload, total + 2 * test_timeout + 10, marker


def _calls_results(result: Any, marker: str, tests: Sequence[str | CodeTest]) -> list[CallResult]:
    """The grader's report, checked entry by entry, compared with the expected values here."""
    lines = result.stdout.splitlines()
    if _CALLS_STARTED not in lines:  # nothing the code does can hide this line (it runs after)
        raise SandboxError(
            f"the test grader failed in the sandbox: {result.describe()}: {result.stderr[-300:]}"
        )
    report = None
    for line in reversed(lines):
        if line.startswith(marker):
            try:
                report = json.loads(line[len(marker) :])
            except ValueError:
                report = None
            break
    if isinstance(report, dict) and isinstance(report.get("fatal"), str):
        raise SandboxError(f"the code_tests grader refused to run: {report['fatal']}")
    entries = report.get("results") if isinstance(report, dict) else None
    if not isinstance(entries, list) or len(entries) > len(tests):
        # The grader started but did not report: the code killed or stopped it. Nothing passed.
        why = f"the test run failed ({result.describe()})"
        return [CallResult(passed=False, error=why, load_error=True) for _ in tests]
    out = []
    for i, t in enumerate(tests):
        res = entries[i] if i < len(entries) else None
        kind, text = ("", None)  # one {kind: data} entry per test, or nothing
        if isinstance(res, dict) and len(res) == 1:
            ((kind, text),) = res.items()
        if kind in ("error", "load_error") and isinstance(text, str):
            out.append(CallResult(passed=False, error=text, load_error=kind == "load_error"))
        elif isinstance(t, str):
            ok = res == {"passed": True}
            out.append(CallResult(passed=ok, error=None if ok else "no result"))
        elif kind == "value":
            out.append(CallResult(passed=values_equal(text, t.expected), value=text))
        else:
            out.append(CallResult(passed=False, error="no result"))
    return out


def run_calls(
    sandbox: Any,
    code: str,
    tests: Sequence[str | CodeTest],
    *,
    test_timeout: float,
    total_timeout: float | None = None,
    reuse_runner: bool = False,
) -> list[CallResult]:
    """Runs structured tests (and isolated snippets) against ``code`` in ``sandbox``.

    The grader in the sandbox (``_code_calls.py``) reports what each call returned; the
    comparison with ``expected`` (``values_equal``) happens here, so expected values never
    enter the sandbox. Tests go in one at a time, in order: code run for one test never sees a
    later test's input before it answered (put hidden tests after visible ones).

    Args:
        sandbox: An envkit ``Sandbox`` the code may run in (use a clean one).
        code: The Python source that defines the functions called.
        tests: ``CodeTest`` objects, or assert snippets (run in the trusted grader).
        test_timeout: Seconds per test (the first call includes loading the code).
        total_timeout: Seconds for all of them (default ``test_timeout * len(tests)``).
        reuse_runner: One process loads the code once and takes the call tests in turn
            (replaced when it fails one by timing out, dying or breaking the protocol), instead
            of a fresh interpreter per test: faster, and state may carry from call to call.

    Returns:
        One ``CallResult`` per test, in order.

    Raises:
        envkit.sandbox.SandboxError: the sandbox or the grader in it failed.

    Example:
        >>> from envkit.sandbox import DockerSandbox
        >>> code = "def add(a, b):\\n    return a + b\\n"
        >>> tests = [CodeTest(call="add", args=[2, 3], expected=5)]
        >>> tests.append(CodeTest(call="sub", args=[2, 3], expected=-1))
        >>> with DockerSandbox() as sb:
        ...     first, second = run_calls(sb, code, tests, test_timeout=2.0)
        >>> first
        CallResult(passed=True, value=5, error=None, load_error=False)
        >>> second.error, second.load_error
        ('the code does not define a function named sub', True)
    """
    cmd, payload, timeout, marker = _calls_request(
        code, tests, test_timeout, total_timeout, reuse_runner
    )
    return _calls_results(sandbox.exec(cmd, stdin=payload, timeout=timeout), marker, tests)


async def _run_snippets(sb: Any, code: str, tests: list[str], timeout_s: float) -> list[bool]:
    """Pass/fail per assert snippet (see the module docstring for what this cannot prevent)."""
    nonce = secrets.token_hex(16)
    spec = {"code": code, "tests": tests, "nonce": nonce, "timeout": timeout_s}
    result = await sb.aexec(
        ["python3", "-I", "-S", "-c", _script("_code_snippets.py")],
        stdin=json.dumps(spec),
        timeout=(timeout_s + 1) * len(tests) + 10,
    )
    lines = result.stdout.splitlines()
    if _SNIPPETS_STARTED not in lines:
        raise RuntimeError(
            f"the test runner failed in the sandbox: {result.describe()}: {result.stderr[-300:]}"
        )
    passed: dict[int, bool] = {}
    for line in lines[lines.index(_SNIPPETS_STARTED) + 1 :]:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("fatal"), str):
            raise SandboxError(f"the code_tests runner refused to run: {row['fatal']}")
        if isinstance(row, dict) and isinstance(row.get("i"), int) and row["i"] not in passed:
            passed[row["i"]] = row.get("ok") is True
    return [passed.get(i, False) for i in range(len(tests))]


@reward(name="code_tests")
async def code_tests(
    trajectory: Trajectory,
    tests: Sequence[str | CodeTest | Mapping[str, Any]] | None = None,
    *,
    sandbox: Any = None,
    timeout_s: float = 10.0,
    isolate_snippets: bool = False,
) -> float:
    """The fraction of ``tests`` the final response's Python code passes.

    Args:
        trajectory: The episode.
        tests: Structured tests (``{"call", "args", "kwargs", "expected"}`` dicts or
            ``CodeTest``) and/or assert snippets (``from solution import *`` is implied);
            bound, or from ``info["tests"]``.
        sandbox: An envkit ``Sandbox`` (not closed), a ``SandboxPool`` (a sandbox is acquired
            per call), or ``None`` to start a ``DockerSandbox`` for this call.
        timeout_s: Seconds per test.
        isolate_snippets: Run each snippet in the trusted grader against proxies of the
            code's names, which exchange only builtin data with the process running the code
            (sound, like the structured form; a snippet that passes objects, callables or
            relies on mutating its arguments fails). ``False``: in the code's own process.

    Raises:
        ValueError: no tests, or a malformed one.
        envkit.sandbox.SandboxError: the sandbox failed (recorded as an error, not a 0).
    """
    parsed = _parse_tests(tests)
    code = extract_code(final_response(trajectory))
    if code is None:
        return 0.0  # no code passes no test
    calls: list[str | CodeTest] = [t for t in parsed if isinstance(t, CodeTest)]
    snippets = [t for t in parsed if isinstance(t, str)]
    if isolate_snippets:
        calls, snippets = parsed, []
    passed: list[bool] = []
    async with AsyncExitStack() as stack:
        if sandbox is None:
            from envkit._async import to_thread
            from envkit.sandbox import DockerSandbox

            sb = await to_thread(DockerSandbox)
            stack.push_async_callback(sb.aclose)
        elif hasattr(sandbox, "acquire"):
            sb = await stack.enter_async_context(sandbox.acquire())
        else:
            sb = sandbox
        if calls:  # run_calls, through aexec
            cmd, payload, limit, marker = _calls_request(code, calls, timeout_s, None, False)
            result = await sb.aexec(cmd, stdin=payload, timeout=limit)
            passed += [r.passed for r in _calls_results(result, marker, calls)]
        if snippets:
            passed += await _run_snippets(sb, code, snippets, timeout_s)
    return sum(passed) / len(parsed)
