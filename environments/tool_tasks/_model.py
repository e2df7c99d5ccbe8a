"""``ToolTask`` and the template registry of ``PythonTools-v0``.

A template is a function ``(rng) -> ToolTask`` that generates the task's files from a seeded
``numpy.random.Generator`` and computes the answer from the same data, so every seed gives a new
but reproducible task.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from envkit.parsing import normalize_text, parse_number

__all__ = ["TEMPLATES", "WORDS", "AnswerKind", "ToolTask", "check_answer", "pick", "template"]

AnswerKind = Literal["int", "float", "str", "file_json", "file_text"]

WORDS = [
    "amber",
    "basil",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "glade",
    "harbor",
    "island",
    "juniper",
    "kettle",
    "lantern",
    "meadow",
    "nectar",
    "orchard",
    "pebble",
    "quartz",
    "river",
    "saffron",
    "timber",
    "umber",
    "valley",
    "willow",
    "yarrow",
    "zephyr",
    "beacon",
    "canyon",
    "dune",
    "estuary",
    "falcon",
    "granite",
    "heron",
    "iris",
    "jasper",
    "kelp",
    "lotus",
    "marble",
    "nimbus",
]


@dataclass
class ToolTask:
    """A generated task: the question, the files to put in the sandbox and how to check.

    Attributes:
        template: Name of the template that made it.
        question: What the model is asked.
        files: Path (relative to the work dir) -> content, written before the episode starts.
        answer: The expected answer (for ``file_*`` kinds: the expected file content).
        kind: How the answer is checked: ``int``, ``float`` (2 decimals), ``str`` (exact,
            case-insensitive), ``file_json`` / ``file_text`` (the file ``output_path`` is read
            from the sandbox and compared).
        output_path: The file a transform task must write.
    """

    template: str
    question: str
    files: dict[str, str | bytes]
    answer: Any
    kind: AnswerKind
    output_path: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


TEMPLATES: dict[str, Callable[[np.random.Generator], ToolTask]] = {}


def template(
    fn: Callable[[np.random.Generator], ToolTask],
) -> Callable[[np.random.Generator], ToolTask]:
    """Registers a template under its function name."""
    if fn.__name__ in TEMPLATES:
        raise ValueError(f"duplicate template {fn.__name__!r}")
    TEMPLATES[fn.__name__] = fn
    return fn


def pick(rng: np.random.Generator, items: Any, size: int | None = None) -> Any:
    """``rng.choice`` that returns plain Python values."""
    seq = list(items)
    if size is None:
        return seq[int(rng.integers(len(seq)))]
    return [seq[int(i)] for i in rng.integers(len(seq), size=size)]


def check_answer(
    task: ToolTask, answer: str, read_file: Callable[[str], bytes]
) -> tuple[bool, str]:
    """Whether ``answer`` (or the file the task asked for) is right, and why not.

    Numbers are read with ``envkit.parsing.parse_number`` (the last number of the answer),
    texts compared after ``envkit.parsing.normalize_text``.

    ``read_file`` reads a file from the episode's sandbox (for transform tasks).
    """
    if task.kind in ("int", "float"):
        value = parse_number(answer)
        if value is None:
            return False, "the answer contains no number"
        if task.kind == "int":
            ok = value == int(task.answer)
        else:
            ok = math.isclose(value, float(task.answer), abs_tol=0.011)
        return ok, "" if ok else "wrong number"
    if task.kind == "str":
        ok = normalize_text(answer) == normalize_text(str(task.answer))
        return ok, "" if ok else "wrong answer"
    assert task.output_path is not None
    try:
        content = read_file(task.output_path).decode("utf-8", "replace")
    except FileNotFoundError:
        return False, f"{task.output_path} was not written"
    except OSError as e:  # unreadable, too large...
        return False, f"{task.output_path} could not be read: {e}"
    if task.kind == "file_json":
        try:
            ok = json.loads(content) == task.answer
        except ValueError:
            return False, f"{task.output_path} is not valid JSON"
        return ok, "" if ok else f"{task.output_path} has the wrong content"
    ok = content.rstrip("\n") == str(task.answer).rstrip("\n")
    return ok, "" if ok else f"{task.output_path} has the wrong content"
