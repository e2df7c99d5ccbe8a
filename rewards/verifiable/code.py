"""``code_tests``: the fraction of unit tests the model's code passes, run in an envkit sandbox.

The code is the final response's last Python code block, or the whole response when it is bare
Python code (``envkit.parsing.extract_code``); a response without code scores 0.0. It is
written to ``solution.py`` in a fresh directory of the sandbox, and each test (a Python snippet
such as ``assert add(2, 3) == 5``) runs in its own process after
``from solution import *``. A test passes when its process exits 0 *and* prints a random nonce
after the test, so a solution that exits early (``os._exit(0)`` at import) passes nothing.
This is a guard against cheap exit-code forgery, not a proof against code written to defeat this
checker; pair it with a judge whose rubric names reward hacking.

Example:
    >>> from envkit.rewards import get
    >>> from envkit.sandbox import DockerSandbox
    >>> from envkit.types import Trajectory
    >>> reply = "```python\\ndef add(a, b):\\n    return a + b\\n```"
    >>> trajectory = Trajectory(env_id="e", messages=[{"role": "assistant", "content": reply}])
    >>> with DockerSandbox() as sb:
    ...     r = get("code_tests").bind(sandbox=sb, tests=["assert add(2, 3) == 5"])
    ...     r.score_trajectory_sync(trajectory)
    1.0
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from envkit.parsing import extract_code, final_response
from envkit.rewards.registry import reward
from envkit.types import Trajectory

__all__ = ["code_tests"]

_RUNNER = r"""
import json, os, subprocess, sys
with open(sys.argv[1]) as f:
    spec = json.load(f)
os.remove(sys.argv[1])
for i, test in enumerate(spec["tests"]):
    script = "from solution import *\n" + test + "\nprint(" + repr(spec["nonce"]) + ")\n"
    try:
        p = subprocess.run([sys.executable, "-c", script], cwd=spec["dir"], capture_output=True,
                           text=True, timeout=spec["timeout"])
        lines = p.stdout.strip().splitlines()
        ok = p.returncode == 0 and lines[-1:] == [spec["nonce"]]
        tail = p.stderr.strip().splitlines() or ["exit status %d" % p.returncode]
        err = "" if ok else tail[-1]
    except subprocess.TimeoutExpired:
        ok, err = False, "timed out"
    print(json.dumps({"i": i, "ok": ok, "error": err[-300:]}), flush=True)
"""


@reward(name="code_tests")
async def code_tests(
    trajectory: Trajectory,
    tests: Sequence[str] | None = None,
    *,
    sandbox: Any = None,
    timeout_s: float = 10.0,
) -> float:
    """The fraction of ``tests`` the final response's Python code passes.

    Args:
        trajectory: The episode.
        tests: Python snippets run after ``from solution import *`` (bound, or from
            ``info["tests"]``).
        sandbox: An envkit ``Sandbox`` (not closed), a ``SandboxPool`` (a sandbox is acquired
            per call), or ``None`` to start a ``DockerSandbox`` for this call.
        timeout_s: Seconds per test.

    Raises:
        ValueError: no tests.
        envkit.sandbox.SandboxError: the sandbox failed (recorded as an error, not a 0).
    """
    if not tests or isinstance(tests, str):
        raise ValueError(
            "code_tests needs a list of test snippets: bind tests=[...] or put them in "
            "info['tests']"
        )
    code = extract_code(final_response(trajectory))
    if code is None:
        return 0.0  # no code passes no test
    nonce = secrets.token_hex(16)
    workdir = f"envkit_check_{secrets.token_hex(6)}"
    spec = {"tests": list(tests), "nonce": nonce, "dir": workdir, "timeout": timeout_s}
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
        await sb.awrite_files(
            {
                f"{workdir}/solution.py": code,
                f"{workdir}/runner.py": _RUNNER,
                f"{workdir}/spec.json": json.dumps(spec),
            }
        )
        result = await sb.aexec(
            ["python3", f"{workdir}/runner.py", f"{workdir}/spec.json"],
            timeout=timeout_s * len(tests) + 10,
        )
        await sb.aexec(["rm", "-rf", workdir], timeout=10)
    passed: dict[int, bool] = {}
    for line in result.stdout.splitlines():
        try:
            row = json.loads(line)
            passed[int(row["i"])] = bool(row["ok"])
        except (ValueError, KeyError, TypeError):
            continue
    if not passed and not result.ok:
        raise RuntimeError(
            f"the test runner failed in the sandbox: {result.describe()}: {result.stderr[-300:]}"
        )
    return sum(passed.values()) / len(tests)
