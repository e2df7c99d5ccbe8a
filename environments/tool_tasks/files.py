"""Tool-use templates over generated directory trees."""

from __future__ import annotations

import numpy as np

from envkit.environments.tool_tasks._model import WORDS, ToolTask, pick, template

EXTENSIONS = [".py", ".txt", ".md", ".json", ".log", ".csv"]


def _tree(rng: np.random.Generator, root: str, n_files: int) -> dict[str, str]:
    dirs = [root]
    for _ in range(int(rng.integers(4, 9))):
        dirs.append(f"{pick(rng, dirs)}/{pick(rng, WORDS)}")
    files: dict[str, str] = {}
    while len(files) < n_files:
        path = (
            f"{pick(rng, dirs)}/{pick(rng, WORDS)}_{int(rng.integers(100))}{pick(rng, EXTENSIONS)}"
        )
        size = int(rng.integers(0, 400))
        files[path] = "".join(pick(rng, "abcdefgh \n", size=size))
    return files


@template
def tree_count_extension(rng: np.random.Generator) -> ToolTask:
    files = _tree(rng, "project", int(rng.integers(20, 45)))
    ext = pick(rng, EXTENSIONS)
    return ToolTask(
        "tree_count_extension",
        f"How many files with the extension {ext} are there under project/ (all "
        "subdirectories included)? Answer with the number.",
        files,
        sum(1 for p in files if p.endswith(ext)),
        "int",
    )


@template
def tree_find_token(rng: np.random.Generator) -> ToolTask:
    files = _tree(rng, "docs", int(rng.integers(15, 35)))
    token = f"TOKEN-{int(rng.integers(10**6, 10**7))}"
    target = pick(rng, sorted(files))
    files[target] = files[target] + f"\n{token}\n"
    return ToolTask(
        "tree_find_token",
        f"Exactly one file under docs/ contains the text {token}. What is its path, relative to "
        "the work directory (it starts with docs/)?",
        files,
        target,
        "str",
    )


@template
def tree_largest_file(rng: np.random.Generator) -> ToolTask:
    files = _tree(rng, "data", int(rng.integers(10, 30)))
    target = pick(rng, sorted(files))
    files[target] = "z" * (max(len(c) for c in files.values()) + int(rng.integers(1, 100)))
    return ToolTask(
        "tree_largest_file",
        "Which file under data/ is the largest, in bytes? Answer with its path relative to the "
        "work directory (it starts with data/).",
        files,
        target,
        "str",
    )


@template
def tree_total_size(rng: np.random.Generator) -> ToolTask:
    files = _tree(rng, "logs", int(rng.integers(10, 30)))
    ext = pick(rng, [".log", ".txt", ".csv"])
    total = sum(len(c.encode()) for p, c in files.items() if p.endswith(ext))
    return ToolTask(
        "tree_total_size",
        f"What is the total size in bytes of all the {ext} files under logs/? Answer with the "
        "number.",
        files,
        total,
        "int",
    )


@template
def tree_deepest_dir(rng: np.random.Generator) -> ToolTask:
    depth = int(rng.integers(4, 8))
    deepest = "root/" + "/".join(f"{pick(rng, WORDS)}{i}" for i in range(depth))
    files = _tree(rng, "root", int(rng.integers(8, 20)))
    files = {p: c for p, c in files.items() if p.count("/") < depth}
    files[f"{deepest}/leaf.txt"] = "the bottom\n"
    return ToolTask(
        "tree_deepest_dir",
        "Which directory under root/ is nested most deeply? Answer with its path relative to "
        "the work directory (it starts with root/).",
        files,
        deepest,
        "str",
    )
