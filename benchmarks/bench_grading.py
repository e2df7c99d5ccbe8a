"""Per-episode grading time of ``PythonCoding-v0``, before and after grading moved out of reach.

Run: ``python benchmarks/bench_grading.py`` (about a minute; needs the Docker daemon and the
sandbox image, and git: the "before" harness is read from the commit before the change).

* **before**: the old grader: ``_coding_harness.py`` of commit 9cc556d, one interpreter that
  execs the submitted code and reports, run in the episode's sandbox for every submission
  (nothing cleaned between submissions).
* **after**: ``PythonCodingEnv.run_tests`` today: ``code_tests``' two-process harness
  (``run_calls`` with ``reuse_runner=True``: the reporter is not the process that runs the code;
  one input at a time over a pipe), and every submission after the first in the episode's
  sandbox scrubbed first (``Sandbox.reset``).

Each episode takes a warm sandbox from the pool, grades ``--submissions`` submissions (wrong
ones, then the reference; a 1-submission episode grades only the reference), and gives the
sandbox back. Times are the seconds an episode spends grading (acquire + grading, not the
policy's think time between submissions, nor the pool's clean-up after the episode); the last
row gives the policy ``--think`` seconds per turn, during which "after" scrubs the sandbox.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from envkit.environments.coding_tasks import TASKS
from envkit.environments.python_coding import PythonCodingEnv
from envkit.sandbox.pool import SandboxPool

OLD_COMMIT = "9cc556d"
ROOT = Path(__file__).resolve().parent.parent


def old_harness() -> str:
    try:
        return subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:environments/_coding_harness.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"needs the git history of the repository ({OLD_COMMIT}): {e}") from e


def submissions(task: Any, n: int) -> list[str]:
    wrong = f"def {task.function}(*args):\n    return None\n"
    return [wrong] * (n - 1) + [task.reference]


def episode_before(pool: SandboxPool, source: str, task: Any, n: int, think: float) -> float:
    """Seconds spent grading (the policy's think time between submissions not counted)."""
    spent = 0.0
    start = time.perf_counter()
    sb = pool.get()
    try:
        for i, code in enumerate(submissions(task, n)):
            if i:
                time.sleep(think)
                start = time.perf_counter()
            marker = f"@@envkit-{secrets.token_hex(8)}@@"
            request = {
                "code": code,
                "function": task.function,
                "inputs": [c.args for c in [*task.examples, *task.hidden]],
                "test_timeout": 2.0,
                "total_timeout": 10.0,
                "marker": marker,
            }
            result = sb.exec(["python3", "-I", "-c", source], stdin=json.dumps(request), timeout=30)
            report = json.loads(result.stdout.strip().splitlines()[-1][len(marker) :])
            assert len(report["results"]) == len(request["inputs"]), report
            spent += time.perf_counter() - start
        return spent
    finally:
        pool.put(sb)


def episode_after(pool: SandboxPool, task: Any, n: int, think: float) -> float:
    """The same episode through ``env.step`` (which scrubs during the think time)."""
    env = PythonCodingEnv(pool=pool, tasks=[task.id], max_turns=n)
    env.reset(options={"task_id": task.id})
    spent = 0.0
    try:
        for i, code in enumerate(submissions(task, n)):
            if i:
                time.sleep(think)
            start = time.perf_counter()
            _, reward, *_ = env.step(f"```python\n{code}\n```")
            spent += time.perf_counter() - start
        assert reward == 1.0
        return spent
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument(
        "--think", type=float, default=0.5, help="seconds the policy takes between submissions"
    )
    args = parser.parse_args()
    source = old_harness()
    tasks = [TASKS[i % len(TASKS)] for i in range(args.episodes)]
    print(f"{args.episodes} episodes per row; grading seconds per episode (mean / median)")
    print(f"{'submissions':>11} {'think s':>7} | {'before':>15} | {'after':>15} | after/before")
    with SandboxPool(size=2) as pool:
        pool.start()
        time.sleep(2.0)  # let both sandboxes come up before the clock starts
        episode_before(pool, source, tasks[0], 1, 0.0)  # warm-up
        episode_after(pool, tasks[0], 1, 0.0)
        for n, think in ((1, 0.0), (3, 0.0), (3, args.think)):
            before, after = [], []
            for t in tasks:  # interleaved, so drifting machine load hits both alike
                before.append(episode_before(pool, source, t, n, think))
                after.append(episode_after(pool, t, n, think))
            b, a = statistics.mean(before), statistics.mean(after)
            print(
                f"{n:>11} {think:>7.2f} | {b:6.3f} / {statistics.median(before):6.3f} | "
                f"{a:6.3f} / {statistics.median(after):6.3f} | {a / b:5.2f}x"
            )


if __name__ == "__main__":
    main()
