"""Core benchmark: framework overhead per step, rollout concurrency, ``import envkit`` time.

Run: ``python benchmarks/bench_core.py`` (about 30 s). Every figure is measured side by side in
this one run and printed with its goal:

1. overhead per step of a trivial env through ``ChatEnv.step`` and through ``collect`` (the
   default ``step_in_thread = "auto"``, ``False``: always on the event loop, ``True``: always in
   a worker thread), against calling the env's logic directly; goal <= 50 us/step for the
   default; and the cost of a step at turn 1 against turn 100 of the conversation, through
   ``ChatEnv.step`` and through ``collect`` (with a policy that does not read the conversation:
   a real one renders it, which is its own cost); goal: ratio <= 1.2 (the same cost);
2. ``collect`` of 64 episodes whose env step and policy each take 50 ms, against a serial loop
   over the same env and policy; goal >= 30x faster;
3. ``import envkit`` in fresh interpreters (median), next to a bare interpreter and
   ``import gymnasium``; goal < 0.5 s;
4. timeouts cut, not waited for: a step whose sync tool blocks 2 s (tool timeout 0.2 s), a
   step whose async tool sleeps 2 s (0.2 s), and ``collect`` with one episode stuck for 2 s
   (``episode_timeout=0.3``), each next to the time the blocked work would have taken;
   goal: within 1 s of the timeout;
5. the scripted OpenAI server answering 8 requests of 0.3 s each at once, against 8 x 0.3 s;
   goal >= 4x; and Countdown's expression parser on its largest accepted input; goal < 50 ms.

The tests check the behaviour behind 4 and 5 (cut, overlapped, exact) without timing it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from envkit import ChatEnv, Feedback, Task, ToolBox, tool
from envkit.policies import BasePolicy, CallablePolicy
from envkit.rollout import collect
from envkit.types import Completion, GenerationRequest, Message, ToolCall

TURNS = 10


def judge(text: str | None, answer: str) -> tuple[float, bool]:
    """The trivial env's whole logic: is the reply the answer?"""
    ok = (text or "").strip() == answer
    return (1.0 if ok else 0.0), ok


class Trivial(ChatEnv):
    """Answer "7"; wrong replies get "no" until ``max_turns``."""

    def __init__(self, max_turns: int = TURNS) -> None:
        super().__init__(max_turns=max_turns)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        return Task(messages=[{"role": "user", "content": "Say 7."}], answer="7")

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        reward, ok = judge(message.content, self.task.answer)
        return Feedback(
            reward=reward, done=ok, messages=[] if ok else [{"role": "user", "content": "no"}]
        )


class TrivialInline(Trivial):
    step_in_thread = False


class TrivialThread(Trivial):
    step_in_thread = True


class Constant(BasePolicy):
    """Always answers "8", without reading the conversation."""

    def __init__(self) -> None:
        self.completion = Completion(message=Message(role="assistant", content="8"))

    async def agenerate(self, requests: Any) -> list[Completion]:
        return [self.completion for _ in requests]


class Sleepy(ChatEnv):
    """One turn; ``respond`` blocks for ``DELAY`` seconds (like a sandbox call)."""

    DELAY = 0.05

    def make_task(self, options: dict[str, Any] | None) -> Task:
        return Task(messages=[{"role": "user", "content": "Say 7."}], answer="7")

    def respond(self, message: Message) -> Feedback:
        time.sleep(self.DELAY)
        return Feedback(reward=float(message.content == "7"), done=True)


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(repeats))


def bench_direct(steps: int) -> float:
    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            judge("8", "7")
        return (time.perf_counter() - start) / steps

    return best_of(5, run)


def bench_step(steps: int) -> float:
    env = Trivial()

    def run() -> float:
        done = 0
        start = time.perf_counter()
        while done < steps:
            env.reset(seed=0)
            for _ in range(TURNS):
                done += 1
                if any(env.step("8")[2:4]):
                    break
        return (time.perf_counter() - start) / done

    return best_of(5, run)


def bench_episode(episodes: int) -> float:
    """``reset`` + one ``step`` of a 1-turn episode, per step."""
    env = Trivial(max_turns=1)

    def run() -> float:
        start = time.perf_counter()
        for seed in range(episodes):
            env.reset(seed=seed)
            env.step("8")
        return (time.perf_counter() - start) / episodes

    return best_of(5, run)


def bench_step_at(turn: int, repeats: int, steps: int = 10) -> float:
    """``ChatEnv.step`` at turn ``turn`` of a conversation (mean of ``steps`` steps)."""
    env = Trivial(max_turns=turn + steps)

    def run() -> float:
        env.reset(seed=0)
        for _ in range(turn - 1):
            env.step("8")
        start = time.perf_counter()
        for _ in range(steps):
            env.step("8")
        return (time.perf_counter() - start) / steps

    return best_of(repeats, run)


