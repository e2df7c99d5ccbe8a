"""``envkit validate``: prove an environment's reward cannot be gamed before training on it.

``validate(env_id)`` plays a golden path, the empty replies (the floor), a panel of non-solving
policies (degenerate replies, reward search, tool abuse, grader injection) and the env's
declared canaries through envkit's episode engine, checks the hygiene rules, and returns a
``ValidationReport``. See docs/validate.md.

Example:
    >>> from envkit.validation import validate
    >>> validate("Arithmetic-v0", episodes=1).ok
    True
"""

from envkit.validation.report import Finding, JudgeProbeResult, ProbeResult, ValidationReport
from envkit.validation.validate import avalidate, validate

__all__ = [
    "Finding",
    "JudgeProbeResult",
    "ProbeResult",
    "ValidationReport",
    "avalidate",
    "validate",
]
