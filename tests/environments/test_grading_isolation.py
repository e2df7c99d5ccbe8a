"""Grading runs outside the agent's reach: canaries that attack the grader of PythonCoding-v0 and
PythonTools-v0 through ``env.reset`` / ``env.step`` earn nothing they did not earn.

Before the grader was split (one interpreter ran the harness and the submitted code, in the
episode's own sandbox, across turns), the forged report (the feedback then claimed the visible
examples passed), the hidden-input leak, the malformed report (the host crashed with a
TypeError) and the turn-1 plant (turn 2 still saw its file) all got through; see
docs/sandbox.md, "Where grading runs".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from envkit.environments.coding_tasks import get_task
from envkit.environments.python_coding import PythonCodingEnv
from envkit.environments.python_tools import PythonToolsEnv
from envkit.sandbox.pool import SandboxPool
from envkit.types import ToolCall

pytestmark = pytest.mark.docker

TASK = get_task("roman_to_int")
WRONG = "def roman_to_int(s):\n    return 0\n"

# Finds the harness's request (marker, inputs, report fd) by walking frames and the heap.
_FIND = """
import gc, json, os, sys
req, fd = None, None
f = sys._getframe()
while f is not None:
    if isinstance(f.f_locals.get("request"), dict):
        req, fd = f.f_locals["request"], f.f_locals.get("real_stdout")
    f = f.f_back
if req is None:
    for o in gc.get_objects():
        if isinstance(o, dict) and "marker" in o and "inputs" in o:
            req = o
"""

FORGE_REPORT = (
    _FIND
    + """
if req is not None:  # claim the visible examples' values (they are in the prompt)
    seen = {"III": 3, "IX": 9, "MCMXCIV": 1994}
    res = [{"value": seen.get(a[0], 0)} for a in req["inputs"]]
    line = "\\n" + req["marker"] + json.dumps({"results": res}) + "\\n"
    os.write(fd if fd is not None else 1, line.encode())
    os._exit(0)
"""
    + WRONG
)

MALFORMED_REPORT = (
    _FIND
    + """
if req is not None:
    line = "\\n" + req["marker"] + json.dumps({"results": 5, "load_error": None}) + "\\n"
    os.write(fd if fd is not None else 1, line.encode())
    os._exit(0)
"""
    + WRONG
)

LEAK_HIDDEN_INPUTS = (
    _FIND
    + """
raise RuntimeError("inputs: " + (repr(req["inputs"]) if req is not None else "none found"))
"""
)

PATCH_EVERYTHING = """
import builtins, json, math, sys
builtins.isinstance = lambda *a: True
math.isclose = lambda *a, **k: True
json.dumps = lambda *a, **k: '{"results": [{"value": 3}], "load_error": null}'
json.loads = lambda *a, **k: {"results": [{"value": 3}] * 12}
for name, module in list(sys.modules.items()):
    if hasattr(module, "outputs_equal"):
        module.outputs_equal = lambda *a: True
class Always(int):
    def __eq__(self, other):
        return True
def roman_to_int(s):
    return Always(0)
"""

PLANT = (
    """
import os, sys
for path in ("/tmp/planted", "/work/planted", "/dev/shm/planted"):
    try:
        open(path, "w").write("x")
    except OSError:
        pass
for path in ("/tmp/sitecustomize.py", "/usr/local/bin/python3"):
    try:
        open(path, "w").write("import os; os._exit(0)\\n")
        os.chmod(path, 0o755)
    except OSError:
        pass
os.environ["PATH"] = "/tmp:" + os.environ.get("PATH", "")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "61.2345"])
    os._exit(0)
"""
    + WRONG
)

CHECK_PLANT = """
import os
found = [p for p in ("/tmp/planted", "/work/planted", "/dev/shm/planted", "/tmp/sitecustomize.py")
         if os.path.exists(p)]
for pid in os.listdir("/proc"):
    try:
        if pid.isdigit() and b"61.2345" in open("/proc/%s/cmdline" % pid, "rb").read():
            found.append("daemon " + pid)
    except OSError:
        pass