def bench_collect(
    env_cls: type[ChatEnv], episodes: int, turns: int, policy: Any | None = None
) -> float:
    policy = policy or CallablePolicy(lambda messages, tools: "8")

    def run() -> float:
        start = time.perf_counter()
        groups = collect(
            lambda: env_cls(max_turns=turns),  # type: ignore[call-arg]
            policy,
            seeds=list(range(episodes)),
            concurrency=1,
            progress=False,
        )
        wall = time.perf_counter() - start
        steps = sum(len(t.step_rewards) for g in groups for t in g)
        assert steps == episodes * turns, steps
        return wall / steps

    return best_of(3, run)


def bench_concurrency(episodes: int, delay: float) -> tuple[float, float]:
    Sleepy.DELAY = delay
    policy = CallablePolicy(lambda messages, tools: "7", delay=delay)

    env = Sleepy()
    start = time.perf_counter()
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            request = GenerationRequest(messages=[Message.coerce(m) for m in obs], tools=None)
            completion = policy.generate([request])[0]
            obs, _, terminated, truncated, _ = env.step(completion.message)
            done = terminated or truncated
    serial = time.perf_counter() - start

    start = time.perf_counter()
    groups = collect(
        Sleepy, policy, seeds=list(range(episodes)), concurrency=episodes, progress=False
    )
    concurrent = time.perf_counter() - start
    assert all(t.outcome == "ok" and t.reward == 1.0 for g in groups for t in g)
    return serial, concurrent


def bench_import(runs: int) -> dict[str, float]:
    def median(code: str) -> float:
        times = []
        for _ in range(runs):
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(float(out.stdout.strip()))
        return statistics.median(times)

    def median_process(code: str) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return {
        "import gymnasium": median("import gymnasium"),
        "import envkit": median("import envkit"),
        "python -c pass (process)": median_process("pass"),
        "python -c 'import envkit' (process)": median_process("import envkit"),
    }


def bench_timeouts(block: float) -> dict[str, float]:
    """Wall time of calls that hit a timeout while the work under them would take ``block`` s."""

    @tool(timeout=0.2)
    def stuck() -> str:
        """Blocks its thread."""
        time.sleep(block)
        return "done"

    @tool(timeout=0.2)
    async def nap() -> str:
        """Sleeps on the event loop."""
        await asyncio.sleep(block)
        return "done"

    out: dict[str, float] = {}
    for name, fn in (("sync tool, timeout 0.2 s", stuck), ("async tool, timeout 0.2 s", nap)):
        start = time.perf_counter()
        msgs, stats = ToolBox([fn]).call_sync([ToolCall.create(fn.name, {}, id="1")])
        out[name] = time.perf_counter() - start
        assert stats.timeouts == 1, msgs

    class Stuck(Sleepy):
        DELAY = block

    policy = CallablePolicy(lambda messages, tools: "7")
    start = time.perf_counter()
    groups = collect(Stuck, policy, seeds=[0], episode_timeout=0.3, progress=False)
    out["collect, episode_timeout 0.3 s"] = time.perf_counter() - start
    assert groups[0][0].outcome == "timeout"
    return out


