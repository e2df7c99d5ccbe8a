"""``envkit view``: a run folder or a trajectories JSONL file as one self-contained HTML page.

Look at what the model did instead of reading JSON: conversations with tool calls and outputs,
rewards and their breakdown, the judge's scores and explanations, outcomes and errors, group
members side by side, and a training run's reward, entropy and diversity curves. Open the page
in any browser; it needs no server and no network.

Example:
    >>> import os, tempfile
    >>> from envkit.types import Trajectory, TrajectoryGroup, write_jsonl
    >>> d = tempfile.mkdtemp()
    >>> write_jsonl(os.path.join(d, "eval.jsonl"),
    ...             [TrajectoryGroup(env_id="e", trajectories=[Trajectory(env_id="e")])])
    1
    >>> out = write_view(os.path.join(d, "eval.jsonl"))
    >>> out.name, out.read_text().startswith("<!doctype html>")
    ('eval.html', True)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from envkit.viewer.data import DEFAULT_MAX_MESSAGE_CHARS, ViewData, ViewerError, load_view
from envkit.viewer.page import embed_json, render_html, write_html

__all__ = [
    "ViewData",
    "ViewerError",
    "default_output",
    "embed_json",
    "load_view",
    "render_html",
    "write_html",
    "write_view",
]


def default_output(source: str | Path) -> Path:
    """Where the page goes by default: ``RUN_DIR/view.html`` or ``FILE.html`` beside the file."""
    p = Path(source)
    if p.is_dir():
        return p / "view.html"
    out = p.with_suffix(".html")
    return out if out != p else p.with_name(p.name + ".view.html")


def write_view(
    source: str | Path,
    out: str | Path | None = None,
    *,
    steps: tuple[int | None, int | None] = (None, None),
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    on_file: Callable[[Path], None] | None = None,
) -> Path:
    """Reads ``source`` (run folder or JSONL) and writes its page; returns the page's path.

    Raises:
        ViewerError: ``source`` is missing, empty or not in envkit's format.
    """
    view = load_view(source, steps=steps, max_message_chars=max_message_chars, on_file=on_file)
    return write_html(view, out if out is not None else default_output(source))
