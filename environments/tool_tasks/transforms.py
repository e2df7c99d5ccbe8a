"""Tool-use templates whose answer is a file the model must write (checked in the sandbox)."""

from __future__ import annotations

import numpy as np

from envkit.environments.tool_tasks._model import WORDS, ToolTask, pick, template


@template
def csv_to_json(rng: np.random.Generator) -> ToolTask:
    people = [
        {
            "name": f"{pick(rng, WORDS).title()} {pick(rng, WORDS).title()}",
            "age": int(rng.integers(18, 90)),
        }
        for _ in range(int(rng.integers(5, 15)))
    ]
    lines = ["name,age,city"] + [f"{p['name']},{p['age']},{pick(rng, WORDS)}" for p in people]
    return ToolTask(
        "csv_to_json",
        "Convert data/people.csv into out/people.json: a JSON list with one object per row, in "
        'the same order, with the keys "name" (a string) and "age" (an integer) only. When the '
        "file is written, reply with done.",
        {"data/people.csv": "\n".join(lines) + "\n"},
        people,
        "file_json",
        output_path="out/people.json",
    )


@template
def reverse_lines(rng: np.random.Generator) -> ToolTask:
    lines = [" ".join(pick(rng, WORDS, size=3)) for _ in range(int(rng.integers(5, 25)))]
    return ToolTask(
        "reverse_lines",
        "Write out/reversed.txt containing the lines of data/lines.txt in reverse order (last "
        "line first), one per line. When the file is written, reply with done.",
        {"data/lines.txt": "\n".join(lines) + "\n"},
        "\n".join(reversed(lines)),
        "file_text",
        output_path="out/reversed.txt",
    )


@template
def sort_unique_words(rng: np.random.Generator) -> ToolTask:
    words = pick(rng, WORDS, size=int(rng.integers(20, 60)))
    return ToolTask(
        "sort_unique_words",
        "data/words.txt has one word per line, with repeats. Write out/unique.txt with each "
        "distinct word once, sorted alphabetically, one per line. When the file is written, "
        "reply with done.",
        {"data/words.txt": "\n".join(words) + "\n"},
        "\n".join(sorted(set(words))),
        "file_text",
        output_path="out/unique.txt",
    )
