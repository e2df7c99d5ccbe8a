"""A multi-turn tool environment: the model calls ``@tool`` methods, then submits.

Shows: tools as typed, documented methods (``@tool``) that read this episode's state on
``self``; ``ToolBox``; the action format of a tool call (an OpenAI-format assistant message,
arguments as JSON text); tool errors as messages the model can read; ``after_tools`` ending the
episode on ``submit``; and a scripted multi-turn policy run by ``envkit.collect``.

Run:
    python examples/tool_env.py
"""

from __future__ import annotations

import json
from typing import Any

import envkit
from envkit import ChatEnv, Feedback, Task, ToolBox, tool
from envkit.policies import CallablePolicy
from envkit.types import Message

CITIES = {"Paris": 2.1, "Lagos": 15.4, "Lima": 10.1, "Oslo": 0.7, "Osaka": 2.7, "Quito": 2.8}


class PopulationEnv(ChatEnv):
    """Which of two cities is larger? Look their populations up, then submit the name."""

    step_in_thread = False

    def __init__(self, *, max_turns: int = 4, render_mode: str | None = None) -> None:
        self.lookups: list[str] = []  # per-episode tool state, cleared by reset
        self.answer: str | None = None
        super().__init__(
            max_turns=max_turns,
            render_mode=render_mode,
            toolbox=ToolBox([self.population, self.submit]),
        )

    @tool
    def population(self, city: str) -> str:
        """Looks up a city's population.

        Args:
            city: The city's name, e.g. "Paris".
        """
        self.lookups.append(city)
        if city not in CITIES:
            raise ValueError(f"unknown city {city!r}")  # the model reads this as the tool result
        return f"{CITIES[city]} million"

    @tool
    def submit(self, city: str) -> str:
        """Submits the larger city and ends the episode.

        Args:
            city: The city's name.
        """
        self.answer = city
        return "Submitted."

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.lookups, self.answer = [], None
        return super().reset(seed=seed, options=options)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        a, b = self.np_random.choice(sorted(CITIES), size=2, replace=False)
        larger = a if CITIES[a] > CITIES[b] else b
        question = f"Which city has more people, {a} or {b}? Use the tools, then submit."
        return Task(messages=[{"role": "user", "content": question}], reference=str(larger))

    def after_tools(self, message: Message, results: list[Message]) -> Feedback:
        if self.answer is None:
            return Feedback(messages=results)  # the tool results go back to the model
        ok = self.answer == self.task.reference
        info = {"correct": ok, "submitted": self.answer, "lookups": len(self.lookups)}
        return Feedback(reward=float(ok), done=True, messages=results, info=info)

    def respond(self, message: Message) -> Feedback:
        reminder = "Please answer by calling the submit tool."
        return Feedback(messages=[{"role": "user", "content": reminder}])


envkit.register("Population-v0", entry_point=PopulationEnv)


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """One tool call in the OpenAI format (the arguments as JSON text)."""
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": f"call_{name}", "type": "function", "function": function}


def agent(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
    """Turn 1: look both cities up (two calls in one turn). Turn 2: submit the larger."""
    question = next(m["content"] for m in messages if m["role"] == "user")
    a, b = question.split("?")[0].split(", ")[1].split(" or ")
    if messages[-1]["role"] == "user":
        return {"tool_calls": [call("population", city=a), call("population", city=b)]}
    sizes = [float(m["content"].split()[0]) for m in messages if m["role"] == "tool"]
    return {"tool_calls": [call("submit", city=a if sizes[0] > sizes[1] else b)]}


def main() -> None:
    env = envkit.make("Population-v0").unwrapped
    print("tools:", [t["function"]["name"] for t in env.tool_schemas])
    obs, _ = env.reset(seed=0)
    obs, _, _, _, info = env.step({"tool_calls": [call("population", city="Atlantis")]})
    print(f"tool error: {obs[-1]['content']!r} (tool_errors={info['tool_errors']})")

    groups = envkit.collect("Population-v0", CallablePolicy(agent), seeds=range(8), progress=False)
    rewards = [t.reward for g in groups for t in g]
    turns = [sum(m.role == "assistant" for m in t.messages) for g in groups for t in g]
    print(f"rewards: {rewards}")
    print(f"turns per episode: {sorted(set(turns))}")
    first = groups[0][0]
    print(f"outcomes: {sorted({t.outcome for g in groups for t in g})}")
    print("episode 0:")
    for m in first.messages[1:]:
        calls = [f"{c.function.name}({c.function.arguments})" for c in m.tool_calls or []]
        print(f"  {m.role}: {m.content or ' '.join(calls)}")


if __name__ == "__main__":
    main()
