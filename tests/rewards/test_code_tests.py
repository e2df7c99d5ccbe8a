"""``code_tests``: unit tests of the model's code, run in a real Docker sandbox.

The attack tests below play what a policy under RL pressure writes against the three ways of
grading. Structured tests (``{"call", "args", "expected"}``) and assert snippets with
``isolate_snippets=True`` hold against every one of them. Assert snippets in the default mode
still lose, by design, to code that defeats an assert from inside its own process: an object
equal to anything, reading the nonce's pipe before the assert runs
(``test_snippet_form_still_loses_to_in_process_attacks``) and replacing a builtin such as
``sorted`` through ``from solution import *`` (``test_isolated_snippets_keep_the_real_builtins``).
Before the hardening it also lost to the frame-walking nonce attack (issue 20) and to a background
process rewriting the next tests' ``solution.py``, and a test process that killed its runner
turned the wrong solution's 0 into a reward error.
"""

from __future__ import annotations

import os

import pytest

from envkit.rewards import get, score_groups
from envkit.rewards.verifiable.code import CodeTest
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


# ---------------------------------------------------------------------------------- attacks
STRUCTURED = [
    {"call": "add", "args": [2, 3], "expected": 5},
    {"call": "add", "args": [-1, 1], "expected": 0},
    {"call": "add", "args": [10], "kwargs": {"b": 5}, "expected": 15},
]
WRONG = "\ndef add(a, b=0):\n    return 42\n"  # passes none of the tests

# The attack of issue 20: walk up to the test script's frame, print its nonce, exit 0.
FRAME_NONCE = (
    """
import os, sys
f = sys._getframe()
while f.f_back is not None:
    f = f.f_back
for c in f.f_code.co_consts:
    if isinstance(c, str) and len(c) == 32:
        print(c)
os._exit(0)
"""
    + WRONG
)

# Forge result lines into every process's stdout it can open (the runner's / grader's above all),
# then kill the parent.
PROC_STDOUT = (
    """
import json, os
lines = "".join(json.dumps({"i": i, "ok": True, "error": ""}) + "\\n" for i in range(10))
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            with open("/proc/%s/fd/1" % pid, "w") as out:
                out.write(lines)
        except OSError:
            pass
os.kill(os.getppid(), 9)  # so that no true result line follows the forged ones
"""
    + WRONG
)

EXIT_AT_IMPORT = "import os\nos._exit(0)\n" + WRONG
EXIT_IN_CALL = "import os\ndef add(a, b=0):\n    os._exit(0)\n"
KILL_THE_GRADER = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + WRONG

# Returns look-alikes: an int whose __eq__ is always true, and a bare object that equals anything.
ALWAYS_EQUAL = """
class Eq(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
class Anything:
    def __eq__(self, other):
        return True
def add(a, b=0):
    return Eq(0) if a > 0 else Anything()
"""

# A daemon (double fork, new session) that rewrites every solution.py it can find, now and for
# the tests that come later, into a correct one.
TAMPER = (
    """
import os, time
GOOD = "def add(a, b=0):\\n    return a + b\\n"
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        deadline = time.time() + 30
        while time.time() < deadline:  # envkit-tamper-daemon
            for top in ("/tmp", os.getcwd(), os.path.dirname(os.getcwd())):
                for root, dirs, files in os.walk(top):
                    if "solution.py" in files:
                        try:
                            with open(os.path.join(root, "solution.py"), "w") as f:
                                f.write(GOOD)
                        except OSError:
                            pass
            time.sleep(0.005)
    os._exit(0)
time.sleep(0.2)
"""
    + WRONG
)