def bench_server(requests: int, delay: float) -> float:
    """Wall time of ``requests`` concurrent requests to the scripted server, ``delay`` s each."""
    import json
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from envkit.testing import ScriptedOpenAIServer, echo

    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with ScriptedOpenAIServer(responder=lambda r: echo(r).delayed(delay)) as server:

        def post(_: int) -> int:
            req = urllib.request.Request(
                server.url + "/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status

        start = time.perf_counter()
        with ThreadPoolExecutor(requests) as pool:
            statuses = list(pool.map(post, range(requests)))
        wall = time.perf_counter() - start
    assert statuses == [200] * requests, statuses
    return wall


def bench_countdown_parser() -> float:
    """Best-of-5 time of Countdown's parser on the worst input it accepts."""
    from envkit.environments._expression import MAX_DIGITS, MAX_LENGTH, parse_expression

    factor = "9" * MAX_DIGITS
    text = "*".join([factor] * (MAX_LENGTH // (len(factor) + 1)))

    def run() -> float:
        start = time.perf_counter()
        assert parse_expression(text).value is not None
        return time.perf_counter() - start

    return best_of(5, run)


def verdict(ok: bool) -> str:
    return "OK  " if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="Steps for the overhead runs.")
    parser.add_argument(
        "--episodes", type=int, default=64, help="Episodes for the concurrency run."
    )
    parser.add_argument("--delay", type=float, default=0.05, help="Env and policy latency (s).")
    parser.add_argument("--import-runs", type=int, default=7)
    args = parser.parse_args()

    print("== 1. framework overhead per step (trivial env, best of repeats)")
    direct = bench_direct(args.steps)
    step = bench_step(args.steps)
    eps = max(1, args.steps // (TURNS * 10))
    rows = [
        ("logic called directly", direct),
        (f"ChatEnv.step, {TURNS}-turn episodes", step),
        ("ChatEnv.reset + step, 1-turn episodes", bench_episode(eps * 4)),
        (f"collect, {TURNS}-turn episodes, default (auto)", bench_collect(Trivial, eps, TURNS)),
        ("collect, 1-turn episodes, default (auto)", bench_collect(Trivial, eps * 4, 1)),
        (
            f"collect, {TURNS}-turn episodes, on the loop",
            bench_collect(TrivialInline, eps, TURNS),
        ),
        ("collect, 1-turn episodes, on the loop", bench_collect(TrivialInline, eps * 4, 1)),
        (
            f"collect, {TURNS}-turn episodes, in a thread",
            bench_collect(TrivialThread, eps, TURNS),
        ),
        ("collect, 1-turn episodes, in a thread", bench_collect(TrivialThread, eps * 4, 1)),
    ]
    print(f"   {'path':<45} {'us/step':>9} {'overhead us':>12}  goal <= 50 us")
    for name, per_step in rows:
        overhead = (per_step - direct) * 1e6
        mark = "" if name.startswith("logic") or "thread" in name else verdict(overhead <= 50)
        print(f"   {name:<45} {per_step * 1e6:>9.2f} {overhead:>12.2f}  {mark}")
    print(
        "   (collect figures include the scripted policy, the Trajectory bookkeeping and asyncio;"
    )
    print("    default: step_in_thread = 'auto'; 'on the loop': False; 'in a thread': True, which")
    print("    pays a thread hop per reset and step: no goal)")

    print("\n   cost per step against the length of the conversation (goal: ratio <= 1.2)")
    print(f"   {'path (us/step)':<48} {'short':>9} {'long':>9} {'ratio':>7}")
    at_1, at_100 = bench_step_at(1, 200), bench_step_at(100, 20)
    depth_rows = [("ChatEnv.step at turn 1 vs turn 100", at_1, at_100)]
    constant = Constant()
    short = bench_collect(Trivial, eps, 20, constant)
    long = bench_collect(Trivial, max(1, eps // 10), 200, constant)
    depth_rows.append(("collect, default: 20- vs 200-turn episodes", short, long))
    for name, first, last in depth_rows:
        ratio = last / first
        print(
            f"   {name:<48} {first * 1e6:>9.2f} {last * 1e6:>9.2f} {ratio:>7.2f}  "
            f"{verdict(ratio <= 1.2)}"
        )
    print("   (collect: mean per step over whole episodes, with a policy that ignores the")
    print("    conversation; a real policy renders it every turn, which is the policy's cost)")

    print(f"\n== 2. {args.episodes} episodes, env step and policy {args.delay * 1e3:.0f} ms each")
    serial, concurrent = bench_concurrency(args.episodes, args.delay)
    ratio = serial / concurrent
    print(f"   serial loop           {serial:8.3f} s")
    print(f"   collect(concurrency={args.episodes}) {concurrent:8.3f} s")
    print(f"   speed-up              {ratio:8.1f}x   goal >= 30x  {verdict(ratio >= 30)}")

    print(f"\n== 3. import time, median of {args.import_runs} fresh interpreters")
    imports = bench_import(args.import_runs)
    for name, seconds in imports.items():
        print(f"   {name:<38} {seconds:7.3f} s")
    envkit_s = imports["import envkit"]
    print(f"   import envkit: {envkit_s:.3f} s   goal < 0.5 s  {verdict(envkit_s < 0.5)}")

    block = 2.0
    print(f"\n== 4. timeouts cut the blocked work ({block:.0f} s) instead of waiting for it")
    for name, seconds in bench_timeouts(block).items():
        print(
            f"   {name:<34} {seconds:7.3f} s  vs {block:.1f} s  goal < 1.2 s  "
            f"{verdict(seconds < 1.2)}"
        )

    n, delay = 8, 0.3
    print(f"\n== 5. scripted server: {n} requests of {delay} s at once; Countdown's parser")
    wall = bench_server(n, delay)
    ratio = n * delay / wall
    print(
        f"   {n} concurrent requests {wall:7.3f} s  vs serial {n * delay:.1f} s  "
        f"({ratio:.1f}x)  goal >= 4x  {verdict(ratio >= 4)}"
    )
    parse = bench_countdown_parser()
    print(
        f"   Countdown parser, largest input {parse * 1e3:7.2f} ms  goal < 50 ms  "
        f"{verdict(parse < 0.05)}"
    )


if __name__ == "__main__":
    main()
