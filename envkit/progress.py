"""The progress bar of a rollout: running mean reward and outcome counts (or nothing).

Used by both rollout backends (``envkit.rollout`` and ``envkit.ray_rollout``).

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

from envkit.types import Trajectory

__all__ = ["RolloutProgress"]


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
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            transient=False,
        )
        self.task = self.bar.add_task(description, total=total, stats="")
        self.bar.start()

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
