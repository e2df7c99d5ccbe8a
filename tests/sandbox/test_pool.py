"""SandboxPool: warm sandboxes, clean per episode, back-pressure, health checks, replacement."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from envkit.sandbox import PoolClosedError, PoolTimeoutError, SandboxConfig
from envkit.sandbox.pool import SandboxPool, close_shared_pools, shared_pool

pytestmark = pytest.mark.docker


def test_start_warms_all_and_acquire_takes_a_warm_one(docker_client: Any) -> None:
    with SandboxPool(size=2) as pool:
        assert pool.idle == 2 and pool.stats.created == 2
        with pool.acquire() as sb:
            assert pool.stats.created == 2  # no container is started on acquire
            assert sb.exec("echo warm").stdout == "warm\n"
            assert pool.busy == 1 and pool.idle == 1
        assert pool.busy == 0


def test_each_episode_gets_a_clean_sandbox(docker_client: Any) -> None:
    with SandboxPool(size=1) as pool:
        for episode in range(3):
            with pool.acquire() as sb:
                listing = sb.exec("ls -A /work /tmp").stdout.split()
                assert listing == ["/tmp:", "/work:"], (episode, listing)
                sb.write_files({f"episode{episode}.txt": "x", "/tmp/t": "y"})
                sb.exec("sleep 300 >/dev/null 2>&1 &")
        assert pool.stats.created == 1 and pool.stats.recycled >= 2


def test_back_pressure_waits_for_a_release(docker_client: Any) -> None:
    with SandboxPool(size=1) as pool:
        held = pool.get()
        with pytest.raises(PoolTimeoutError, match="size=1"):
            pool.get(timeout=0.3)
        got: dict[str, Any] = {}
        released = threading.Event()

        def waiter() -> None:
            got["sb"] = pool.get(timeout=30)
            got["after_put"] = released.is_set()

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.5)
        assert "sb" not in got  # still blocked: never more than size containers
        released.set()
        pool.put(held)
        t.join(timeout=30)
        assert got["sb"] is held and got["after_put"]  # it got the sandbox only once put back
        pool.put(got["sb"])
        assert pool.stats.created == 1


def test_concurrent_episodes_share_the_pool(docker_client: Any) -> None:
    async def main(pool: SandboxPool) -> list[str]:
        async def episode(i: int) -> str:
            async with pool.acquire() as sb:
                return (await sb.aexec(f"sleep 0.3; echo {i}")).stdout.strip()

        return list(await asyncio.gather(*(episode(i) for i in range(6))))

    with SandboxPool(size=3) as pool:
        assert asyncio.run(main(pool)) == [str(i) for i in range(6)]
        assert pool.stats.created == 3 and pool.stats.waits >= 1


def test_cancelled_waiter_does_not_lose_a_sandbox(docker_client: Any) -> None:
    async def main(pool: SandboxPool) -> None:
        held = await pool.aget()
        waiter = asyncio.ensure_future(pool.aget(timeout=30))
        await asyncio.sleep(0.2)
        waiter.cancel()
        pool.put(held)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        again = await pool.aget(timeout=10)  # the sandbox came back despite the cancellation
        pool.put(again)

    with SandboxPool(size=1) as pool:
        asyncio.run(main(pool))
        assert pool.stats.created == 1


def test_dead_idle_sandbox_is_replaced(docker_client: Any, container_state: Any) -> None:
    with SandboxPool(size=1) as pool:
        with pool.acquire() as sb:
            first = sb.container_id
        time.sleep(0.3)  # let the recycle finish
        docker_client.api.kill(first)
        with pool.acquire(timeout=30) as sb:
            assert sb.container_id != first
            assert sb.exec("echo new").stdout == "new\n"
        assert pool.stats.replaced >= 1


def test_sandbox_killed_during_episode_is_replaced(docker_client: Any) -> None:
    with SandboxPool(size=1) as pool:
        with pool.acquire() as sb:
            first = sb.container_id
            sb.kill()
        with pool.acquire(timeout=30) as sb:
            assert sb.container_id != first and sb.exec("echo ok").ok
        assert pool.stats.replaced == 1 and pool.stats.created == 2


def test_max_uses_replaces_old_sandboxes(docker_client: Any) -> None:
    with SandboxPool(size=1, max_uses=2) as pool:
        ids = []
        for _ in range(3):
            with pool.acquire(timeout=30) as sb:
                ids.append(sb.container_id)
        assert ids[0] == ids[1] != ids[2]


def test_close_destroys_everything(docker_client: Any, container_state: Any) -> None:
    pool = SandboxPool(size=2).start()
    held = pool.get()
    ids = [held.container_id] + [s.container_id for s in pool._idle]
    pool.close()
    pool.close()
    assert all(container_state(i) is None for i in ids)
    with pytest.raises(PoolClosedError):
        pool.get()
    pool.put(held)  # releasing into a closed pool is harmless


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        SandboxPool(size=0)
    with pytest.raises(ValueError, match="backend"):
        SandboxPool(size=1, backend="podman").start()  # type: ignore[arg-type]


def test_shared_pool_is_per_config(docker_client: Any) -> None:
    a = shared_pool("docker", SandboxConfig())
    assert shared_pool("docker", SandboxConfig()) is a
    assert shared_pool("docker", SandboxConfig(cpus=0.5)) is not a
    close_shared_pools()
    assert a.closed
