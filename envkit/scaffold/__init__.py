"""``envkit init``: new installable envkit projects from templates.

``scaffold("word-golf", template="tools")`` writes a package with the env in one file, a
registered reward, its tasks, tests (``envkit check`` included), a ``pyproject.toml`` that
registers both through entry points, and a README. See ``TEMPLATES`` for the templates.
"""

from __future__ import annotations

from envkit.scaffold.names import InvalidNameError, ProjectNames
from envkit.scaffold.writer import TEMPLATES, ScaffoldError, ScaffoldResult, scaffold

__all__ = [
    "TEMPLATES",
    "InvalidNameError",
    "ProjectNames",
    "ScaffoldError",
    "ScaffoldResult",
    "scaffold",
]