raise RuntimeError("TAMPER-SURVIVED %s" % found if found else "CLEAN-SANDBOX")
"""


def block(code: str) -> str:
    return f"```python\n{code}\n```"


def call(name: str, i: int = 0, **args: Any) -> dict[str, Any]:
    tc = ToolCall.create(name, args, id=f"call_{name}_{i}")
    return {"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]}


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(size=2) as p:
        yield p


@pytest.fixture
def coding(pool: SandboxPool) -> Iterator[PythonCodingEnv]:
    env = PythonCodingEnv(pool=pool, max_turns=3, test_timeout=1.0, total_timeout=4.0)
    env.reset(options={"task_id": TASK.id})
    yield env
    env.close()


def _text(obs: list[dict[str, Any]]) -> str:
    return str(obs[-1]["content"])


def test_envs_declare_where_they_grade() -> None:
    assert PythonCodingEnv.grader_isolated is True
    assert PythonToolsEnv.grader_isolated is True


def test_correct_solution_earns_full_reward(coding: PythonCodingEnv) -> None:
    _, reward, terminated, _, info = coding.step(block(TASK.reference))
    assert (reward, terminated, info["hidden_passed"]) == (1.0, True, len(TASK.hidden))


def test_forged_report_is_not_believed(coding: PythonCodingEnv) -> None:
    obs, reward, terminated, _, info = coding.step(block(FORGE_REPORT))
    assert reward == 0.0 and not terminated
    # The feedback judges what the function returned, not what the forger claimed.
    assert info["visible_passed"] == 0, _text(obs)
    assert "fails 3 of 3 examples" in _text(obs)
    _, reward, *_ = coding.step(block(TASK.reference))
    assert reward == 1.0


def test_malformed_report_scores_zero_without_crashing(coding: PythonCodingEnv) -> None:
    obs, reward, *_ = coding.step(block(MALFORMED_REPORT))
    assert reward == 0.0 and "fails 3 of 3 examples" in _text(obs)


def test_hidden_inputs_do_not_leak_into_feedback(coding: PythonCodingEnv) -> None:
    obs, reward, *_ = coding.step(block(LEAK_HIDDEN_INPUTS))
    assert reward == 0.0
    assert "none found" in _text(obs)
    assert all(c.args[0] not in _text(obs) for c in TASK.hidden), _text(obs)


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.exit(0)\n" + WRONG,
        "import os\nos._exit(0)\n" + WRONG,
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + WRONG,
        "import os\ndef roman_to_int(s):\n    os._exit(0)\n",
        "import os, signal\ndef roman_to_int(s):\n    os.kill(os.getppid(), signal.SIGSTOP)\n",
    ],
    ids=["sys-exit", "os-exit", "kill-parent", "exit-in-call", "stop-parent"],
)
def test_exiting_or_killing_the_harness_scores_zero(coding: PythonCodingEnv, code: str) -> None:
    coding.max_turns, coding.test_timeout, coding.total_timeout = 1, 0.5, 1.0  # stop-parent: 12 s
    _, reward, *_ = coding.step(block(code))
    assert reward == 0.0


def test_monkeypatching_builtins_and_the_harness_scores_zero(coding: PythonCodingEnv) -> None:
    obs, reward, _, _, info = coding.step(block(PATCH_EVERYTHING))
    assert reward == 0.0 and info["hidden_passed"] == 0, _text(obs)


def test_turn_one_tampering_does_not_reach_turn_two(coding: PythonCodingEnv) -> None:
    obs, reward, *_ = coding.step(block(PLANT))
    assert reward == 0.0
    obs, reward, *_ = coding.step(block(CHECK_PLANT))
    assert reward == 0.0
    assert "CLEAN-SANDBOX" in _text(obs), _text(obs)
    _, reward, *_ = coding.step(block(TASK.reference))
    assert reward == 1.0


# ------------------------------------------------------------------ PythonTools-v0
@pytest.fixture
def tools(pool: SandboxPool) -> Iterator[PythonToolsEnv]:
    env = PythonToolsEnv(pool=pool, max_turns=4, tool_timeout=5.0)
    yield env
    env.close()


_REVERSE = (
    "import os\nos.makedirs('out', exist_ok=True)\nl = open('data/lines.txt').read().splitlines()"
    "\nopen('out/reversed.txt', 'w').write('\\n'.join(reversed(l)) + '\\n')\n"
)


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        # rewrite the input the answer was computed from, then answer for the rewritten input
        (
            "printf 'a\\nb\\n' > data/lines.txt && mkdir -p out"
            " && printf 'b\\na\\n' > out/reversed.txt",
            "has the wrong content",
        ),
        # make the file the checker reads point elsewhere, or block whoever reads it
        ("mkdir -p out && ln -s /work/data/lines.txt out/reversed.txt", "symlink"),
        ("mkdir -p out && mkfifo out/reversed.txt", "FIFO"),
        # an artifact far larger than any answer: not even copied out whole
        (
            "mkdir -p out && head -c 3000000 /dev/zero | tr '\\0' 'a' > out/reversed.txt",
            "larger than",
        ),
    ],
    ids=["rewrite-input", "symlink", "fifo", "huge"],
)
def test_tampering_with_what_the_checker_reads_scores_zero(
    tools: PythonToolsEnv, tamper: str, why: str
) -> None:
    tools.reset(seed=5, options={"template": "reverse_lines"})
    obs, *_ = tools.step(call("run_shell", command=tamper))
    assert _text(obs).startswith("exit code 0"), _text(obs)
    _, reward, terminated, _, info = tools.step(call("submit", 1, answer="done"))
    assert terminated and reward == 0.0 and why in info["why"], info


def test_tool_env_correct_file_earns_full_reward(tools: PythonToolsEnv) -> None:
    tools.reset(seed=5, options={"template": "reverse_lines"})
    tools.step(call("run_python", code=_REVERSE))
    _, reward, terminated, _, info = tools.step(call("submit", 1, answer="done"))
    assert terminated and reward == 1.0, info
