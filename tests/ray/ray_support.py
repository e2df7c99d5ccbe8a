"""A two-node Ray cluster on this host, and the envs/policies the Ray tests send to its workers.

The workers import this module by name (the cluster's processes get its folder on
``PYTHONPATH``), so the classes and functions here travel by reference, as a user's would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit import ChatEnv, Feedback, Task
from envkit.types import Message

HERE = Path(__file__).resolve().parent
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """The processes of a local cluster started by ``start_cluster`` (stopped by ``stop``)."""

    address: str
    temp_dir: str
    port: int
    env: dict[str, str] = field(repr=False)

    def processes(self) -> list[int]:
        """Pids of this cluster's processes: those naming its temp dir or port, and their
        descendants (workers rename themselves ``ray::...``)."""
        roots, parents = set(), {}
        marks = (self.temp_dir.encode(), f":{self.port}".encode())
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
            if pid != os.getpid() and b"ray" in cmd and any(m in cmd for m in marks):
                roots.add(pid)
        found = set(roots)
        grew = True
        while grew:
            kids = {p for p, pp in parents.items() if pp in found and p not in found}
            found |= kids
            grew = bool(kids)
        found.discard(os.getpid())
        return sorted(found)

    def stop(self) -> None:
        """SIGTERM every process of this cluster (only those), then SIGKILL what is left after
        3 s: the raylets end their workers and agents at once, but the GCS server and the
        autoscaler's monitor outwait any grace (they still ran 12 s after SIGTERM)."""
        pids = self.processes()
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while pids and time.monotonic() < deadline:
                time.sleep(0.1)
                pids = [p for p in pids if _alive(p)]
            # Those that outlived the signal (orphans no longer descend from the cluster's
            # roots), and any found now (a worker started meanwhile).
            pids = sorted(set(pids) | set(self.processes()))
            if not pids:
                return


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def start_cluster() -> Cluster:
    """``ray start --head`` (resource ``envkit_node_a``) plus a second node (``envkit_node_b``)."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ekr", dir="/tmp")  # short: Unix socket paths live here
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
        "RAY_USAGE_STATS_ENABLED": "0",
        # A cluster of this host for this test; Ray >= 2.5x turns token auth on when
        # ~/.ray/auth_token exists (any earlier ray.init() made one), and then a second node
        # started without the token cannot join.
        "RAY_AUTH_MODE": "disabled",
    }
    common = ["--num-cpus", "2", "--object-store-memory", str(100 * 1024**2)]
    common += ["--temp-dir", temp_dir, "--disable-usage-stats"]
    cluster = Cluster(f"127.0.0.1:{port}", temp_dir, port, env)
    try:
        for extra in (
            ["--head", "--port", str(port), "--include-dashboard=false", "--ray-client-server-port",
             str(free_port()), "--resources", '{"envkit_node_a": 100}'],
            ["--address", cluster.address, "--resources", '{"envkit_node_b": 100}'],
        ):  # fmt: skip
            subprocess.run(
                [*RAY, "start", *extra, *common],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster


# ----------------------------------------------------------------------------- envs, policies


class CountEnv(ChatEnv):
    """Say the seed's number; wrong answers get another try (up to 3 turns)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_turns=kwargs.pop("max_turns", 3), **kwargs)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        n = int(self.np_random.integers(100))
        return Task(messages=[{"role": "user", "content": f"Say {n}."}], answer=str(n))

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        ok = (message.content or "").strip() == self.task.answer
        return Feedback(
            reward=1.0 if ok else 0.0,
            done=ok,
            messages=[] if ok else [{"role": "user", "content": "no"}],
        )


class BlockingEnv(CountEnv):
    """``CountEnv`` whose step writes ``<dir>/<pid>-<seed>-<k>`` and then, for ``block_seeds``,
    waits until ``<dir>/release`` exists (at most ``limit`` s)."""

    def __init__(self, *, marker_dir: str, block_seeds: tuple[int, ...], limit: float = 120.0):
        super().__init__(max_turns=1)
        self.marker_dir = Path(marker_dir)
        self.block_seeds = block_seeds
        self.limit = limit
        self.seed: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        self.seed = seed
        return super().reset(seed=seed, options=options)

    def respond(self, message: Message) -> Feedback:
        (self.marker_dir / f"{os.getpid()}-{self.seed}-{time.monotonic_ns()}").touch()
        if self.seed in self.block_seeds:
            deadline = time.monotonic() + self.limit
            while not (self.marker_dir / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().respond(message)


def half_right(messages: list[dict[str, Any]], tools: Any) -> str:
    """Deterministic: says the asked number when it is even, else a wrong one."""
    n = int(re.findall(r"\d+", messages[0]["content"])[0])
    return str(n) if n % 2 == 0 else str(n + 1)


def say_number(messages: list[dict[str, Any]], tools: Any) -> str:
    """Deterministic: says the number of the last message when it is even, else a wrong one."""
    n = int("".join(c for c in messages[-1]["content"] if c.isdigit()))
    return str(n if n % 2 == 0 else n + 1)


def arithmetic_solver(messages: list[dict[str, Any]], tools: Any) -> str:
    """Deterministic: answers Arithmetic-v0 right when the first operand is even."""
    question = next(m["content"] for m in messages if m["role"] == "user")
    found = re.findall(r"(-?\d+) ([-+*]) (-?\d+)", question)
    if not found:
        return "0"
    a, op, b = found[0]
    value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    return str(value if int(a) % 2 == 0 else value + 1)


def sandbox_probe(messages: list[dict[str, Any]], tools: Any) -> Any:
    """Deterministic PythonTools-v0 player: one ``run_shell`` call in the sandbox, then gives up."""
    if not any(m["role"] == "tool" for m in messages):
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call-1",
                    "type": "function",
                    "function": {
                        "name": "run_shell",
                        "arguments": '{"command": "ls /work | wc -l"}',
                    },
                }
            ],
        }
    return "I do not know."


def say_env_var(messages: list[dict[str, Any]], tools: Any) -> str:
    """Answers with ``$ENVKIT_TEST_TOKEN`` of the process that plays (checks forwarding)."""
    return os.environ.get("ENVKIT_TEST_TOKEN", "<unset>")


class WaitingProbe:
    """``sandbox_probe`` that first writes ``<dir>/<pid>-<n>`` and waits for ``<dir>/release``
    (the episode holds its sandbox meanwhile: PythonTools-v0 takes it at reset)."""

    def __init__(self, marker_dir: str, limit: float = 120.0) -> None:
        self.marker_dir = Path(marker_dir)
        self.limit = limit

    async def __call__(self, messages: list[dict[str, Any]], tools: Any) -> Any:
        import asyncio

        if not any(m["role"] == "tool" for m in messages):
            (self.marker_dir / f"{os.getpid()}-{time.monotonic_ns()}").touch()
            deadline = time.monotonic() + self.limit
            while not (self.marker_dir / "release").exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return sandbox_probe(messages, tools)
