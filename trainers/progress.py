"""Rich live progress of a training run: step, reward, signal, entropy, time.

Example:
    >>> p = TrainProgress(total_steps=3, enabled=False)
    >>> p.update(1, {"reward/mean": 0.25, "time/step_s": 4.0})
    >>> p.line
    'step 1/3 | reward 0.250 | 4.0 s/step'
    >>> p.close()
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from envkit.progress import start_bar

__all__ = ["TrainProgress"]

_FIELDS = (
    ("reward/mean", "reward {:.3f}"),
    ("eval/reward_mean", "held-out {:.3f}"),
    ("groups/zero_variance_frac", "tied groups {:.0%}"),
    ("entropy/sampled_nll", "entropy {:.2f}"),
    ("diversity/pairwise_similarity", "similarity {:.2f}"),
    ("completion/tokens_mean", "{:.0f} tok"),
    ("time/step_s", "{:.1f} s/step"),
)


class TrainProgress:
    """A rich progress bar whose text shows the latest step's key metrics (or nothing).

    Args:
        total_steps: The run's ``max_steps``.
        enabled: Draw it (otherwise only ``line`` is kept, e.g. for tests).
        start_step: Where a resumed run starts.
        plain: When not drawing, print ``line`` to stderr after every step (for logs).
    """

    def __init__(
        self, total_steps: int, *, enabled: bool, start_step: int = 0, plain: bool = False
    ) -> None:
        self.total = total_steps
        self.enabled = enabled
        self.plain = plain and not enabled
        self.line = ""
        self._last: dict[str, Any] = {}
        if enabled:
            self.bar, self.task = start_bar("train", total_steps, completed=start_step, eta=True)

    def update(self, step: int, metrics: Mapping[str, Any], *, echo: bool = True) -> None:
        """Shows ``metrics`` of ``step`` (missing or non-finite values are left out).

        ``echo=False`` only refreshes the bar (no plain line).
        """
        self._last.update({k: v for k, v in metrics.items() if v is not None})
        parts = [f"step {step}/{self.total}"]
        for key, fmt in _FIELDS:
            v = self._last.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                parts.append(fmt.format(v))
        self.line = " | ".join(parts)
        if self.enabled:
            stats = " | ".join(parts[1:])
            self.bar.update(self.task, completed=step, stats=stats)
        elif self.plain and echo:
            import sys

            print(self.line, file=sys.stderr, flush=True)

    def print(self, message: str) -> None:
        """Prints a message above the bar (or to stderr when the bar is off)."""
        if self.enabled:
            self.bar.console.print(message)
        else:
            import sys

            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
            self.enabled = False
