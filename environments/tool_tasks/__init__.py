"""The task templates of ``PythonTools-v0``: data files generated from the seed, checkable answers.

Example:
    >>> import numpy as np
    >>> from envkit.environments.tool_tasks import TEMPLATES
    >>> len(TEMPLATES) >= 20
    True
    >>> task = TEMPLATES["base64_secret"](np.random.default_rng(0))
    >>> sorted(task.files)
    ['data/secret.b64']
"""

from __future__ import annotations

from envkit.environments.tool_tasks import files, logs, tabular, text, transforms  # noqa: F401
from envkit.environments.tool_tasks._model import TEMPLATES, ToolTask, check_answer

__all__ = ["TEMPLATES", "ToolTask", "check_answer"]
