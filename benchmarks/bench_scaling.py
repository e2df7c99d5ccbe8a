"""Per-episode costs behind docs/scaling.md: how fast sandboxes start and commands run here.

Run: ``python benchmarks/bench_scaling.py`` (about a minute; needs the Docker daemon and the
sandbox image). Measured side by side in one run:

1. **Sandbox start rate.** Cold ``DockerSandbox()`` + ``close()`` with 1, 4 and 8 threads starting
   containers at once: sandboxes per second the daemon sustains (what a fleet pays when every
   episode of a large batch needs a fresh container).
2. **Command rate.** ``exec(["true"])`` through a warm ``SandboxPool`` of 8 with 1 and 8 threads:
   commands per second one machine sustains (what tool-heavy episodes pay per tool call).

The other per-episode costs of the scaling model (engine overhead, generation tokens/s, judge
calls per group, adapter sync, Ray overhead, overlap) come from ``bench_core.py``,
``bench_engines.py``, ``bench_judge.py``, ``bench_server.py``, ``bench_ray.py`` and
``bench_overlap.py``; docs/scaling.md puts them together.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from envkit.sandbox import DockerSandbox
from envkit.sandbox.pool import SandboxPool


def start_rate(n: int, threads: int) -> float:
    """Sandboxes started and closed per second with ``threads`` doing it at once."""

    def one(_: int) -> None:
        DockerSandbox().close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - t0)


def exec_rate(n: int, threads: int, pool: SandboxPool) -> float:
    """``exec(["true"])`` calls per second, each on a sandbox leased from ``pool``."""

    def one(_: int) -> None:
        with pool.acquire() as sb:
            result = sb.exec(["true"])
            if result.exit_code != 0:
                raise RuntimeError(f"`true` failed in the sandbox: {result}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(n)))
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=16, help="cold starts per thread count")
    parser.add_argument("--execs", type=int, default=200, help="commands per thread count")
    args = parser.parse_args()
    print("1. cold sandbox start + close (DockerSandbox)")
    rates = {}
    for threads in (1, 4, 8):
        rates[threads] = start_rate(args.starts, threads)
        print(f"  {threads} thread(s): {rates[threads]:6.2f} sandboxes/s")
    print(f"  => 8 threads / 1 thread: {rates[8] / rates[1]:.2f}x")
    print("\n2. exec(['true']) through a warm pool of 8")
    with SandboxPool(size=8) as pool:
        pool.start()
        exec_rate(16, 8, pool)  # warm the supervisors
        one = exec_rate(args.execs, 1, pool)
        eight = exec_rate(args.execs, 8, pool)
    print(f"  1 thread : {one:7.1f} commands/s")
    print(f"  8 threads: {eight:7.1f} commands/s  => {eight / one:.2f}x")


if __name__ == "__main__":
    main()
