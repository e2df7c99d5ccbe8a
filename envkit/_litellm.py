"""The one place envkit imports litellm.

Importing litellm fetches its model price map from the internet unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is set; envkit sets it to ``True`` (the copy bundled with
litellm) just before the import, unless the user set it. ``import envkit`` itself sets nothing.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["COST_MAP_VAR", "import_litellm"]

COST_MAP_VAR = "LITELLM_LOCAL_MODEL_COST_MAP"


def import_litellm() -> Any:
    """Imports litellm without a network fetch and without its feedback banner.

    Sets ``LITELLM_LOCAL_MODEL_COST_MAP=True`` first unless it is already set (a value the user
    chose, e.g. ``False`` to fetch the newest prices, is kept).

    Returns:
        The ``litellm`` module.
    """
    os.environ.setdefault(COST_MAP_VAR, "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner per failed call
    return litellm
