"""The task bank of ``PythonCoding-v0``: original programming tasks with reference solutions.

Example:
    >>> from envkit.environments.coding_tasks import TASKS, get_task
    >>> len(TASKS) >= 30
    True
    >>> get_task("roman_to_int").signature
    'def roman_to_int(s: str) -> int:'
"""

from __future__ import annotations

from envkit.environments.coding_tasks import integers, sequences, strings, structures
from envkit.environments.coding_tasks._model import Case, CodingTask, outputs_equal

__all__ = ["TASKS", "Case", "CodingTask", "get_task", "outputs_equal"]

TASKS: list[CodingTask] = [*strings.TASKS, *sequences.TASKS, *integers.TASKS, *structures.TASKS]


def get_task(task_id: str) -> CodingTask:
    """The task with this id (the function's name).

    Raises:
        KeyError: no such task; the message lists the ids.
    """
    for t in TASKS:
        if t.id == task_id:
            return t
    raise KeyError(f"no coding task {task_id!r}; known ids: {', '.join(t.id for t in TASKS)}")
