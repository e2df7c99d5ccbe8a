"""The progress bar of a rollout: running mean reward and outcome counts (or nothing).

Used by both rollout backends (``envkit.rollout`` and ``envkit.ray_rollout``); ``start_bar`` is
also the training bar's (``envkit.trainers.progress``).

Example:
    >>> from envkit.progress import RolloutProgress
    >>> from envkit.types import Trajectory
    >>> bar = RolloutProgress(False, total=2, description="demo")
    >>> bar.update(Trajectory(env_id="x", reward=1.0))
    >>> bar.update(Trajectory(env_id="x", outcome="timeout"))
    >>> bar.close()
    >>> dict(bar.outcomes), bar.rewards
    ({'ok': 1, 'timeout': 1}, [1.0])
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from envkit.types import Trajectory

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn, TaskID

__all__ = ["RolloutProgress", "start_bar"]


def start_bar(
    description: str, total: int, *, completed: int = 0, eta: bool = False
) -> tuple[Progress, TaskID]:
    """Starts a rich progress bar: the bold description, the bar, done/total, the elapsed time,
    with ``eta`` the time left, then the task's ``stats`` field (empty at first).

    Args:
        description: The text left of the bar.
        total: The number of units expected.
        completed: The units already done (a resumed run).
        eta: Show the estimated time left.

    Returns:
        The started bar and the id of its one task.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if eta:
        columns += [TextColumn("eta"), TimeRemainingColumn()]
    bar = Progress(*columns, TextColumn("{task.fields[stats]}"))
    task = bar.add_task(description, total=total, completed=completed, stats="")
    bar.start()
    return bar, task


class RolloutProgress:
    """A rich progress bar with the running mean reward and outcome counts.

    Args:
        enabled: Show the bar; with False it only counts (``outcomes``, ``rewards``).
        total: The number of episodes expected.
        description: The text left of the bar.
    """

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.enabled = enabled
        self.outcomes: Counter[str] = Counter()
        self.rewards: list[float] = []
        if enabled:
            self.bar, self.task = start_bar(description, total)

    def update(self, traj: Trajectory) -> None:
        """Counts one finished episode."""
        self.outcomes[traj.outcome] += 1
        if traj.reward is not None:
            self.rewards.append(traj.reward)
        if not self.enabled:
            return
        mean = sum(self.rewards) / len(self.rewards) if self.rewards else float("nan")
        stats = f"reward {mean:.3f} " + " ".join(
            f"{k}={v}" for k, v in sorted(self.outcomes.items())
        )
        self.bar.update(self.task, advance=1, stats=stats)

    def close(self) -> None:
        """Stops the bar (its last state stays on the terminal)."""
        if self.enabled:
            self.bar.stop()
