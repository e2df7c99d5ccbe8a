"""``assert_env_holds``: ``envkit validate`` as a pytest assertion, for env authors' own tests.

Example:
    >>> from envkit.testing import assert_env_holds
    >>> report = assert_env_holds("Arithmetic-v0", episodes=1)
    >>> report.golden_status
    'reaches max'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envkit.validation import ValidationReport, validate

__all__ = ["EnvDoesNotHold", "assert_env_holds"]


class EnvDoesNotHold(AssertionError):
    """``envkit validate`` found reward a probe did not earn (the message lists the findings)."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(
            report.summary()
            + "\nSee docs/validate.md: reading a finding"
            + (f"; trajectories in {report.out}" if report.out else "")
        )
        self.report = report


def assert_env_holds(
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 4,
    require_golden: bool = False,
    out: str | Path | None = None,
    **options: Any,
) -> ValidationReport:
    """Validates ``env_id`` and raises ``EnvDoesNotHold`` (an ``AssertionError``) if it fails.

    Args:
        env_id: The env to validate.
        env_kwargs: Its constructor arguments (use small, fast settings in tests).
        episodes: Seeds per probe.
        require_golden: Also fail when the env has no golden path (``golden()`` is ``None``).
        out: Where to write the findings' trajectories (``envkit view`` opens them).
        **options: More arguments of ``envkit.validate`` (``judge``, ``tolerance``...).

    Returns:
        The ``ValidationReport`` (for further assertions).
    """
    report = validate(env_id, env_kwargs=env_kwargs, episodes=episodes, out=out, **options)
    if not report.ok:
        raise EnvDoesNotHold(report)
    if require_golden and report.golden is None:
        raise AssertionError(
            f"{report.env_id} has no golden path: override golden() to return assistant turns "
            "that solve the current task"
        )
    return report