ATTACKS = {
    "frame_nonce": FRAME_NONCE,
    "proc_stdout": PROC_STDOUT,
    "exit_at_import": EXIT_AT_IMPORT,
    "exit_in_call": EXIT_IN_CALL,
    "kill_the_grader": KILL_THE_GRADER,
    "always_equal": ALWAYS_EQUAL,
    "tamper": TAMPER,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_structured_form_gives_attacks_nothing(sandbox, attack: str) -> None:
    r = get("code_tests").bind(sandbox=sandbox, tests=STRUCTURED, timeout_s=2.0)
    assert r.score_trajectory_sync(solution(ATTACKS[attack])) == 0.0


@pytest.mark.parametrize("attack", ["frame_nonce", "proc_stdout", "kill_the_grader", "tamper"])
def test_snippet_form_resists_the_out_of_process_attacks(sandbox, attack: str) -> None:
    r = get("code_tests").bind(sandbox=sandbox, tests=TESTS, timeout_s=2.0)
    assert r.score_trajectory_sync(solution(ATTACKS[attack])) == 0.0


# Reads the nonce's pipe at import, prints the nonce and exits 0 (snippets in the code's process).
STEAL_NONCE = (
    "import os, stat\n"
    "for fd in range(3, 64):\n"
    "    try:\n"
    "        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
    "            print(os.read(fd, 64).decode()); os._exit(0)\n"
    "    except OSError:\n"
    "        pass\n" + WRONG
)


def test_snippet_form_still_loses_to_in_process_attacks(sandbox) -> None:
    """Documented, not wanted: code in the assert's process can defeat the assert. Use the
    structured form or ``isolate_snippets=True`` (the tests around score the same code 0)."""
    r = get("code_tests").bind(sandbox=sandbox, tests=TESTS, timeout_s=2.0)
    assert r.score_trajectory_sync(solution(ALWAYS_EQUAL)) == 1.0
    assert r.score_trajectory_sync(solution(STEAL_NONCE)) == 1.0


@pytest.mark.parametrize("attack", [*sorted(ATTACKS), "steal_nonce"])
def test_isolated_snippets_give_attacks_nothing(sandbox, attack: str) -> None:
    code = STEAL_NONCE if attack == "steal_nonce" else ATTACKS[attack]
    r = get("code_tests").bind(sandbox=sandbox, tests=TESTS, timeout_s=2.0, isolate_snippets=True)
    assert r.score_trajectory_sync(solution(code)) == 0.0


def test_isolated_snippets_keep_the_real_builtins(sandbox) -> None:
    """``from solution import *`` would let the code replace ``sorted`` and ``len`` in the
    snippet's namespace (the default mode still does); isolated snippets keep the real ones."""
    shadow = (
        "sorted = lambda xs: [1, 2, 3]\n"
        "def len(xs):\n    return 3\n"
        "__all__ = ['sorted', 'len', 'digits', '__builtins__']\n"
        "def digits(n):\n    return [9]\n"
    )
    tests = ["assert sorted(digits(321)) == [1, 2, 3]", "assert len(digits(321)) == 3"]
    r = get("code_tests").bind(sandbox=sandbox, tests=tests, timeout_s=2.0)
    assert r.score_trajectory_sync(solution(shadow)) == 1.0
    r = r.bind(isolate_snippets=True)
    assert r.score_trajectory_sync(solution(shadow)) == 0.0
    honest = "def digits(n):\n    return [int(c) for c in str(n)]\n"
    assert r.score_trajectory_sync(solution(honest)) == 1.0


def test_isolated_snippets_see_the_codes_names_as_builtin_data(sandbox) -> None:
    code = (
        "import math\n"
        "LIMIT = 3\n"
        "def add(a, b=0):\n    return a + b\n"
        "def shape(xs):\n"
        "    return (len(xs), {1, 2}, b'ab', {(1, 2): 'k'}, float('nan'))\n"
        "class Stack:\n    pass\n"
    )
    tests = [
        "assert add(2, 3) == 5",
        "assert add(1, b=LIMIT) == 4",  # a module-level constant
        "import solution\nassert solution.add(1, 1) == 2",
        "r = shape([1, 2])\nassert r[:4] == (2, {1, 2}, b'ab', {(1, 2): 'k'}) and math.isnan(r[4])",
        "assert add(2, 3) == 6",  # fails in both modes
        "assert Stack() is not None",  # objects cannot leave the code's process: fails isolated
    ]
    r = get("code_tests").bind(sandbox=sandbox, tests=tests, timeout_s=2.0)
    assert r.score_trajectory_sync(solution(code)) == pytest.approx(5 / 6)
    r = r.bind(isolate_snippets=True)
    assert r.score_trajectory_sync(solution(code)) == pytest.approx(4 / 6)


def test_no_process_outlives_the_grading_and_the_next_solution_is_graded_clean(sandbox) -> None:
    for tests in (STRUCTURED, TESTS):
        r = get("code_tests").bind(sandbox=sandbox, tests=tests, timeout_s=2.0)
        assert r.score_trajectory_sync(solution(TAMPER)) == 0.0
        left = sandbox.exec(
            ["python3", "-c", PS + "print(sum(b'envkit-tamper-daemon' in c for c in cmds))"],
            timeout=10,
        )
        assert left.stdout.strip() == "0", left
        # a wrong solution graded right after, in the same sandbox, is not rewritten into a
        # right one by anything the tamperer left
        assert r.score_trajectory_sync(solution(WRONG)) == 0.0


PS = """
import os
cmds = []
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            cmds.append(open("/proc/%s/cmdline" % pid, "rb").read())
        except OSError:
            pass
"""

# What the code sees of the process that reports. Listing a process's /proc/<pid>/fd needs it to
# be dumpable (a plain python parent of the same user lists fine); Docker's pipe ownership alone
# already stops re-opening the runner's stdout, but not this, nor reading its memory.
PROBE = """
import os
def parent_fds():
    try:
        return len(os.listdir("/proc/%d/fd" % os.getppid()))
    except OSError as e:
        return type(e).__name__
def parent_memory():
    try:
        open("/proc/%d/mem" % os.getppid(), "rb")
        return "opened"
    except OSError as e:
        return type(e).__name__
"""


def test_the_reporting_process_is_out_of_the_codes_reach(sandbox) -> None:
    structured = [
        {"call": "parent_fds", "expected": "PermissionError"},
        {"call": "parent_memory", "expected": "PermissionError"},
    ]
    snippets = [
        "assert parent_fds() == 'PermissionError'",
        "assert parent_memory() == 'PermissionError'",
    ]
    r = get("code_tests").bind(sandbox=sandbox, tests=structured + snippets, timeout_s=2.0)
    assert r.score_trajectory_sync(solution(PROBE)) == 1.0
    r = r.bind(isolate_snippets=True)  # the snippets' calls run in a runner below the grader
    assert r.score_trajectory_sync(solution(PROBE)) == 1.0


def test_structured_form_scores_a_correct_solution(sandbox) -> None:
    code = (
        "def add(a, b=0):\n    return a + b\n"
        "def stats(xs, *, scale=1):\n"
        "    return {'mean': sum(xs) / len(xs) * scale, 'sorted': tuple(sorted(xs)), 'ok': True}\n"
    )
    stats = {"mean": 0.7, "sorted": [0.1, 1.3], "ok": True}  # 0.7 within the float tolerance
    tests = [
        *STRUCTURED,
        CodeTest(call="stats", args=[[1.3, 0.1]], expected=stats),
        {"call": "stats", "args": [[1, 3]], "kwargs": {"scale": 2}, "expected": 4.0},
    ]
    r = get("code_tests").bind(sandbox=sandbox, tests=tests, timeout_s=2.0)
    assert r.score_trajectory_sync(solution(code)) == pytest.approx(4 / 5)  # 'mean' != 4.0
    right = {
        "call": "stats",
        "args": [[1, 3]],
        "kwargs": {"scale": 2},
        "expected": stats | {"mean": 4, "sorted": [1, 3]},
    }
    r = get("code_tests").bind(sandbox=sandbox, tests=[*tests[:4], right], timeout_s=2.0)
    assert r.score_trajectory_sync(solution(code)) == 1.0


def test_structured_form_is_strict_about_types_and_mixes_with_snippets(sandbox) -> None:
    tests = [
        {"call": "flag", "expected": 1},  # True is not 1
        {"call": "missing", "expected": None},  # no such function
        {"call": "flag", "expected": True},
        "assert flag()",
    ]
    r = get("code_tests").bind(sandbox=sandbox, tests=tests, timeout_s=2.0)
    assert r.score_trajectory_sync(solution("def flag():\n    return True")) == 0.5


@pytest.mark.parametrize(
    ("tests", "message"),
    [
        ([{"call": "add", "args": [1, 2]}], "expected"),
        ([{"call": "add", "args": [1], "expected": {1, 2}}], "plain JSON"),
        ([{"call": "add", "expected": float("nan")}], "plain JSON"),
        ([{"call": "a.b", "expected": 1}], "name of a function"),
        ([{"call": "add", "expected": 1, "expect": 2}], "expect"),
        ([3], "give a snippet"),
        ({"call": "add", "expected": 1}, "needs a list"),
    ],
)
def test_malformed_structured_tests_are_clear_errors(tests: object, message: str) -> None:
    r = get("code_tests").bind(sandbox=object(), tests=tests)
    with pytest.raises(ValueError, match=message):
        r.score_trajectory_sync(solution("def add(a, b):\n    return a + b"))


def test_isolated_snippets_time_out(sandbox) -> None:
    tests = ["assert add(1, 1) == 2", "while True: pass"]  # the second loops in the grader
    r = get("code_tests").bind(sandbox=sandbox, tests=tests, timeout_s=0.5, isolate_snippets=True)
    assert r.score_trajectory_sync(solution("def add(a, b):\n    return a + b")) == 0.5
    looping = "def add(a, b):\n    while True:\n        pass"
    assert r.score_trajectory_sync(solution(looping)) == 0.0
