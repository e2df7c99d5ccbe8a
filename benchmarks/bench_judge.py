"""Judge benchmark: request tokens with prefix dedup vs naive concatenation; calls per group.

Run: ``python benchmarks/bench_judge.py`` (about 15 s, most of it importing litellm). Every
figure is measured side by side in this one run and printed with its goal:

1. prompt tokens of one judge request for a group of 8 multi-turn trajectories that share a long
   system prompt, the task and the tool schemas: ``RulerJudge``'s prompt (shared prefix stated
   once) against the same prompt with every trajectory written out in full (naive
   concatenation); tokens counted with litellm's tokenizer for ``gpt-4o``; goal: >= 3x fewer;
2. judge requests per group, counted by a real OpenAI-compatible server on 127.0.0.1 while
   ``score_groups`` scores 16 groups with litellm as the client; goal: exactly 1 (2 with
   ``both_orders=True``), and 0 when the same groups are scored again with the cache on.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from envkit.rewards import JudgeConfig, RulerJudge, score_groups
from envkit.rewards.judge import build_messages
from envkit.testing import ScriptedOpenAIServer, ruler_responder
from envkit.types import Message, ToolCall, Trajectory, TrajectoryGroup

SYSTEM = " ".join(
    f"Rule {k}: you are a careful software agent working in a repository; read files before "
    "editing them, run the tests after every change, never modify the tests, explain each step "
    "briefly and stop when the task is done."
    for k in range(1, 41)
)
TASK = (
    "The function `parse_duration` in utils/time.py returns wrong results for inputs such as "
    "'1h30m' and '90s'. Fix it so that every test in tests/test_time.py passes, without changing "
    "the tests, then summarize what you changed."
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "A repository path."}},
                "required": ["path"],
            },
        },
    }
    for name, description in [
        ("read_file", "Returns the content of a file of the repository."),
        ("write_file", "Replaces the content of a file of the repository."),
        ("run_tests", "Runs the tests under a path and returns pytest's report."),
    ]
]


def trajectory(k: int, turns: int) -> Trajectory:
    """One multi-turn episode; its turns differ from the other trajectories'."""
    messages = [Message(role="system", content=SYSTEM), Message(role="user", content=TASK)]
    for t in range(turns):
        call = ToolCall.create(
            ["read_file", "write_file", "run_tests"][t % 3],
            {"path": f"utils/time.py#{k}.{t}"},
            id=f"c{k}{t}",
        )
        messages.append(
            Message(
                role="assistant",
                content=f"Step {t} of attempt {k}: checking how units are parsed.",
                tool_calls=[call],
            )
        )
        messages.append(
            Message(
                role="tool",
                tool_call_id=f"c{k}{t}",
                name=call.function.name,
                content=f"attempt {k} turn {t}: " + "ok " * (15 + 3 * k),
            )
        )
    messages.append(
        Message(role="assistant", content=f"Attempt {k}: fixed the regex; {k} tests pass.")
    )
    return Trajectory(env_id="bench/Judge-v0", messages=messages, tools=TOOLS)


def group(seed: int, size: int, turns: int) -> TrajectoryGroup:
    return TrajectoryGroup(
        env_id="bench/Judge-v0",
        seed=seed,
        trajectories=[trajectory(seed * 100 + k, turns) for k in range(size)],
    )


def tokens(messages: list[dict[str, str]]) -> int:
    import litellm

    return int(litellm.token_counter(model="gpt-4o", messages=messages))


def bench_tokens(size: int, turns: int) -> tuple[int, int]:
    g = group(0, size, turns)
    ids = [f"T{i + 1}" for i in range(size)]
    dedup = tokens(build_messages(list(g), ids, config=JudgeConfig(dedup_prefix=True)))
    naive = tokens(build_messages(list(g), ids, config=JudgeConfig(dedup_prefix=False)))
    return dedup, naive


def bench_calls(groups: int, size: int, turns: int) -> dict[str, float]:
    score_of = ruler_responder(lambda text: min(1.0, len(text) / 2000))
    out: dict[str, float] = {}
    with (
        ScriptedOpenAIServer(responder=score_of) as server,
        tempfile.TemporaryDirectory() as cache_dir,
    ):
        for label, options in [
            ("default", {"cache": cache_dir}),
            ("both_orders", {"both_orders": True}),
            ("cached re-run", {"cache": cache_dir}),
        ]:
            judge = RulerJudge(
                "openai/judge-bench", api_base=server.url, api_key="bench", **options
            )
            batch = [group(s, size, turns) for s in range(groups)]
            before = len(server.requests)
            start = time.perf_counter()
            report = score_groups(batch, judge)
            wall = time.perf_counter() - start
            assert report.judge_errors == 0 and report.scored == groups * size, report
            out[label] = (len(server.requests) - before) / groups
            out[f"{label} wall s"] = wall
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4, help="Tool round trips per trajectory.")
    parser.add_argument("--groups", type=int, default=16)
    args = parser.parse_args()

    dedup, naive = bench_tokens(args.group_size, args.turns)
    print(f"1. judge request tokens, group of {args.group_size} x {args.turns}-turn trajectories")
    prefix = tokens([{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}])
    print(f"   the shared system prompt + task alone: {prefix} tokens")
    print(f"   naive concatenation : {naive:7d} tokens")
    print(f"   prefix dedup        : {dedup:7d} tokens")
    print(f"   ratio               : {naive / dedup:7.2f}x fewer   (goal >= 3x)")

    calls = bench_calls(args.groups, args.group_size, args.turns)
    print(f"2. judge requests per group ({args.groups} groups, real HTTP server on 127.0.0.1)")
    for label, goal in [("default", 1), ("both_orders", 2), ("cached re-run", 0)]:
        wall = calls[f"{label} wall s"]
        print(f"   {label:<20}: {calls[label]:.2f}   (goal {goal})   {wall:.2f} s")


if __name__ == "__main__":
    main()
