"""Sandbox benchmark: warm-pool acquire+release vs a cold ``docker run``; exec overhead.

Run: ``python benchmarks/bench_sandbox.py`` (about a minute; needs the Docker daemon and the
sandbox image, see ``scripts/install_docker.sh``). Every figure is measured side by side in this
one run, interleaved, and printed with its goal:

1. acquire + release of a warm ``SandboxPool`` (p50/p95), against a cold ``docker run --rm`` of
   the same image (CLI) and a cold ``DockerSandbox()`` + ``close()`` (SDK); goal >= 20x faster.
   Episodes are assumed to last longer than the pool's background clean-up of a released
   sandbox (~0.1 s), so each acquire finds a clean sandbox waiting; the clean-up throughput is
   printed too.
2. ``DockerSandbox.exec(["true"])`` against a raw ``docker exec <container> true`` (CLI) and
   docker-py's ``exec_run`` of the same command in the same container; goal <= 1.2x the raw
   ``docker exec``. Shown with envkit's persistent supervisor (default) and with one
   ``docker exec`` per command (``fast_exec=False``).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable

from envkit.sandbox import DockerSandbox, SandboxConfig
from envkit.sandbox.pool import SandboxPool


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def row(name: str, xs: list[float]) -> None:
    print(f"  {name:<44} p50 {1e3 * pct(xs, 0.5):8.2f} ms   p95 {1e3 * pct(xs, 0.95):8.2f} ms")


def bench_acquire(n: int, cold_n: int) -> None:
    print(f"1. warm pool acquire+release vs cold start ({n} warm, {cold_n} cold, interleaved)")
    image = SandboxConfig().image
    warm: list[float] = []
    cold_cli: list[float] = []
    cold_sdk: list[float] = []
    with SandboxPool(size=4) as pool:

        def acquire_release() -> None:
            sb = pool.get()
            pool.put(sb)

        for i in range(n):
            warm.append(timed(acquire_release))
            if i % max(1, n // cold_n) == 0 and len(cold_cli) < cold_n:
                cold_cli.append(
                    timed(
                        lambda: subprocess.run(["docker", "run", "--rm", image, "true"], check=True)
                    )
                )
                cold_sdk.append(timed(lambda: DockerSandbox().close()))
            time.sleep(0.15)  # the episode: the released sandbox is cleaned meanwhile
        t0 = time.perf_counter()
        for _ in range(40):
            acquire_release()
        recycle_rate = 40 / (time.perf_counter() - t0)
    row("warm SandboxPool acquire + release", warm)
    row("cold `docker run --rm IMAGE true` (CLI)", cold_cli)
    row("cold DockerSandbox() + close() (SDK)", cold_sdk)
    for name, xs in (("docker run", cold_cli), ("DockerSandbox()", cold_sdk)):
        ratio50 = pct(xs, 0.5) / pct(warm, 0.5)
        ratio95 = pct(xs, 0.95) / pct(warm, 0.95)
        print(
            f"  => warm pool vs cold {name}: {ratio50:.0f}x faster at p50, {ratio95:.0f}x at "
            f"p95 (goal >= 20x)"
        )
    print(
        f"  back-to-back acquire+release with 4 sandboxes (clean-up bound): "
        f"{recycle_rate:.1f} episodes/s"
    )


def bench_exec(n: int) -> None:
    print(f"\n2. exec overhead: `true` in the same kind of container ({n} runs each, interleaved)")
    fast = DockerSandbox()
    slow = DockerSandbox(SandboxConfig(fast_exec=False))
    try:
        fast.exec(["true"])  # start the supervisor channel
        container = fast._client.containers.get(fast.container_id)
        samples: dict[str, list[float]] = {k: [] for k in ("fast", "slow", "cli", "sdk")}
        cli = ["docker", "exec", "-u", fast.config.user, fast.container_id, "true"]
        for _ in range(n):
            samples["fast"].append(timed(lambda: fast.exec(["true"])))
            samples["slow"].append(timed(lambda: slow.exec(["true"])))
            samples["cli"].append(timed(lambda: subprocess.run(cli, check=True)))
            samples["sdk"].append(
                timed(lambda: container.exec_run(["true"], user=fast.config.user))
            )
    finally:
        fast.close()
        slow.close()
    row("DockerSandbox.exec (persistent supervisor)", samples["fast"])
    row("DockerSandbox.exec (fast_exec=False)", samples["slow"])
    row("raw `docker exec CONTAINER true` (CLI)", samples["cli"])
    row("raw docker-py container.exec_run", samples["sdk"])
    for name, key in (("persistent supervisor", "fast"), ("fast_exec=False", "slow")):
        for raw_name, raw_key in (("docker exec CLI", "cli"), ("docker-py exec_run", "sdk")):
            ratio = pct(samples[key], 0.5) / pct(samples[raw_key], 0.5)
            print(
                f"  => DockerSandbox.exec ({name}) / {raw_name}: {ratio:.2f}x at p50 (goal <= 1.2x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--acquires", type=int, default=60, help="warm acquire+release samples")
    parser.add_argument("--cold", type=int, default=12, help="cold start samples")
    parser.add_argument("--execs", type=int, default=60, help="exec samples per variant")
    args = parser.parse_args()
    bench_acquire(args.acquires, args.cold)
    bench_exec(args.execs)


if __name__ == "__main__":
    main()
