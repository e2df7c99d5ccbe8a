"""A sandboxed coding environment on your own Docker image.

Shows: building a sandbox image from your own Dockerfile with no registry
(``envkit.sandbox.image.build_image``: your image ``FROM`` envkit's local Debian base, then
envkit's hardening layer on top); a ``SandboxedEnv`` whose episodes each get a fresh sandbox of
that image (``sandbox_config={"image": ...}``); grading model code inside the sandbox, never on
this machine; and that the image matters: the same solution fails in the default image, which
lacks the ``geometry`` library and the data file.

Needs Docker and envkit's base image (``envkit sandbox build`` makes it, once).

Run:
    python examples/sandboxed_coding_env.py
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import envkit
from envkit import Feedback, Task
from envkit.environments import SandboxedEnv
from envkit.parsing import extract_code
from envkit.sandbox.image import build_image
from envkit.types import Message

IMAGE = "envkit-example-coding:latest"
DOCKERFILE = Path(__file__).parent / "coding_image" / "Dockerfile"

TASKS = [
    {
        "prompt": "Write `total_area(path)`: read the JSON list of shapes at `path` and return "
        "their total area. Use `geometry.circle_area(radius)` for circles; squares have a side.",
        "tests": [
            "import math",
            "assert abs(total_area('/data/shapes.json') - (math.pi * 1.25 + 4)) < 1e-9",
        ],
    },
    {
        "prompt": "Write `count_circles(path)`: how many circles the JSON list of shapes at "
        "`path` holds.",
        "tests": ["assert count_circles('/data/shapes.json') == 2"],
    },
]


class ShapesEnv(SandboxedEnv):
    """Write a function over the sandbox's data file; reward 1.0 when its test passes."""

    def __init__(self, **options: Any) -> None:
        super().__init__(max_turns=1, **options)  # options: sandbox, sandbox_config, pool

    def make_task(self, options: dict[str, Any] | None) -> Task:
        task = TASKS[int(self.np_random.integers(len(TASKS)))]
        return Task(messages=[{"role": "user", "content": task["prompt"]}], answer=task)

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        code = extract_code(message.content)
        if code is None:
            return Feedback(reward=0.0, done=True, info={"error": "no code"})
        nonce = secrets.token_hex(8)
        lines = ["from solution import *", *self.task.answer["tests"], f"print({nonce!r})"]
        test = "\n".join(lines)
        sandbox = self.sandbox()  # this episode's sandbox (fresh from the pool)
        sandbox.write_files({"solution.py": code, "check.py": test})
        result = sandbox.exec(["python3", "check.py"], timeout=20)
        ok = result.exit_code == 0 and result.stdout.strip().endswith(nonce)
        error = "" if ok else (result.stderr.strip().splitlines() or [result.describe()])[-1]
        return Feedback(reward=float(ok), done=True, info={"error": error})


envkit.register("Shapes-v0", entry_point=ShapesEnv)

SOLUTION = """```python
import json
from geometry import circle_area

def total_area(path):
    shapes = json.load(open(path))
    return sum(circle_area(s["radius"]) if s["kind"] == "circle" else s["side"] ** 2
               for s in shapes)

def count_circles(path):
    return sum(s["kind"] == "circle" for s in json.load(open(path)))
```"""


def run(image: str) -> None:
    env = envkit.make("Shapes-v0", sandbox_config={"image": image})
    try:
        for seed in range(2):
            obs, _ = env.reset(seed=seed)
            _, reward, _, _, info = env.step(SOLUTION)
            task = json.dumps(obs[-1]["content"][:28])
            print(f"{image}: task {task} reward {reward} {info['error'] or ''}".rstrip())
    finally:
        env.close()  # the sandbox goes back to its pool; pools are closed at exit


def main() -> None:
    built = build_image(IMAGE, dockerfile=DOCKERFILE, force=True)  # fast: Docker caches layers
    print(f"built {built.tag} in {built.seconds:.1f}s")
    run(IMAGE)
    run("envkit-sandbox:latest")  # the default image: no geometry library, no /data


if __name__ == "__main__":
    main()
