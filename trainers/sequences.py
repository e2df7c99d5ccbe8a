"""Render a multi-turn trajectory into one training sequence with a loss mask.

The renderer lives in the inference layer, ``envkit.chat_render`` (``envkit check-template``
uses the same one); this module keeps the trainer's import path working.

Example:
    >>> from envkit.trainers.sequences import render_trajectory
    >>> from envkit.chat_render import render_trajectory as same
    >>> render_trajectory is same
    True
"""

from __future__ import annotations

from envkit.chat_render import RenderedSequence, SequenceError, render_trajectory

__all__ = ["RenderedSequence", "SequenceError", "render_trajectory"]
