"""An agent written with the plain ``openai`` SDK, played through envkit's capture gateway.

Shows: ``async def agent(client, task)`` with two model calls per task (answer, hear a checker's
verdict, answer again) using ``client.chat.completions.create`` exactly as against OpenAI;
``envkit.register_agent`` turning it into an environment; ``envkit.collect`` playing it over an
in-process ``HFPolicy`` (the gateway hands each episode an ``openai.AsyncOpenAI`` bound to its
own session URL); and what came back: the outcome, the reward, the recorded calls, and the
token ids the model sampled (the two calls link into one training sequence).

The model is a tiny random one, so the answers are gibberish and the reward is 0: the point is the
plumbing. Swap ``"tiny-random"`` for ``"smollm2-135m"`` to see real words.

Run:
    python examples/agent_openai_sdk.py
"""

from __future__ import annotations

from typing import Any

import openai

import envkit
from envkit.policies import HFPolicy

MODEL = "policy"  # the model name the agent sends: the gateway session serves only this one
VERDICT = "A checker says: that is not right. Check your sum and give the final number."


async def solve(client: openai.AsyncOpenAI, task: Any) -> str:
    """Answers, hears the checker's verdict, answers again: two model calls per task."""
    messages: list[dict[str, Any]] = [dict(m) for m in task.messages]
    first = await client.chat.completions.create(model=MODEL, messages=messages)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content or ""},
        {"role": "user", "content": VERDICT},
    ]
    final = await client.chat.completions.create(model=MODEL, messages=messages)
    return final.choices[0].message.content or ""


def main() -> None:
    env_id = envkit.register_agent(
        "OpenAISdkSums-v0",
        agent=solve,
        tasks=[{"prompt": f"What is {a} + {b}?", "answer": a + b} for a, b in [(2, 3), (4, 4)]],
        reward="numeric_match",
        override=True,
    )
    policy = HFPolicy.from_pretrained("tiny-random", max_new_tokens=8, seed=0)
    groups = envkit.collect(env_id, policy, seeds=range(2), group_size=2)
    trajectories = [t for group in groups for t in group]
    print(f"episodes: {len(trajectories)}")
    print(f"outcomes: {sorted({t.outcome for t in trajectories})}")
    print(f"calls per episode: {[int(t.metrics['gateway/calls']) for t in trajectories]}")
    traj = trajectories[0]
    print(f"roles: {[m.role for m in traj.messages]}")
    print(f"branches: {int(traj.metrics['gateway/branches'])}")
    print(f"sampled token ids per call: {[len(c.token_ids or []) for c in traj.completions]}")
    print(f"reward: {traj.reward}")


if __name__ == "__main__":
    main()
